"""Training: objective, Adam, projection, schedule, checkpoints, exact resume."""

import argparse
import os
import signal

import numpy as np
import pytest
from scipy import ndimage

from hqsdeblur import optim
from hqsdeblur.backend import use_backend
from hqsdeblur.data import PairSampler, make_batch
from hqsdeblur.model_io import load_model
from hqsdeblur.optim import Adam, clip_grad_norm, lr_at, project
from hqsdeblur.train import (
    _StopFlag,
    add_train_arguments,
    batch_loss_and_grads,
    export_model,
    gradient_precision,
    kernel_loss,
    load_checkpoint,
    make_model,
    save_checkpoint,
    train,
)

TINY = dict(channels=3, layers=2, kernel_size=9)


def _images(n=3, size=72):
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        im = ndimage.gaussian_filter(rng.random((size, size)), 1.5)
        im = (im - im.min()) / np.ptp(im)
        out.append(im)
    return out


def _tiny_run(out, **kw):
    opts = dict(steps=4, batch=2, patch=24, kernels="linear", lr=1e-2, val_every=2,
                val_patches=2, val_patch=24, ckpt_every=1, progress=False, seed=3, **TINY)
    opts.update(kw)
    return train(_images(), out, **opts)


@pytest.fixture(scope="module")
def batch():
    s = PairSampler(_images(), patch_size=24, kernel_size=9, kernel_mode="linear", noise_sigma=0.0)
    return make_batch(s, 3, seed=0, step=0)


def test_loss_decreases(batch):
    model = make_model(init="xavier", seed=0, **TINY)
    opt = Adam(model.params, lr=2e-2)
    losses = []
    for _ in range(8):
        terms, g = batch_loss_and_grads(model, batch, kappa=10.0, kernel_shift=1)
        losses.append(terms["loss"])
        g, _ = clip_grad_norm(g, 1.0)
        opt.step(model.params, g)
        model._cache = {}
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("init", ["tv", "hqs"])
def test_training_step_runs_on_the_active_backend(backend, batch, monkeypatch, init):
    # the patches go to the active backend's device, and every backend gives
    # the NumPy gradients (also for the schedule network: identity cascade,
    # kernel steps on some layers, the cleaning rule and the ridge LS)
    from hqsdeblur import unrolled

    short = {"hqs_args": {"iterations": 3, "beta_ratio": 4.0}} if init == "hqs" else {}
    model = make_model(init=init, seed=1, **TINY, **short)
    seen = []
    fwd = unrolled.UnrolledModel.forward

    def spy(self, y, **kw):
        seen.append(type(y).__module__.split(".")[0])
        return fwd(self, y, **kw)

    ref_terms, ref = batch_loss_and_grads(model, batch, dtype=np.float64)
    monkeypatch.setattr(unrolled.UnrolledModel, "forward", spy)
    with use_backend(backend.name):
        terms, g = batch_loss_and_grads(model, batch, dtype=np.float64)
    assert set(seen) == {backend.xp.__name__}
    assert abs(terms["loss"] - ref_terms["loss"]) < 1e-10
    for name in ref:
        assert np.allclose(g[name], ref[name], rtol=1e-8, atol=1e-12), name


def test_float32_gradients_match_float64(batch):
    model = make_model(init="tv", seed=1, **TINY)
    r = gradient_precision(model, batch, kappa=100.0, kernel_shift=3)
    assert r["rel_error"] < 1e-3 and r["cosine"] > 0.9999, r


def test_kernel_loss_gradient_and_shift():
    rng = np.random.default_rng(0)
    t = np.zeros((9, 9))
    t[4, 2:7] = 0.2
    k = np.roll(t, (1, -2), axis=(0, 1)) + 0.01 * rng.random((9, 9))
    mse, g, shift = kernel_loss(k, t, max_shift=3)
    assert shift == (1, -2)
    assert mse < kernel_loss(k, t)[0]
    d = rng.standard_normal(k.shape)
    h = 1e-6
    num = (kernel_loss(k + h * d, t, max_shift=3)[0] - kernel_loss(k - h * d, t, max_shift=3)[0]) / (2 * h)
    assert abs(num - np.sum(g * d)) < 1e-6 * max(1e-12, abs(num)) + 1e-12


