"""Training the unrolled DUBLID network in plain NumPy (no deep-learning framework).

The gradients come from the hand-written adjoints of
:meth:`hqsdeblur.unrolled.UnrolledModel.backward`; this module adds the
objective, the batch loop, Adam (:mod:`hqsdeblur.optim`), checkpoints with
exact resume, validation, logs and a plot.

Objective, per patch (averaged over the batch)::

    mean((T x - x_true)^2 over the interior)      # border = kernel_size // 2;
                                                  # T: best integer shift in +-image_shift (default 0)
      + kappa * mean((k - S k_true)^2)            # S: best integer shift in +-kernel_shift
      + weight_decay / 2 * sum_l ||w_l||^2        # filters only

``k_true`` is the true kernel zero-padded and centred in the window (as the
data sampler returns it). With ``kernel_shift > 0`` the kernel term is the
minimum over integer shifts of the true kernel (blind deblurring can only
find the kernel up to a shift); the gradient goes through the minimising
shift.

Run directory (``out``)::

    checkpoint.npz   latest state: parameters, Adam state, step, options (atomic)
    best_model.npz   model file (hqsdeblur format) with the best validation PSNR
    log.csv          one row per step (loss terms, lr, gradient norm, seconds,
                     validation PSNR on validation steps)
    log.json         the same rows plus the options and the best score
    curves.png       training loss and validation PSNR

The data of step ``s`` is a pure function of ``(seed, s)``
(:class:`hqsdeblur.data.BatchStream`), so resuming restarts the stream at the
checkpointed step, and ``N`` steps straight or ``a + resume + (N - a)`` give
bit-identical parameters.

Init options: ``'xavier'`` (Xavier-normal filters, the published start),
``'tv'`` (derivative filters and a continuation schedule,
:func:`hqsdeblur.unrolled.init_params`) and ``'published'``: fine-tune the
published DUBLID weights (``../shared/reference/dublid_linear_16c10l.npz``,
trained on linear motion kernels only; 16 channels, 10 layers) - or any model
file given as ``init_from``.

Command line::

    python -m hqsdeblur.train --images DIR --out runs/x --steps 2000 [...]
    python -m hqsdeblur.train --images DIR --out runs/x --steps 2000 --resume
    python -m hqsdeblur.train export runs/x model.npz [--which best|latest]
    python -m hqsdeblur.train levin runs/x --limit 8      # score on Levin et al.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from . import backend as _backend
from .backend import blas_single_thread
from .data import PairSampler, BatchStream, list_images, make_batch, split_images
from .errors import HqsdeblurError, InputError, ModelError, OutputError
from .io import atomic_path, atomic_write
from .model_io import load_model, save_model
from .optim import Adam, clip_grad_norm, is_filter, lr_at, project
from .unrolled import UnrolledConfig, UnrolledModel, init_params, param_shapes

__all__ = [
    "PUBLISHED_MODEL",
    "kernel_loss",
    "patch_loss_and_grads",
    "batch_loss_and_grads",
    "validate",
    "make_model",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "export_model",
    "gradient_precision",
    "evaluate_levin",
    "add_train_arguments",
    "run_train",
    "main",
]

#: The published DUBLID weights (trained on linear motion blur).
PUBLISHED_MODEL = Path(__file__).resolve().parent.parent.parent / "shared" / "reference" / "dublid_linear_16c10l.npz"

CHECKPOINT = "checkpoint.npz"
BEST = "best_model.npz"
_CKPT_VERSION = 1
_CSV_FIELDS = ("step", "lr", "loss", "image_mse", "kernel_mse", "grad_norm", "seconds",
               "val_psnr", "val_psnr_blurred")


# --------------------------------------------------------------------------
# objective
# --------------------------------------------------------------------------

def kernel_loss(k, k_true, *, max_shift=0):
    """Kernel MSE, optionally the minimum over integer shifts of the truth.

    Parameters
    ----------
    k, k_true : (K, K) ndarray
        Estimated and true kernel (same window).
    max_shift : int
        Shifts of ``k_true`` in ``[-max_shift, max_shift]^2`` are tried (zero
        fill); 0 is the plain MSE.

    Returns
    -------
    mse : float
    grad : (K, K) ndarray
        d mse / d k at the minimising shift.
    shift : (int, int)

    Example
    -------
    >>> t = np.zeros((5, 5)); t[2, 2] = 1
    >>> k = np.roll(t, 1, axis=1)
    >>> kernel_loss(k, t)[0] > 0, kernel_loss(k, t, max_shift=1)[0]
    (True, 0.0)
    """
    k = np.asarray(k, dtype=np.float64)
    t = np.asarray(k_true, dtype=np.float64)
    s = int(max_shift)
    K1, K2 = k.shape
    tp = np.pad(t, s)
    best = None
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            # truth shifted by (dy, dx): ts[i, j] = t[i - dy, j - dx]
            ts = tp[s - dy: s - dy + K1, s - dx: s - dx + K2]
            mse = float(np.mean((k - ts) ** 2))
            if best is None or mse < best[0]:
                best = (mse, ts, (dy, dx))
    mse, ts, shift = best
    return mse, 2.0 * (k - ts) / k.size, shift


def _best_shift(x, ref, b, s):
    """Interior window of `x` (border `b`) shifted by up to `s` pixels that best
    matches the interior of `ref`: returns (diff, (dy, dx))."""
    H, W = x.shape
    r = np.asarray(ref, dtype=np.float64)[b:H - b, b:W - b]
    best = None
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            d = x[b + dy:H - b + dy, b + dx:W - b + dx].astype(np.float64) - r
            e = float(np.mean(d * d))
            if best is None or e < best[0]:
                best = (e, d, (dy, dx))
    return best[1], best[2]


def wiener_deconvolve(y, k, *, weight=2e-3, extension="smooth"):
    """Wiener deconvolution (quadratic gradient prior of weight `weight`) of
    the gray patch `y` with the kernel `k`, on the network's grid and border
    (`extension`, :data:`hqsdeblur.unrolled.BORDERS`), and its VJP with
    respect to `k`.

    The image term of ``image_loss='wiener'``: it scores a kernel by the
    image it restores, as the non-blind final step uses it (a kernel MSE
    alone favours smooth kernels, which deconvolve badly). It is
    :func:`hqsdeblur.steps.reconstruct.reconstruct` with zero features.

    Returns
    -------
    x : (H, W) array
    vjp : callable ``xbar -> kbar``
    """
    from .nonblind import derivative_otfs
    from .steps import fourier, reconstruct
    from .unrolled import border_grid, extend

    be = _backend.backend_for(y)
    xp = be.xp
    H, W = y.shape
    Hk = k.shape[0]
    h, pad = Hk // 2, Hk - 1
    S = border_grid((H, W), pad, extension)
    Y = be.rfft2(extend(y, S, pad, extension))
    K = fourier.psf2otf(k, S, centre=(0, 0))
    D = derivative_otfs(S, xp, y.dtype)
    eta = xp.full((2,), weight, dtype=y.dtype)
    G0 = xp.zeros_like(D)
    X = reconstruct.reconstruct(Y, K, D, G0, eta)
    x = be.irfft2(X, s=S)[h:h + H, h:h + W]

    def vjp(xbar):
        Xbar = be.rfft2(fourier.embed(xbar, S, (h, h)))
        _, Kb, _, _, _ = reconstruct.reconstruct_vjp(Y, K, D, G0, eta, X, Xbar, S)
        return fourier.psf2otf_adjoint(Kb, (Hk, Hk), S, centre=(0, 0))

    return x, vjp


def patch_loss_and_grads(model, blurred, sharp, k_true, *, kappa=100.0, kernel_shift=3,
                         image_shift=0, dtype=np.float32, border=None, k0=None, image_loss="network",
                         extension="smooth"):
    """Loss terms and parameter gradients for one training patch.

    Parameters
    ----------
    model : UnrolledModel
    blurred, sharp : (h, w) ndarray
        Observation and aligned sharp patch.
    k_true : (K, K) ndarray
        True kernel, centred in the model's window.
    kappa : float
        Weight of the kernel term.
    kernel_shift : int
        Shift tolerance of the kernel term (:func:`kernel_loss`).
    image_shift : int
        Shift tolerance of the image term: the minimum of the interior MSE
        over integer shifts of the output within ``+-image_shift`` (the
        gradient goes through the minimising shift). Blind deblurring fixes
        the image only up to a shift, and benchmarks align before scoring;
        with 0 (plain MSE) the network learns to hedge against its own shift
        errors by deblurring less.
    dtype : numpy dtype
        Precision of the forward/backward pass.
    border : int, optional
        Image border left out of the image term; default ``kernel_size // 2``.
    k0 : (K, K) ndarray, optional
        Initial kernel of the network (default the delta).
    image_loss : {'network', 'wiener'}
        Which image the image term scores: the network's reconstruction, or
        the Wiener deconvolution with the network's kernel
        (:func:`wiener_deconvolve`; for networks whose kernel feeds the
        non-blind final step).
    extension : {'smooth', 'wrap'}
        How the network extends the patch to its FFT grid (``border`` of
        :meth:`UnrolledModel.forward`): train with the border the model is
        used with ('wrap' coarse to fine).

    Returns
    -------
    terms : dict
        ``image_mse``, ``kernel_mse``, ``loss`` (= image + kappa * kernel).
    grads : dict of ndarray (float64)
    """
    cfg = model.config
    b = cfg.kernel_size // 2 if border is None else int(border)
    # The patch goes to the active backend's device (host patches would
    # otherwise keep a 'cupy' run on the CPU).
    y = _backend.get_backend().xp.asarray(blurred, dtype=dtype)
    H, W = y.shape
    s = int(image_shift)
    if H <= 2 * b or W <= 2 * b or s > b:
        raise InputError(f"patch {y.shape} has no interior with a {b}-pixel border "
                         f"(or image_shift {s} > border); use a larger patch")
    if image_loss not in ("network", "wiener"):
        raise InputError(f"image_loss must be 'network' or 'wiener', not {image_loss!r}")
    x, k, tape = model.forward(y, tape=True, dtype=dtype, k0=k0, border=extension)
    xp = _backend.get_array_module(tape.y)
    if image_loss == "wiener":
        x, wiener_vjp = wiener_deconvolve(y, k, extension=extension)
    x = _backend.to_numpy(x)
    diff, (dy, dx) = _best_shift(x, sharp, b, s)
    img = float(np.mean(diff ** 2))
    xbar = np.zeros((H, W), dtype=np.float64)
    xbar[b + dy:H - b + dy, b + dx:W - b + dx] = 2.0 * diff / diff.size
    kmse, kbar, _ = kernel_loss(_backend.to_numpy(k), k_true, max_shift=kernel_shift)
    kbar = xp.asarray(kappa * kbar, dtype=dtype)
    if image_loss == "wiener":
        kbar = kbar + wiener_vjp(xp.asarray(xbar, dtype=dtype))
        xbar = np.zeros_like(xbar)  # the network's own image is not scored
    grads = model.backward(tape, xp.asarray(xbar, dtype=dtype), kbar)
    grads = {n: np.asarray(_backend.to_numpy(g), dtype=np.float64) for n, g in grads.items()}
    return {"image_mse": img, "kernel_mse": kmse, "loss": img + kappa * kmse}, grads


@blas_single_thread
def batch_loss_and_grads(model, batch, **kwargs):
    """Average of :func:`patch_loss_and_grads` over the patches of a batch
    (patches in order, accumulated in float64, so the result is deterministic)."""
    n = len(batch.blurred)
    total = None
    acc = {"image_mse": 0.0, "kernel_mse": 0.0, "loss": 0.0}
    for i in range(n):
        k0 = None if getattr(batch, "k0", None) is None else batch.k0[i]
        terms, g = patch_loss_and_grads(model, batch.blurred[i], batch.sharp[i], batch.kernel[i], k0=k0, **kwargs)
        for key in acc:
            acc[key] += terms[key] / n
        if total is None:
            total = {key: v / n for key, v in g.items()}
        else:
            for key, v in g.items():
                total[key] += v / n
    return acc, total


def _psnr(a, b):
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@blas_single_thread
def validate(model, batch, *, dtype=np.float32, border=None, max_shift=0, extension="smooth"):
    """Mean PSNR (dB) of the clipped output and of the input on the patch interiors
    (each at its best integer shift within ``+-max_shift``). For a model whose
    final image is the non-blind step (``meta['final_image'] == 'nonblind'``)
    the output is that deconvolution with the estimated kernel, as
    :func:`hqsdeblur.deblur` returns it.

    Returns
    -------
    psnr, psnr_blurred : float
    """
    b = model.config.kernel_size // 2 if border is None else int(border)
    out, inp = [], []
    k0s = getattr(batch, "k0", None)
    for i, (y, x_true) in enumerate(zip(batch.blurred, batch.sharp)):
        x, k = model.forward(np.asarray(y, dtype=dtype), dtype=dtype, k0=None if k0s is None else k0s[i],
                             border=extension)
        if model.meta.get("final_image") == "nonblind":
            from .nonblind import deconvolve

            x = deconvolve(np.clip(np.asarray(y, dtype=np.float64), 0, 1), _backend.to_numpy(k).astype(np.float64))
        x = np.clip(_backend.to_numpy(x), 0.0, 1.0)
        for a, acc in ((x, out), (y, inp)):
            d, _ = _best_shift(np.asarray(a), x_true, b, int(max_shift))
            acc.append(10.0 * math.log10(1.0 / max(float(np.mean(d * d)), 1e-12)))
    return float(np.mean(out)), float(np.mean(inp))


def gradient_precision(model, batch, **kwargs):
    """Compare float32 and float64 batch gradients.

    Returns
    -------
    dict
        ``rel_error`` = ||g32 - g64|| / ||g64|| (all groups together),
        ``cosine`` between them, ``worst_group`` and its relative error,
        ``loss32`` / ``loss64``.
    """
    kwargs = {k: v for k, v in kwargs.items() if k != "dtype"}
    l32, g32 = batch_loss_and_grads(model, batch, dtype=np.float32, **kwargs)
    model._cache = {}
    l64, g64 = batch_loss_and_grads(model, batch, dtype=np.float64, **kwargs)
    model._cache = {}
    num = sum(float(np.sum((g32[k] - g64[k]) ** 2)) for k in g64)
    den = sum(float(np.sum(g64[k] ** 2)) for k in g64)
    dot = sum(float(np.sum(g32[k] * g64[k])) for k in g64)
    n32 = sum(float(np.sum(g32[k] ** 2)) for k in g64)
    per = {k: float(np.linalg.norm(g32[k] - g64[k]) / max(np.linalg.norm(g64[k]), 1e-30)) for k in g64}
    worst = max(per, key=per.get)
    return {"rel_error": math.sqrt(num / den), "cosine": dot / math.sqrt(den * n32),
            "worst_group": worst, "worst_rel_error": per[worst],
            "loss32": l32["loss"], "loss64": l64["loss"]}


# --------------------------------------------------------------------------
# model creation, checkpoints, export
# --------------------------------------------------------------------------

def _inference_meta(init, kernel_size, hqs_args):
    """The inference settings a trained model keeps from its start: for a
    schedule network (``init='hqs'``) the non-blind final step, the coarsest
    pyramid window and the window rule of its prior weight
    (:func:`hqsdeblur.schedule.hqs_schedule`'s metadata); none otherwise."""
    if init != "hqs":
        return {}
    from .schedule import hqs_schedule

    start = hqs_schedule(kernel_size=kernel_size, **(hqs_args or {}))
    return {k: start.meta[k] for k in ("final_image", "coarsest", "lam_rule") if k in start.meta}


def _log_groups(model):
    """Groups Adam updates in log space: a schedule-initialised network's
    thresholds and weights span orders of magnitude."""
    if model.config.cascade == "identity":
        return ("bias", "zeta", "kernel_prox", "eta")
    return ()


def make_model(*, channels=16, layers=10, kernel_size=45, init="xavier", init_from=None, seed=0, hqs_args=None):
    """A model to start training from.

    Parameters
    ----------
    init : {'xavier', 'tv', 'published', 'hqs'}
        ``'published'`` loads `init_from` (default :data:`PUBLISHED_MODEL`):
        its channels/layers must match; the kernel window is taken from
        `kernel_size` (the parameters do not depend on it). ``'hqs'``: the
        classical TV schedule as an identity-cascade network
        (:func:`hqsdeblur.schedule.hqs_schedule`; it fixes its own channels
        and layers, `channels` and `layers` are ignored).
    hqs_args : dict, optional
        Keyword arguments of :func:`hqsdeblur.schedule.hqs_schedule` for
        ``init='hqs'`` (e.g. ``{'iterations': 5, 'beta_ratio': 8}``).
    """
    if init == "hqs":
        from .schedule import hqs_schedule

        return hqs_schedule(kernel_size=kernel_size, **(hqs_args or {}))
    if hqs_args:
        raise InputError("hqs_args applies to init='hqs' only")
    if init in ("xavier", "tv"):
        cfg = UnrolledConfig(channels=channels, layers=layers, kernel_size=kernel_size)
        return UnrolledModel(cfg, init_params(cfg, seed=seed, init=init), {"init": init})
    if init == "published":
        src = Path(init_from or PUBLISHED_MODEL)
        base = load_model(src)
        c = base.config
        if (c.channels, c.layers) != (channels, layers):
            raise ModelError(f"{src}: has {c.channels} channels and {c.layers} layers, "
                             f"but {channels} and {layers} were asked for")
        cfg = UnrolledConfig(**{**c.to_dict(), "kernel_size": kernel_size})
        params = {k: np.array(v, dtype=np.float64) for k, v in base.params.items()}
        project(params)
        return UnrolledModel(cfg, params, {"init": "published", "init_from": str(src)})
    raise InputError(f"unknown init {init!r}; choose xavier, tv, published or hqs")


def save_checkpoint(path, model, opt, step, *, meta=None):
    """Write parameters, optimiser state and step to `path` atomically."""
    arrays = {f"param/{k}": np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    arrays.update({f"adam/{k}": v for k, v in opt.state_dict().items()})
    arrays["step"] = np.array(int(step), dtype=np.int64)
    header = {"version": _CKPT_VERSION, "config": model.config.to_dict(), "step": int(step),
              **(meta or {})}
    arrays["__meta__"] = np.array(json.dumps(header, default=_json_default))
    with atomic_path(os.fspath(path), overwrite=True) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_checkpoint(path):
    """Read a checkpoint: returns ``(model, adam_state, step, meta)``."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data.pop("__meta__")[()]))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: not a readable training checkpoint ({exc})") from None
    if meta.get("version") != _CKPT_VERSION:
        raise ModelError(f"{path}: checkpoint version {meta.get('version')!r} is not supported")
    cfg = UnrolledConfig(**meta["config"])
    params = {k[len("param/"):]: v for k, v in data.items() if k.startswith("param/")}
    missing = set(param_shapes(cfg)) - set(params)
    if missing:
        raise ModelError(f"{path}: checkpoint lacks parameters {sorted(missing)}")
    state = {k[len("adam/"):]: v for k, v in data.items() if k.startswith("adam/")}
    model = UnrolledModel(cfg, params, {})
    return model, state, int(data["step"]), meta


def export_model(run_dir, path, *, which="best", overwrite=True, levin_limit=None, data_root=None):
    """Write a run's model (``'best'`` validation or ``'latest'`` checkpoint)
    as an hqsdeblur model file with training metadata.

    With `levin_limit` (number of images, 0 = all 32) the model is also scored
    on Levin et al. (:func:`evaluate_levin`, data under `data_root`, default
    ``../shared/data``) and the scores are stored under ``metrics['levin']``.

    Example
    -------
    >>> export_model("runs/main", "hqsdeblur/models/hqsdeblur_unrolled.npz")  # doctest: +SKIP
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / CHECKPOINT
    model, _, step, meta = load_checkpoint(ckpt)
    training = dict(meta.get("options", {}))
    inference = _inference_meta(training.get("init"), model.config.kernel_size, training.get("hqs_args"))
    model.meta = dict(inference)
    training.update(steps_done=step, run_dir=str(run_dir), wall_seconds=meta.get("wall_seconds"))
    metrics = {"best_val_psnr": meta.get("best_val_psnr"), "best_step": meta.get("best_step"),
               "latest_val_psnr": meta.get("latest_val_psnr"), "latest_val_step": meta.get("latest_val_step"),
               "val_psnr_blurred": meta.get("val_psnr_blurred")}
    if which == "best" and (run_dir / BEST).is_file():
        best = load_model(run_dir / BEST)
        best.meta.pop("source", None)
        training.update(best.meta.get("training", {}))
        training["exported_from"] = "best"
        metrics.update(best.meta.get("metrics", {}))
        model = UnrolledModel(best.config, best.params, dict(inference))
    elif which in ("best", "latest"):
        training["exported_from"] = "latest"
        metrics["step"] = step
    else:
        raise InputError(f"which must be 'best' or 'latest', not {which!r}")
    if levin_limit is not None:
        root = data_root or PUBLISHED_MODEL.parent.parent / "data"
        summ = evaluate_levin(model, root, limit=int(levin_limit) or None)
        keep = ("count", "mean_psnr_aligned_db", "mean_psnr_blurred_aligned_db", "mean_ssim_aligned",
                "mean_isnr_db", "mean_kernel_rmse_min_shift_pm10", "error_ratio_median", "error_ratio_frac_le_3")
        metrics["levin"] = {k: summ.get(k) for k in keep}
    save_model(path, model, overwrite=overwrite, training=training, metrics=metrics)
    return model


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# --------------------------------------------------------------------------
# logs and plot
# --------------------------------------------------------------------------

def _write_logs(out, history, info):
    with atomic_write(out / "log.csv", overwrite=True, mode="w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=_CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for row in history:
            w.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in _CSV_FIELDS})
    with atomic_write(out / "log.json", overwrite=True, mode="w") as fh:
        json.dump({**info, "history": history}, fh, default=_json_default)


def _read_history(out, upto):
    try:
        with open(out / "log.json") as fh:
            rows = json.load(fh).get("history", [])
    except (OSError, ValueError):
        return []
    return [r for r in rows if r.get("step", 0) <= upto]


def _plot(out, history):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return
    steps = np.array([r["step"] for r in history if r.get("loss") is not None])
    loss = np.array([r["loss"] for r in history if r.get("loss") is not None])
    vs = [(r["step"], r["val_psnr"], r.get("val_psnr_blurred")) for r in history if r.get("val_psnr") is not None]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    if len(loss):
        a1.semilogy(steps, loss, lw=0.5, alpha=0.4, label="loss")
        w = max(1, min(50, len(loss) // 5))  # moving mean over up to 50 steps
        if w > 1:
            sm = np.convolve(loss, np.ones(w) / w, mode="valid")
            a1.semilogy(steps[w - 1:], sm, lw=1.5, label=f"mean of {w}")
        a1.legend()
    a1.set_xlabel("step")
    a1.set_title("training objective")
    if vs:
        s, v, vb = zip(*vs)
        a2.plot(s, v, "o-", label="network")
        if vb[0] is not None:
            a2.plot(s, vb, "--", label="blurred input")
        a2.legend()
    a2.set_xlabel("step")
    a2.set_ylabel("PSNR (dB)")
    a2.set_title("validation (interior)")
    fig.tight_layout()
    with atomic_path(os.fspath(out / "curves.png"), overwrite=True) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------
# threads and signals
# --------------------------------------------------------------------------

def _limit_fft_workers(n):
    """Use `n` FFT workers (the backend reads ``HQSDEBLUR_FFT_WORKERS`` at
    every transform)."""
    if n is None:
        return
    os.environ["HQSDEBLUR_FFT_WORKERS"] = str(max(1, int(n)))


def _keep_freed_memory():
    """On glibc Linux, keep freed large buffers in the process for reuse.

    glibc serves big allocations with fresh ``mmap`` pages and unmaps them
    on ``free``, and trims the heap top back to the OS; a training step
    allocates and frees the same multi-MB spectra again and again, so every
    step page-faulted them in anew (9k-46k minor faults, up to 0.45 s of
    system time per step). Fixed thresholds (``mallopt``; the same as the
    ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_`` variables) keep
    those pages: the process holds its peak footprint instead. Idempotent;
    a no-op elsewhere (musl, macOS, Windows) and when either variable is
    set (the user's choice wins).
    """
    if not sys.platform.startswith("linux"):
        return
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt  # glibc's, from the running process
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        mallopt.restype = ctypes.c_int
    except (AttributeError, OSError, ValueError):
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
    # 32 MiB: glibc's largest mmap threshold on 64-bit (bigger blocks are
    # still mapped and unmapped: rare, and cheap next to their use)
    mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)


class _StopFlag:
    """SIGINT/SIGTERM: finish the step, checkpoint, stop. A second signal aborts."""

    def __init__(self):
        self.signal = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# --------------------------------------------------------------------------
# training loop
# --------------------------------------------------------------------------

def _images(images):
    if isinstance(images, (str, os.PathLike)):
        return list_images(images)
    return list(images)


@blas_single_thread
def train(images, out, *, steps=1000, batch=8, patch=96, channels=16, layers=10, kernel_size=45,
          kernels="mixed", lr=1e-3, min_lr=None, schedule="cosine", warmup=None, clip=1.0,
          kappa=100.0, kernel_shift=3, image_shift=0, weight_decay=0.0, init="xavier", init_from=None,
          seed=0, val_images=None, val_every=100, val_patches=24, val_patch=128,
          ckpt_every=25, resume=False, dtype=np.float32, noise_sigma=(0.0, 0.01),
          threads=1, backend=None, progress=True, log=None, stop_after=None, pool=None,
          snapshots=True, mix=(0.3, 0.5, 0.2), shake_max_extent=None, coarse_start=0.0, hqs_args=None,
          image_loss=None, extension=None):
    """Train an unrolled network (or resume training) and return a summary.

    Parameters
    ----------
    images : folder, or sequence of paths / gray arrays
        Training images. A folder is split with
        :func:`hqsdeblur.data.split_images`: its ``kodak24`` group is held out
        for validation (used when `val_images` is not given).
    out : path
        Run directory (created). Without `resume` it must not hold a
        checkpoint already.
    steps : int
        Total number of optimiser steps (also when resuming).
    batch, patch : int
        Patches per step and their size (blurred = sharp = ``patch``).
    channels, layers, kernel_size : int
        Architecture (:class:`UnrolledConfig`).
    kernels : {'linear', 'shake', 'mixed', 'pool'}
        Training kernels (:class:`hqsdeblur.data.PairSampler`; the Levin
        evaluation kernels are excluded from the pool).
    lr, min_lr, schedule, warmup : learning-rate schedule
        (:func:`hqsdeblur.optim.lr_at`; default ``min_lr = lr / 20``, warm-up
        ``min(100, steps // 20)`` steps).
    clip : float
        Gradient clipping (global norm); ``None`` disables.
    kappa, kernel_shift, image_shift, weight_decay, image_loss : objective
        (module docstring; :func:`patch_loss_and_grads`; `image_loss`
        default 'wiener' for ``init='hqs'``, else 'network').
    extension : {'smooth', 'wrap'}, optional
        The network's border in training and validation (default 'wrap',
        the coarse-to-fine inference's, for ``init='hqs'``, else 'smooth'). Validation PSNR is aligned over
        ``+-image_shift`` too.
    init, init_from, hqs_args : start ('xavier', 'tv', 'published' or 'hqs';
        :func:`make_model`).
    seed : int
        Seeds the initial filters and the data stream.
    val_images : sequence, optional
        Validation images (default: the held-out group of `images`, else the
        training images with a separate seed).
    val_every, val_patches, val_patch : validation schedule and set (fixed
        patches of fixed kernels, noise sigma the largest of `noise_sigma`).
    ckpt_every : int
        Checkpoint period in steps (also at the end and on SIGINT/SIGTERM).
    resume : bool
        Continue from ``out/checkpoint.npz``.
    dtype : float32 or float64
        Precision of forward/backward (parameters and Adam are float64).
    noise_sigma : float or (float, float)
        Training noise sigma (a range is drawn uniformly per patch).
    threads : int
        FFT workers (default 1: leave the other core to other work).
    coarse_start : float
        Fraction of the training (and validation) pairs on which the network
        starts from a coarse-scale version of the true kernel instead of the
        delta (:meth:`hqsdeblur.data.PairSampler.initial_kernel`): trains it
        for the coarse-to-fine inference, where every level but the coarsest
        starts from the upsampled estimate of the level below.
    backend : str, optional
        Array backend name (:func:`hqsdeblur.backend.use_backend`).
    progress : bool
        tqdm progress bar on stderr.
    log : callable, optional
        Receives one-line messages (default: print to stderr unless quiet).
    stop_after : int, optional
        Stop (with a checkpoint) after this many steps of this call - for tests.
    pool : list of ndarray, optional
        Measured kernel pool (default: the shared pool without Levin's kernels).
    mix : (float, float, float)
        Probabilities of (linear, shake, pool) kernels for ``kernels='mixed'``.
    shake_max_extent : float, optional
        Largest camera-shake trajectory extent in pixels (default: the window).
    snapshots : bool
        Also keep the model of every validation step as
        ``out/snapshots/step_NNNNNN.npz``.

    Returns
    -------
    dict
        ``step``, ``interrupted``, ``best_val_psnr``, ``best_step``,
        ``latest_val_psnr``, ``seconds_per_step``, ``out``.

    Example
    -------
    >>> imgs = [np.random.default_rng(i).random((80, 80)) for i in range(2)]
    >>> s = train(imgs, "/tmp/run", steps=2, batch=1, patch=24, channels=2, layers=2,
    ...           kernel_size=9, kernels="linear", progress=False)  # doctest: +SKIP
    """
    _keep_freed_memory()
    if backend is not None:
        with _backend.use_backend(backend):
            return train(**{**locals(), "backend": None})
    dtype = np.dtype(dtype).type
    out = Path(out)
    if log is None:
        log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    _limit_fft_workers(threads)
    steps = int(steps)
    if warmup is None:
        warmup = min(100, steps // 20)
    if image_loss is None:
        image_loss = "wiener" if init == "hqs" else "network"
    if extension is None:
        extension = "wrap" if init == "hqs" else "smooth"
    if min_lr is None:
        min_lr = lr / 20.0

    # ---- data
    if isinstance(images, (str, os.PathLike)):
        train_imgs, held = split_images(list_images(images), holdout=("kodak24",))
    else:
        train_imgs, held = list(images), []
    if val_images is not None:
        held = _images(val_images)
    if not train_imgs:
        raise InputError(f"no training images in {images}")
    val_seed_offset = 0
    if not held:
        held = train_imgs
        val_seed_offset = 7919  # different patches from the training stream's
    options = dict(steps=steps, batch=batch, patch=patch, channels=channels, layers=layers,
                   kernel_size=kernel_size, kernels=kernels, lr=lr, min_lr=min_lr, schedule=schedule,
                   warmup=warmup, clip=clip, kappa=kappa, kernel_shift=kernel_shift,
                   image_shift=image_shift, weight_decay=weight_decay, init=init, init_from=None if init_from is None else str(init_from),
                   seed=seed, val_every=val_every, val_patches=val_patches, val_patch=val_patch,
                   ckpt_every=ckpt_every, dtype=np.dtype(dtype).name, noise_sigma=noise_sigma,
                   mix=list(mix), shake_max_extent=shake_max_extent, coarse_start=float(coarse_start),
                   hqs_args=hqs_args, image_loss=image_loss, extension=extension,
                   train_images=len(train_imgs), val_images=len(held),
                   images=str(images) if isinstance(images, (str, os.PathLike)) else "arrays",
                   backend=_backend.get_backend().name)
    shake = {} if shake_max_extent is None else {"max_extent": float(shake_max_extent)}
    # validation at the training stream's highest noise level
    val_noise = float(np.max(noise_sigma))
    sampler = PairSampler(train_imgs, patch_size=patch, kernel_size=kernel_size, kernel_mode=kernels,
                          noise_sigma=noise_sigma, pool=pool, mix=mix, shake_options=shake,
                          coarse_start=coarse_start)
    val_sampler = PairSampler(held, patch_size=val_patch, kernel_size=kernel_size, kernel_mode=kernels,
                              noise_sigma=val_noise, pool=pool, mix=mix, shake_options=shake,
                              coarse_start=coarse_start)
    val_batch = make_batch(val_sampler, val_patches, seed=10_000 + seed + val_seed_offset, step=0) \
        if val_every and val_patches else None

    # ---- model and optimiser
    ckpt = out / CHECKPOINT
    history, start, wall0 = [], 0, 0.0
    best = {"best_val_psnr": None, "best_step": None, "latest_val_psnr": None, "latest_val_step": None,
            "val_psnr_blurred": None}
    if resume and ckpt.is_file():
        model, state, start, meta = load_checkpoint(ckpt)
        c = model.config
        if c.kernel_size != kernel_size or (init != "hqs" and (c.channels, c.layers) != (channels, layers)):
            raise ModelError(f"{ckpt}: checkpoint has channels={c.channels}, layers={c.layers}, "
                             f"kernel_size={c.kernel_size}; the options ask for {channels}, {layers}, {kernel_size}")
        opt = Adam(model.params, lr=lr, weight_decay=weight_decay, log_scale=_log_groups(model))
        opt.load_state_dict(state)
        history = _read_history(out, start)
        wall0 = float(meta.get("wall_seconds") or 0.0)
        for k in best:
            best[k] = meta.get(k)
        log(f"resuming from {ckpt} at step {start}")
    else:
        if ckpt.exists():
            raise OutputError(f"{ckpt}: a checkpoint exists; pass resume=True (--resume) or choose another output folder")
        out.mkdir(parents=True, exist_ok=True)
        model = make_model(channels=channels, layers=layers, kernel_size=kernel_size, init=init,
                           init_from=init_from, seed=seed, hqs_args=hqs_args)
        opt = Adam(model.params, lr=lr, weight_decay=weight_decay, log_scale=_log_groups(model))
    # a schedule network is validated (and used) with its inference settings
    model.meta = _inference_meta(init, kernel_size, hqs_args)
    with atomic_write(out / "options.json", overwrite=True, mode="w") as fh:
        json.dump(options, fh, indent=1, default=_json_default)

    def checkpoint(step, wall):
        meta = {"options": options, "wall_seconds": wall, **best}
        save_checkpoint(ckpt, model, opt, step, meta=meta)
        _write_logs(out, history, meta)
        _plot(out, history)

    def run_validation(step):
        v, vb = validate(model, val_batch, dtype=dtype, max_shift=image_shift, extension=extension)
        best["latest_val_psnr"], best["latest_val_step"], best["val_psnr_blurred"] = v, step, vb
        if snapshots:
            (out / "snapshots").mkdir(exist_ok=True)
            save_model(out / "snapshots" / f"step_{step:06d}.npz", model, overwrite=True,
                       training={**options, "steps_done": step},
                       metrics={"val_psnr": v, "val_psnr_blurred": vb, "step": step})
        if best["best_val_psnr"] is None or v > best["best_val_psnr"]:
            best["best_val_psnr"], best["best_step"] = v, step
            save_model(out / BEST, model, overwrite=True,
                       training={**options, "steps_done": step},
                       metrics={"val_psnr": v, "val_psnr_blurred": vb, "step": step})
        return v, vb

    if val_batch is not None and start == 0 and not history:
        v, vb = run_validation(0)
        history.append({"step": 0, "val_psnr": v, "val_psnr_blurred": vb})
        log(f"step 0: validation PSNR {v:.2f} dB (blurred input {vb:.2f} dB)")

    from tqdm import tqdm

    kw = dict(kappa=kappa, kernel_shift=kernel_shift, image_shift=image_shift, dtype=dtype, image_loss=image_loss,
              extension=extension)
    step = start
    interrupted = False
    t_start = time.perf_counter()
    done_here = 0
    # A live bar on a terminal; plain lines every 10 steps in a log file.
    tty = progress and sys.stderr.isatty()
    bar = tqdm(total=steps, initial=start, disable=not tty, unit="step", file=sys.stderr, dynamic_ncols=True)
    stream = BatchStream(sampler, batch, seed=seed, start_step=start, stop_step=steps, threads=1, prefetch=2)
    try:
        with _StopFlag() as flag:
            for b in stream:
                t0 = time.perf_counter()
                rate = lr_at(step, base_lr=lr, total_steps=steps, warmup=warmup, schedule=schedule, min_lr=min_lr)
                terms, grads = batch_loss_and_grads(model, b, **kw)
                grads, gnorm = clip_grad_norm(grads, clip)
                opt.step(model.params, grads, lr=rate)
                model._cache = {}
                step += 1
                done_here += 1
                wd = 0.5 * weight_decay * sum(float(np.sum(v ** 2)) for k, v in model.params.items() if is_filter(k))
                row = {"step": step, "lr": rate, "loss": terms["loss"] + wd, "image_mse": terms["image_mse"],
                       "kernel_mse": terms["kernel_mse"], "grad_norm": gnorm,
                       "seconds": time.perf_counter() - t0}
                if val_batch is not None and val_every and (step % val_every == 0 or step == steps):
                    v, vb = run_validation(step)
                    row.update(val_psnr=v, val_psnr_blurred=vb)
                    log(f"step {step}: validation PSNR {v:.2f} dB (blurred {vb:.2f} dB, best {best['best_val_psnr']:.2f} "
                        f"at {best['best_step']})")
                history.append(row)
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.2e}", psnr=f"{best['latest_val_psnr'] or float('nan'):.2f}",
                                s_step=f"{row['seconds']:.2f}", refresh=False)
                if progress and not tty and (done_here % 10 == 0 or step == steps):
                    rate_s = (time.perf_counter() - t_start) / done_here
                    log(f"step {step}/{steps} loss {row['loss']:.3e} (image {row['image_mse']:.3e}, "
                        f"kernel {row['kernel_mse']:.3e}) {rate_s:.2f} s/step, "
                        f"ETA {(steps - step) * rate_s / 60:.0f} min")
                stop = flag.signal is not None or (stop_after is not None and done_here >= stop_after)
                if step % ckpt_every == 0 or step == steps or stop:
                    checkpoint(step, wall0 + time.perf_counter() - t_start)
                if flag.signal is not None:
                    interrupted = True
                    log(f"signal {flag.signal}: stopped after step {step}, checkpoint written")
                    break
                if stop:
                    break
    finally:
        stream.close()
        bar.close()
    elapsed = time.perf_counter() - t_start
    secs = [r["seconds"] for r in history if r.get("seconds") is not None and r["step"] > start]
    return {"step": step, "interrupted": interrupted, **best, "out": str(out),
            "seconds_per_step": float(np.mean(secs)) if secs else None, "elapsed": elapsed,
            "wall_seconds": wall0 + elapsed}


def evaluate_levin(model, root, *, limit=None):
    """Levin et al. benchmark scores of `model` as ``deblur`` runs it (coarse
    to fine, float32, the model's final image step).

    Returns the summary of :func:`hqsdeblur.evaluate.evaluate` (``mean_psnr_aligned_db`` ...).
    """
    from .deblur import unrolled_deblur
    from .evaluate import evaluate

    def method(y):
        return unrolled_deblur(np.asarray(y, dtype=np.float32), model=model)

    _, summary = evaluate(method, root, "levin", limit=limit, progress=False)
    return summary


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def add_train_arguments(parser):
    """Add the training options to an :class:`argparse.ArgumentParser`.

    Example
    -------
    >>> p = add_train_arguments(argparse.ArgumentParser())
    >>> p.parse_args(["--images", "imgs", "--out", "runs/a"]).steps
    1000
    """
    a = parser.add_argument
    a("--images", required=True, metavar="DIR",
      help="folder of training images (its 'kodak24' subfolder, if any, is held out for validation)")
    a("--val-images", metavar="DIR", help="validation images (default: the held-out kodak24 group)")
    a("--out", required=True, metavar="DIR", help="run folder: checkpoint, logs, plot, best model")
    a("--kernels", choices=("linear", "shake", "mixed", "pool"), default="mixed", help="training blur kernels")
    a("--mix", default="0.3,0.5,0.2", metavar="L,S,P",
      help="probabilities of linear, shake and pool kernels for --kernels mixed (default 0.3,0.5,0.2)")
    a("--shake-max-extent", type=float, default=None, metavar="PX",
      help="largest camera-shake extent in pixels (default: the kernel window)")
    a("--steps", type=int, default=1000, help="total optimiser steps (default 1000)")
    a("--batch", type=int, default=8, help="patches per step (default 8)")
    a("--patch", type=int, default=96, help="patch size in pixels (default 96)")
    a("--channels", type=int, default=16)
    a("--layers", type=int, default=10)
    a("--kernel-size", type=int, default=45, help="kernel window (odd, default 45)")
    a("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    a("--min-lr", type=float, default=None, help="final learning rate (default lr/20)")
    a("--schedule", choices=("cosine", "step", "constant"), default="cosine")
    a("--warmup", type=int, default=None, help="warm-up steps (default min(100, steps/20))")
    a("--clip", type=float, default=1.0, help="gradient clipping by global norm (0 disables)")
    a("--kappa", type=float, default=100.0, help="kernel-loss weight (default 100)")
    a("--kernel-shift", type=int, default=3, help="shift tolerance of the kernel loss in pixels (default 3)")
    a("--image-shift", type=int, default=0,
      help="shift tolerance of the image loss and validation PSNR in pixels (default 0: plain MSE)")
    a("--weight-decay", type=float, default=0.0, help="L2 weight decay on the filters (default 0)")
    a("--init", choices=("xavier", "tv", "published", "hqs"), default="xavier",
      help="start: Xavier filters, TV-like filters, fine-tune the published DUBLID weights, or the "
           "classical TV schedule as a 2-channel identity-cascade network (hqsdeblur.schedule)")
    a("--init-from", metavar="MODEL", help="model file for --init published (default: the published archive)")
    a("--image-loss", choices=("network", "wiener"), default=None,
      help="image term: the network's reconstruction, or the Wiener deconvolution with its kernel "
           "(default: wiener for --init hqs, else network)")
    a("--extension", choices=("smooth", "wrap"), default=None,
      help="the network's border in training (default: wrap for --init hqs, as coarse to fine uses it, else smooth)")
    a("--hqs-schedule", metavar="K=V,...", type=_parse_schedule, default=None,
      help="for --init hqs: hqsdeblur.schedule.hqs_schedule arguments, e.g. iterations=5,beta_ratio=8")
    a("--coarse-start", type=float, default=0.0, metavar="P",
      help="fraction of pairs on which the network starts from a coarse-scale version of the true kernel "
           "(trains it for coarse-to-fine inference; default 0: always the delta)")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.npz")
    a("--seed", type=int, default=0)
    a("--val-every", type=int, default=100, help="validation period in steps (0 disables)")
    a("--val-patches", type=int, default=24)
    a("--val-patch", type=int, default=128)
    a("--ckpt-every", type=int, default=25, help="checkpoint period in steps")
    a("--noise", type=float, default=0.01,
      help="training noise: sigma drawn uniformly in [0, NOISE] per patch (default 0.01)")
    a("--no-snapshots", action="store_true", help="do not keep the model of every validation step")
    a("--dtype", choices=("float32", "float64"), default="float32")
    a("--threads", type=int, default=1, help="FFT worker threads (default 1)")
    a("--backend", default=None, help="array backend (numpy, cython, numba, cupy)")
    a("--quiet", action="store_true", help="no progress bar or messages")
    return parser


def _parse_schedule(text):
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value, got {item!r}")
        try:
            out[key.strip()] = int(val) if val.strip().lstrip("-").isdigit() else float(val)
        except ValueError:
            out[key.strip()] = val.strip()
    return out


def _parse_mix(text):
    try:
        mix = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        mix = ()
    if len(mix) != 3:
        raise InputError(f"--mix must be three comma-separated probabilities, not {text!r}")
    return mix


def run_train(args):
    """Run training from parsed arguments; returns an exit code
    (0 done, 130 stopped by a signal, 1 error)."""
    try:
        s = train(args.images, args.out, steps=args.steps, batch=args.batch, patch=args.patch,
                  channels=args.channels, layers=args.layers, kernel_size=args.kernel_size,
                  kernels=args.kernels, lr=args.lr, min_lr=args.min_lr, schedule=args.schedule,
                  warmup=args.warmup, clip=args.clip or None, kappa=args.kappa,
                  kernel_shift=args.kernel_shift, image_shift=args.image_shift, weight_decay=args.weight_decay, init=args.init,
                  init_from=args.init_from, hqs_args=args.hqs_schedule, image_loss=args.image_loss, extension=args.extension, seed=args.seed, val_images=args.val_images,
                  val_every=args.val_every, val_patches=args.val_patches, val_patch=args.val_patch,
                  ckpt_every=args.ckpt_every, resume=args.resume, dtype=args.dtype,
                  noise_sigma=(0.0, args.noise),
                  threads=args.threads, backend=args.backend, progress=not args.quiet,
                  snapshots=not args.no_snapshots, mix=_parse_mix(args.mix),
                  shake_max_extent=args.shake_max_extent, coarse_start=args.coarse_start)
    except HqsdeblurError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(json.dumps(s, default=_json_default), file=sys.stderr)
    return 130 if s["interrupted"] else 0


def main(argv=None):
    """``python -m hqsdeblur.train [export RUN MODEL] | [training options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "levin":
        p = argparse.ArgumentParser(prog="python -m hqsdeblur.train levin",
                                    description="Score a model file or a run's latest checkpoint on Levin et al.")
        p.add_argument("model", help="model file (.npz) or run folder")
        p.add_argument("--limit", type=int, default=None, help="first N of the 32 images")
        p.add_argument("--data", default=str(PUBLISHED_MODEL.parent.parent / "data"))
        a = p.parse_args(argv[1:])
        _limit_fft_workers(1)
        src = Path(a.model)
        model = load_checkpoint(src / CHECKPOINT)[0] if src.is_dir() else load_model(src)
        print(json.dumps(evaluate_levin(model, a.data, limit=a.limit), indent=1))
        return 0
    if argv and argv[0] == "export":
        p = argparse.ArgumentParser(prog="python -m hqsdeblur.train export",
                                    description="Export a run's model to an hqsdeblur model file.")
        p.add_argument("run", help="run folder (holds checkpoint.npz)")
        p.add_argument("model", help="model file to write (.npz)")
        p.add_argument("--which", choices=("best", "latest"), default="best")
        p.add_argument("--levin", type=int, default=None, metavar="N",
                       help="also score on the first N Levin images (0 = all 32) and store the scores")
        a = p.parse_args(argv[1:])
        _limit_fft_workers(1)
        try:
            export_model(a.run, a.model, which=a.which, levin_limit=a.levin)
        except HqsdeblurError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {a.model}")
        return 0
    p = argparse.ArgumentParser(prog="python -m hqsdeblur.train", description="Train the unrolled DUBLID network.")
    add_train_arguments(p)
    return run_train(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