def test_adam_matches_hand_computed_steps():
    p = {"w0": np.array([1.0, -2.0]), "bias": np.array([0.5])}
    opt = Adam(p, lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.5)
    g1 = {"w0": np.array([0.2, -0.4]), "bias": np.array([1.0])}
    g2 = {"w0": np.array([-0.1, 0.3]), "bias": np.array([2.0])}
    w, b = np.array([1.0, -2.0]), 0.5
    m = v = 0.0
    mb = vb = 0.0
    for t, g in enumerate((g1, g2), start=1):
        opt.step(p, g)
        gw = g["w0"] + 0.5 * w  # L2 decay on filters only
        m = 0.9 * m + 0.1 * gw
        v = 0.99 * v + 0.01 * gw ** 2
        w = w - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-8)
        mb = 0.9 * mb + 0.1 * g["bias"][0]
        vb = 0.99 * vb + 0.01 * g["bias"][0] ** 2
        b = max(0.0, b - 0.1 * (mb / (1 - 0.9 ** t)) / (np.sqrt(vb / (1 - 0.99 ** t)) + 1e-8))
    np.testing.assert_allclose(p["w0"], w, rtol=1e-14)
    np.testing.assert_allclose(p["bias"], [b], rtol=1e-14)
    # state round trip
    opt2 = Adam(p, lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    assert opt2.t == 2 and np.array_equal(opt2.m["w0"], opt.m["w0"])


def test_projection_keeps_constraints():
    model = make_model(init="xavier", **TINY)
    p = model.params
    opt = Adam(p, lr=10.0)
    g = {k: np.ones_like(v) for k, v in p.items()}  # pushes everything down by ~lr
    opt.step(p, g)
    for name in optim.CONSTRAINED:
        assert p[name].min() >= 0.0, name
    assert p["w1"].min() < 0  # filters are unconstrained
    q = project({"zeta": np.array([-1.0, 3.0]), "eta": np.array([-0.0, -5.0])})
    assert q["zeta"].tolist() == [0.0, 3.0] and q["eta"].tolist() == [0.0, 0.0]


def test_clip_and_schedule():
    g, n = clip_grad_norm({"a": np.array([3.0]), "b": np.array([4.0])}, 0.5)
    assert n == 5.0 and np.isclose(np.hypot(g["a"], g["b"])[0], 0.5)
    g, _ = clip_grad_norm({"a": np.array([0.3])}, None)
    assert g["a"][0] == 0.3
    lrs = [lr_at(s, base_lr=1.0, total_steps=20, warmup=5, min_lr=0.1) for s in range(20)]
    assert lrs[0] == 0.2 and lrs[4] == 1.0 and lrs[5] == 1.0
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:])) and lrs[-1] >= 0.1
    st = [lr_at(s, base_lr=1.0, total_steps=9, schedule="step", gamma=0.1) for s in (0, 3, 6)]
    np.testing.assert_allclose(st, [1.0, 0.1, 0.01])


def test_exact_resume_is_bit_identical(tmp_path):
    straight = _tiny_run(tmp_path / "a")
    assert straight["step"] == 4
    first = _tiny_run(tmp_path / "b", stop_after=2)
    assert first["step"] == 2
    second = _tiny_run(tmp_path / "b", resume=True)
    assert second["step"] == 4
    ma, sa, _, _ = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    mb, sb, _, _ = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    for k in ma.params:
        assert np.array_equal(ma.params[k], mb.params[k]), k
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k
    # log rows are continuous after the resume (no duplicates)
    import json

    steps = [r["step"] for r in json.load(open(tmp_path / "b" / "log.json"))["history"]]
    assert steps == [0, 1, 2, 3, 4]
    # without --resume an existing checkpoint is never clobbered
    with pytest.raises(OSError):
        _tiny_run(tmp_path / "b")


def test_run_outputs_and_atomic_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    s = _tiny_run(out, steps=2)
    names = sorted(os.listdir(out))
    assert names == ["best_model.npz", "checkpoint.npz", "curves.png", "log.csv", "log.json", "options.json",
                     "snapshots"]
    assert sorted(os.listdir(out / "snapshots")) == ["step_000000.npz", "step_000002.npz"]
    assert s["best_val_psnr"] is not None
    before = (out / "checkpoint.npz").read_bytes()
    model, state, step, _ = load_checkpoint(out / "checkpoint.npz")
    opt = Adam(model.params)
    opt.load_state_dict(state)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(Exception):
        save_checkpoint(out / "checkpoint.npz", model, opt, step + 1)
    monkeypatch.undo()
    assert (out / "checkpoint.npz").read_bytes() == before
    assert sorted(os.listdir(out)) == names  # no stray temporary file
    # export to a model file with metadata
    export_model(out, tmp_path / "m.npz", which="latest")
    m = load_model(tmp_path / "m.npz")
    assert m.config.channels == 3 and m.meta["training"]["steps_done"] == 2
    export_model(out, tmp_path / "best.npz")
    assert load_model(tmp_path / "best.npz").meta["metrics"]["val_psnr"] is not None


def test_sigterm_sets_stop_flag():
    with _StopFlag() as flag:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes
            if flag.signal is not None:
                break
    assert flag.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is not flag._handle


def test_argparse_requires_images():
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--out", "x"])
    a = p.parse_args(["--images", "d", "--out", "x", "--init", "published", "--kernels", "shake"])
    assert a.init == "published" and a.kernels == "shake" and not a.resume


def test_export_with_levin_scores(tmp_path, shared):
    _tiny_run(tmp_path / "r", steps=1, val_every=0)
    export_model(tmp_path / "r", tmp_path / "m.npz", levin_limit=1, data_root=os.path.join(shared, "data"))
    lev = load_model(tmp_path / "m.npz").meta["metrics"]["levin"]
    assert lev["count"] == 1 and np.isfinite(lev["mean_psnr_aligned_db"])


def test_shift_tolerant_image_loss_gradient(batch):
    from hqsdeblur.train import patch_loss_and_grads

    model = make_model(init="tv", seed=2, **TINY)
    y, x, k = batch.blurred[0], batch.sharp[0], batch.kernel[0]
    kw = dict(kappa=10.0, kernel_shift=2, image_shift=2, dtype=np.float64)
    terms, g = patch_loss_and_grads(model, y, x, k, **kw)
    plain, _ = patch_loss_and_grads(model, y, x, k, **{**kw, "image_shift": 0})
    assert terms["image_mse"] <= plain["image_mse"]
    d = {n: np.random.default_rng(5).standard_normal(v.shape) for n, v in model.params.items()}
    base = {n: v.copy() for n, v in model.params.items()}

    def loss_at(t):
        model.params = {n: base[n] + t * d[n] for n in base}
        model._cache = {}
        return patch_loss_and_grads(model, y, x, k, **kw)[0]["loss"]

    h = 1e-6
    num = (loss_at(h) - loss_at(-h)) / (2 * h)
    ana = sum(float(np.sum(g[n] * d[n])) for n in g)
    assert abs(num - ana) < 1e-5 * abs(ana), (num, ana)


def test_adam_log_scale_groups():
    """Log-space groups move by relative steps, keep their sign, zeros stay."""
    p = {"bias": np.array([1e-5, 1e-2, 0.0]), "w0": np.array([1e-5])}
    opt = Adam(p, lr=0.1, log_scale=("bias",))
    opt.step(p, {"bias": np.array([3.0, -2.0, 5.0]), "w0": np.array([1.0])})
    # first step: d log p = -lr * m / (sqrt(v) + eps), m = v**0.5 = g * p
    gp = np.array([3e-5, -2e-2])
    np.testing.assert_allclose(p["bias"][:2], [1e-5, 1e-2] * np.exp(-0.1 * gp / (np.abs(gp) + 1e-8)), rtol=1e-12)
    assert p["bias"][2] == 0.0
    np.testing.assert_allclose(p["w0"], [1e-5 - 0.1], rtol=1e-6)  # additive group


def test_hqs_schedule_training_resumes_exactly_and_exports(tmp_path):
    """init='hqs': the schedule network trains (log-space Adam on its
    thresholds and weights), resumes bit-identically, and its export asks
    for the non-blind final image."""
    kw = dict(init="hqs", kernel_size=9, patch=32, val_patch=32, hqs_args={"iterations": 3, "beta_ratio": 4.0})
    a = _tiny_run(tmp_path / "a", **kw)
    _tiny_run(tmp_path / "b", stop_after=2, **kw)
    _tiny_run(tmp_path / "b", resume=True, **kw)
    ma, _, _, _ = load_checkpoint(tmp_path / "a" / "checkpoint.npz")
    mb, _, _, _ = load_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert a["step"] == 4 and ma.config.cascade == "identity" and "w1" not in ma.params
    for k in ma.params:
        assert np.array_equal(ma.params[k], mb.params[k]), k
    start = make_model(init="hqs", kernel_size=9, hqs_args=kw["hqs_args"]).params
    assert not np.array_equal(ma.params["bias"], start["bias"])  # it trained
    np.testing.assert_array_equal(ma.params["kernel_prox"] == 0, start["kernel_prox"] == 0)
    m = export_model(tmp_path / "a", tmp_path / "m.npz", which="latest")
    assert load_model(tmp_path / "m.npz").meta["final_image"] == "nonblind" == m.meta["final_image"]


@pytest.mark.parametrize("init", ["tv", "hqs"])
def test_wiener_image_loss_gradient(batch, init):
    """image_loss='wiener' scores the Wiener deconvolution with the network's
    kernel: the whole gradient against a central difference (float64)."""
    from hqsdeblur.train import patch_loss_and_grads, wiener_deconvolve

    short = {"hqs_args": {"iterations": 3, "beta_ratio": 4.0}} if init == "hqs" else {}
    model = make_model(init=init, seed=2, **TINY, **short)
    y, x, k = batch.blurred[0], batch.sharp[0], batch.kernel[0]
    kw = dict(kappa=10.0, kernel_shift=2, image_shift=1, dtype=np.float64, image_loss="wiener")
    terms, g = patch_loss_and_grads(model, y, x, k, **kw)
    xw, _ = wiener_deconvolve(np.asarray(y, np.float64), np.asarray(k, np.float64))
    assert xw.shape == y.shape and terms["image_mse"] > 0
    # a relative direction: the schedule's thresholds are ~1e-5
    d = {n: np.random.default_rng(6).standard_normal(v.shape) * np.abs(v) for n, v in model.params.items()}
    base = {n: v.copy() for n, v in model.params.items()}

    def loss_at(t):
        model.params = {n: base[n] + t * d[n] for n in base}
        model._cache = {}
        return patch_loss_and_grads(model, y, x, k, **kw)[0]["loss"]

    ana = sum(float(np.sum(g[n] * d[n])) for n in g)
    errs = [abs((loss_at(h) - loss_at(-h)) / (2 * h) - ana) / abs(ana) for h in (1e-5, 1e-6, 1e-7)]
    assert min(errs) < 1e-5, errs
    with pytest.raises(Exception):
        patch_loss_and_grads(model, y, x, k, **{**kw, "image_loss": "psnr"})
