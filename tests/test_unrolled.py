"""The unrolled network: parity with the published model, end-to-end
gradient check, model files."""

import os

import numpy as np
import pytest

from hqsdeblur.backend import to_numpy, use_backend
from hqsdeblur.errors import ModelError
from hqsdeblur.model_io import load_model, save_model
from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params

PARITY = ["parity_000_00", "parity_005_00", "parity_050_01", "parity_100_02", "parity_150_03"]


@pytest.fixture(scope="module")
def published(request):
    from conftest import SHARED

    path = os.path.join(SHARED, "reference", "dublid_linear_16c10l.npz")
    if not os.path.exists(path):
        pytest.skip("../shared/reference is absent")
    return load_model(path)


def _parity(name):
    from conftest import SHARED

    return np.load(os.path.join(SHARED, "reference", name + ".npz"))


@pytest.mark.parametrize("name", PARITY)
def test_parity_float64(published, name):
    d = _parity(name)
    x, k, T = published.forward(d["blurred"].astype(np.float64), exact=True, tape=True, backend="numpy")
    assert np.abs(x - d["image"]).max() < 1e-5
    assert np.abs(k - d["kernel"]).max() < 1e-6
    if "kernel_layers" in d:
        for t, layer in enumerate(T.layers):
            assert np.abs(layer["k"] - d["kernel_layers"][t]).max() < 1e-6, t
            assert abs(float(layer["m"]) - float(d["k_max_layers"][t])) < 1e-6


@pytest.mark.parametrize("name", PARITY)
def test_parity_float32(published, backend, name):
    if backend.name == "cupy":
        pass  # same tolerance on the GPU
    d = _parity(name)
    y = backend.xp.asarray(d["blurred"])
    with use_backend(backend.name):
        x, k = published.forward(y, exact=True)
    assert x.dtype == np.float32
    assert np.abs(to_numpy(x) - d["image"]).max() < 1e-4
    assert np.abs(to_numpy(k) - d["kernel"]).max() < 1e-5


def _tiny(seed=1):
    cfg = UnrolledConfig(channels=3, layers=3, kernel_size=9)
    p = init_params(cfg, seed=seed)
    p["kernel_bias"] = np.array([0.5, 1.0, 2.0])
    p["bias"] = p["bias"] * 0.5
    return cfg, p


def _tiny_hqs(rule="clean", prior="ridge", seed=1):
    """An identity cascade with a kernel step on some layers only, as the
    classical schedule (init='tv-c2f') uses."""
    cfg = UnrolledConfig(channels=2, layers=5, kernel_size=9, cascade="identity", kernel_layers=(1, 2, 4),
                         kernel_rule=rule, kernel_prior=prior)
    p = init_params(cfg, seed=seed, init="tv")
    p["kernel_bias"] = np.array([0.0, 0.2, 0.5, 0.0, 0.3])
    p["kernel_prox"] = np.array([0.0, 0.5, 0.8, 0.0, 0.6])
    p["bias"] = p["bias"] * 0.5
    return cfg, p


def _tiny_latent(shrink_rule="l0"):
    """The image-latent form (tv's default estimator): one latent image per
    layer, L0 or soft shrinkage, restarts after each kernel step."""
    cfg, p = _tiny_hqs()
    cfg = UnrolledConfig(**{**cfg.to_dict(), "latent": "image", "shrink": shrink_rule, "restart": True})
    p = dict(p)
    p["bias"] = np.full_like(p["bias"], 0.02)
    return cfg, p


ARCHS = {"published": _tiny, "hqs-clean-ridge": _tiny_hqs,
         "hqs-softmax-prox": lambda: _tiny_hqs("softmax", "prox"),
         "latent-l0": _tiny_latent, "latent-soft": lambda: _tiny_latent("soft")}


@pytest.mark.parametrize("exact", [True, False])
@pytest.mark.parametrize("start", ["delta", "k0"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_end_to_end_gradient(exact, start, arch):
    """Every parameter group against central differences, float64 (from the
    delta and from a given initial kernel, as in coarse-to-fine runs), for
    the published architecture and for identity cascades with the kernel
    step on some layers, either kernel rule and either kernel prior."""
    cfg, p = ARCHS[arch]()
    rng = np.random.default_rng(0)
    y = rng.random((32, 30))
    if exact and cfg.latent == "image":  # the published network has no latent image
        with pytest.raises(ValueError):
            UnrolledModel(cfg, p).forward(y, exact=True)
        return
    xt = rng.random((32, 30))
    kt = rng.random((9, 9))
    kt /= kt.sum()
    k0 = None
    if start == "k0":
        k0 = rng.random((9, 9))
        k0 /= k0.sum()
    if arch != "published":
        # A blurred structured image (on noise the 2-channel schedule keeps
        # the delta and most gradients vanish), and targets near the output:
        # the loss and its round-off shrink with the residual, the gradient
        # only in proportion, so the central difference resolves the small
        # zeta gradients of the schedule.
        from scipy.ndimage import convolve, gaussian_filter

        kb = np.zeros((9, 9))
        kb[4, 2:7] = kb[3, 5:7] = 1
        y = convolve((gaussian_filter(rng.random((32, 30)), 1.5) > 0.5).astype(float), kb / kb.sum(), mode="wrap")
        y += 0.005 * rng.standard_normal(y.shape)
        x_, k_ = UnrolledModel(cfg, p).forward(y, exact=exact, backend="numpy", k0=k0)
        xt = x_ + 0.01 * rng.standard_normal(x_.shape)
        kt = k_ + 0.001 * rng.standard_normal(k_.shape)

    def loss(params):
        x, k = UnrolledModel(cfg, params).forward(y, exact=exact, backend="numpy", k0=k0)
        return 0.5 * ((x - xt) ** 2).sum() + 50 * ((k - kt) ** 2).sum()

    m = UnrolledModel(cfg, p)
    x, k, T = m.forward(y, exact=exact, tape=True, backend="numpy", k0=k0)
    g = m.backward(T, x - xt, 100 * (k - kt))
    assert set(g) == set(p)
    for name in p:
        d = rng.standard_normal(p[name].shape)
        ana = float((g[name] * d).sum())
        errs = []
        # a kink of the soft shrinkage within +-h spoils the central
        # difference at that step only: a smaller step must then agree
        for h in (1e-5, 1e-6, 1e-7):
            num = (loss({**p, name: p[name] + h * d}) - loss({**p, name: p[name] - h * d})) / (2 * h)
            # (a group the configuration does not use, e.g. kernel_bias under
            # the cleaning rule, must have a zero gradient and no effect)
            errs.append(abs(num - ana) / max(abs(num), abs(ana), 1e-9))
        assert min(errs) < 1e-6, (name, errs, ana)


def test_model_roundtrip_and_corruption(tmp_path):
    cfg, p = _tiny()
    m = UnrolledModel(cfg, p, {"training": {"steps": 3}})
    f = tmp_path / "m.npz"
    save_model(f, m)
    m2 = load_model(f)
    assert m2.config == cfg and m2.meta["training"]["steps"] == 3
    for k in p:
        assert np.array_equal(m2.params[k], p[k])
    with pytest.raises(Exception):
        save_model(f, m)  # exists, no overwrite
    # truncated file
    raw = f.read_bytes()
    bad = tmp_path / "trunc.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelError):
        load_model(bad)
    # not an npz
    txt = tmp_path / "text.npz"
    txt.write_text("hello")
    with pytest.raises(ModelError):
        load_model(txt)
    # changed values -> checksum mismatch; missing / extra arrays; wrong shape
    with np.load(f, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    cases = {
        "checksum": {**arrays, "eta": arrays["eta"] + 1},
        "missing": {k: v for k, v in arrays.items() if k != "zeta"},
        "extra": {**arrays, "junk": np.zeros(2)},
        "shape": {**arrays, "eta": np.zeros(5)},
        "header": {**arrays, "__meta__": np.array("{not json")},
    }
    for what, arr in cases.items():
        g = tmp_path / f"{what}.npz"
        np.savez(g, **arr)
        with pytest.raises(ModelError) as exc:
            load_model(g)
        assert str(g) in str(exc.value)
    with pytest.raises(ModelError):
        load_model(tmp_path / "nope.npz")
    with pytest.raises(ModelError):
        load_model(tmp_path)


def test_any_size_and_fast_mode_defaults():
    cfg, p = _tiny()
    m = UnrolledModel(cfg, p)
    rng = np.random.default_rng(3)
    for shape in [(33, 47), (61, 20), (20, 20)]:
        y = rng.random(shape).astype(np.float32)
        x, k = m.forward(y)
        assert x.shape == shape and x.dtype == np.float32
        assert abs(float(k.sum()) - 1) < 1e-5 and float(k.min()) >= 0
        assert np.all(np.isfinite(x))


@pytest.mark.parametrize("border", ["smooth", "wrap"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-10), (np.float32, 2e-5)])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_fast_inference_path_equals_tape_path(dtype, tol, border, arch):
    """The inference-only fast path computes the same function as the
    differentiable (tape) path."""
    cfg, p = ARCHS[arch]()
    m = UnrolledModel(cfg, p)
    y = np.random.default_rng(7).random((37, 52)).astype(dtype)
    x1, k1 = m.forward(y, backend="numpy", border=border)
    x2, k2, _ = m.forward(y, tape=True, backend="numpy", border=border)
    assert np.abs(x1 - x2).max() < tol and np.abs(k1 - k2).max() < tol


def test_wrap_border_grid_and_extension():
    from hqsdeblur.boundary import crop
    from hqsdeblur.unrolled import border_grid, extend

    y = np.random.default_rng(2).random((2, 30, 41))
    pad = 8
    S = border_grid(y.shape, pad, "wrap")
    assert S[0] >= 30 + 2 * (pad + pad // 2 + 3) and S[1] >= 41 + 2 * (pad + pad // 2 + 3)
    e = extend(y, S, pad, "wrap")
    assert e.shape == (2,) + S and e.dtype == y.dtype
    assert np.array_equal(crop(e[1], pad, (30, 41)), y[1])
    # periodic and smooth across the wrap: no jump larger than inside the image
    jump = max(np.abs(e[0, :, 0] - e[0, :, -1]).max(), np.abs(e[0, 0] - e[0, -1]).max())
    assert jump < np.abs(np.diff(y[0], axis=1)).max()
    with pytest.raises(ValueError):
        UnrolledModel(*_tiny()).forward(y[0], border="mirror")


def test_colour_reconstruction_modes_are_stable():
    from hqsdeblur.unrolled import reconstruct_channels

    cfg, p = _tiny()
    m = UnrolledModel(cfg, p)
    rng = np.random.default_rng(8)
    rgb = rng.random((3, 40, 44))
    lum = np.tensordot([0.2125, 0.7154, 0.0721], rgb, axes=1)
    x, k, state = m.forward(lum, return_state=True, backend="numpy")
    for joint in (True, False):
        a = reconstruct_channels(state, rgb, joint=joint)
        b = reconstruct_channels(state, rgb + 1e-6 * rng.standard_normal(rgb.shape), joint=joint)
        assert a.shape == rgb.shape and np.all(np.isfinite(a))
        assert np.abs(a - b).max() < 1e-3  # well conditioned


def test_deblur_unrolled_coarse_to_fine_and_options():
    """deblur(method='unrolled') runs coarse to fine by default; one pass
    with pyramid=False; bad option combinations are refused."""
    from hqsdeblur import deblur
    from hqsdeblur.coarse_to_fine import unrolled_coarse_to_fine
    from hqsdeblur.errors import InputError

    cfg, p = _tiny()
    m = UnrolledModel(cfg, p)
    y = np.random.default_rng(5).random((48, 56)).astype(np.float32)
    x, k = deblur(y, method="unrolled", model=m, kernel_size=13, coarsest=5, backend="numpy")
    with use_backend("numpy"):
        xc, kc = unrolled_coarse_to_fine(m, y, kernel_size=13, coarsest=5)
        x2, k2 = m.forward(y)
    assert k.shape == (13, 13) and np.allclose(k, kc, atol=1e-6) and np.allclose(x, np.clip(xc, 0, 1), atol=1e-5)
    x1, k1 = deblur(y, method="unrolled", model=m, pyramid=False, backend="numpy")
    assert np.allclose(k1, k2, atol=1e-6) and np.allclose(x1, np.clip(x2, 0, 1), atol=1e-5)
    with pytest.raises(InputError):
        deblur(y, method="unrolled", model=m, exact=True, pyramid=True)
    with pytest.raises(InputError):
        deblur(y, method="unrolled", model=m, lam=0.1)
    # colour: kernel from luminance, every mode finite and in range
    rgb = np.stack([y, y, y], axis=-1)  # luminance = y
    for colour in ("nonblind", "joint", "per-channel"):
        xc, kc = deblur(rgb, method="unrolled", model=m, kernel_size=13, coarsest=5, colour=colour, backend="numpy")
        assert xc.shape == rgb.shape and np.all(np.isfinite(xc)) and np.allclose(kc, k, atol=1e-5)


def test_window_models_are_cached_until_the_parameters_change():
    cfg, p = _tiny()
    m = UnrolledModel(cfg, p)
    a = m.with_window(5)
    assert m.with_window(5) is a and m.with_window(cfg.kernel_size) is m
    assert a.config.kernel_size == 5 and a.params["w0"] is m.params["w0"]
    m._p(np, np.float32)
    m._p(np, np.float64)  # another parameter copy keeps the window models
    assert m.with_window(5) is a
    m._cache = {}  # what the trainer does after a step
    assert m.with_window(5) is not a


def test_identity_cascade_is_the_cascade_of_identity_filters():
    """cascade='identity' computes what the published architecture computes
    with identity filters after the first layer (without their parameters)."""
    cfg, p = _tiny_hqs("softmax", "prox")
    full = UnrolledConfig(**{**cfg.to_dict(), "cascade": "learned"})
    q = dict(p)
    for l in range(1, cfg.layers):
        q[f"w{l}"] = np.zeros((2, 2, 3, 3))
        q[f"w{l}"][[0, 1], [0, 1], 1, 1] = 1
    assert "w1" not in UnrolledModel(cfg, p).params
    y = np.random.default_rng(4).random((30, 34))
    for kw in (dict(), dict(exact=True), dict(tape=True)):
        a = UnrolledModel(cfg, p).forward(y, backend="numpy", **kw)
        b = UnrolledModel(full, q).forward(y, backend="numpy", **kw)
        assert np.abs(a[0] - b[0]).max() < 1e-10 and np.abs(a[1] - b[1]).max() < 1e-12


def test_hqs_config_validation_and_roundtrip(tmp_path):
    cfg, p = _tiny_hqs()
    f = tmp_path / "hqs.npz"
    save_model(f, UnrolledModel(cfg, p))
    m = load_model(f)
    assert m.config == cfg and m.config.kernel_layers == (1, 2, 4)
    assert [m.config.kernel_step(t) for t in range(5)] == [False, True, True, False, True]
    for bad in (dict(cascade="none"), dict(kernel_rule="max"), dict(kernel_prior="l1"), dict(kernel_layers=(7,)),
                dict(latent="pixels"), dict(shrink="l0"), dict(restart=True)):  # l0 / restart: image latent only
        with pytest.raises(ValueError):
            UnrolledConfig(**{**cfg.to_dict(), **bad})


def test_schedule_network_deblurs_with_the_nonblind_final_step():
    """hqs_schedule: a working blind deblurrer before any training; deblur()
    returns the non-blind deconvolution with its kernel, and on noisy input
    follows the classical mode's noise rules."""
    import skimage.data
    from scipy.ndimage import convolve

    from hqsdeblur import deblur
    from hqsdeblur.data import linear_kernel
    from hqsdeblur.metrics import isnr
    from hqsdeblur.nonblind import deconvolve
    from hqsdeblur.schedule import hqs_schedule
    from hqsdeblur.tv import noise_rules

    x = skimage.data.camera()[::2, ::2] / 255.0
    y = convolve(x, linear_kernel(9, 0, size=21), mode="wrap")
    m = hqs_schedule(kernel_size=21)
    out, k = deblur(y, method="unrolled", model=m)
    np.testing.assert_allclose(out, deconvolve(y, k), atol=1e-6)
    # the horizontal streak is found (the delta would give 0 dB; 3.0 measured)
    assert isnr(np.clip(out, 0, 1), y, x) > 1.5
    assert k[9:12].sum() > 0.8 and np.count_nonzero(k.sum(axis=0) > 0.02) >= 7
    yn = np.clip(y + 0.01 * np.random.default_rng(1).standard_normal(y.shape), 0, 1)
    out, k = deblur(yn, method="unrolled", model=m)
    sigma, noisy, source, weight = noise_rules(yn)
    assert noisy and weight > 0
    np.testing.assert_allclose(out, deconvolve(yn, k, weight=weight), atol=1e-6)
    # one pass (no pyramid): the same rules, kernel from the smoothed copy
    out1, k1 = deblur(yn, method="unrolled", model=m, pyramid=False)
    _, k_src = m.forward(source.astype(np.float32))
    np.testing.assert_allclose(k1, np.asarray(k_src), atol=1e-7)
    np.testing.assert_allclose(out1, deconvolve(yn, k1, weight=weight), atol=1e-6)


def test_schedule_network_classical_check():
    """Beyond twice the model's window (or when asked) the network's kernel
    competes with the classical candidates: the result is the classical
    selection with that kernel as one more candidate."""
    import skimage.data
    from scipy.ndimage import convolve

    from hqsdeblur import deblur
    from hqsdeblur.data import linear_kernel
    from hqsdeblur.errors import InputError
    from hqsdeblur.schedule import hqs_schedule
    from hqsdeblur.tv import blind_deconvolve

    x = skimage.data.camera()[::4, ::4] / 255.0
    y = convolve(x, linear_kernel(7, 30, size=15), mode="wrap")
    m = hqs_schedule(kernel_size=7)  # a 7 px window: 15 is beyond 2x
    _, k_net = deblur(y, method="unrolled", model=m, kernel_size=15, classical_check=False)
    out, k = deblur(y, method="unrolled", model=m, kernel_size=15)
    ref, k_ref, info = blind_deconvolve(y, kernel_size=15, extra_kernels=[k_net], return_info=True)
    np.testing.assert_allclose(k, k_ref)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert info["candidates"][-1]["params"] == {"given": 0}
    # within twice the window: the network alone, unless asked
    _, k13 = deblur(y, method="unrolled", model=m, kernel_size=13)
    _, k13n = deblur(y, method="unrolled", model=m, kernel_size=13, classical_check=False)
    np.testing.assert_array_equal(k13, k13n)
    _, k13c = deblur(y, method="unrolled", model=m, kernel_size=13, classical_check=True)
    _, k13r = blind_deconvolve(y, kernel_size=13, extra_kernels=[k13n])
    np.testing.assert_allclose(k13c, k13r)
    for bad in ("sometimes", 1, None):
        with pytest.raises(InputError):
            deblur(y, method="unrolled", model=m, kernel_size=15, classical_check=bad)
    with pytest.raises(InputError, match="coarse-to-fine"):
        deblur(y, method="unrolled", model=m, kernel_size=15, classical_check=True, pyramid=False)
    from hqsdeblur.train import make_model

    plain = make_model(channels=2, layers=2, kernel_size=7)  # not a schedule network
    with pytest.raises(InputError, match="schedule network"):
        deblur(y, method="unrolled", model=plain, kernel_size=15, classical_check=True)
    _, k_np = deblur(y, method="unrolled", model=m, kernel_size=15, classical_check=np.False_)
    np.testing.assert_array_equal(k_np, k_net)


def test_image_latent_schedule_inference_settings():
    """The L0 image-latent schedule runs from a 5 px coarsest window and
    scales its thresholds with the kernel window as tv.lam_for does."""
    from hqsdeblur.deblur import _window_prior
    from hqsdeblur.schedule import hqs_schedule
    from hqsdeblur.tv import lam_for

    m = hqs_schedule(kernel_size=31, latent="image")
    assert m.config.latent == "image" and m.config.shrink == "l0" and m.config.restart
    assert m.meta["coarsest"] == 5 and m.meta["final_image"] == "nonblind"
    assert _window_prior(m, 31) is m
    m75 = _window_prior(m, 75)
    np.testing.assert_allclose(m75.params["bias"], m.params["bias"] * lam_for(75) / lam_for(31))
    assert _window_prior(m, 75) is m75  # cached
    # the published-style models are left as they are
    cfg, p = _tiny()
    plain = UnrolledModel(cfg, p)
    assert _window_prior(plain, 75) is plain


def test_image_latent_network_on_every_backend(backend):
    """The image-latent schedule network (general path on every backend,
    CuPy included) gives the NumPy result, coarse to fine."""
    from hqsdeblur.coarse_to_fine import unrolled_coarse_to_fine
    from hqsdeblur.schedule import hqs_schedule
    from scipy.ndimage import convolve, gaussian_filter

    rng = np.random.default_rng(2)
    x = (gaussian_filter(rng.random((72, 80)), 2) > 0.5).astype(float)
    kt = np.zeros((9, 9))
    kt[4, 1:8] = 1
    y = convolve(x, kt / kt.sum(), mode="wrap")
    m = hqs_schedule(kernel_size=9, latent="image", iterations=3, beta_ratio=4.0)
    xr, kr = unrolled_coarse_to_fine(m, y, coarsest=5, dtype=np.float64)
    with use_backend(backend.name):
        xb, kb = unrolled_coarse_to_fine(m, y, coarsest=5, dtype=np.float64)
    assert np.abs(to_numpy(kb) - kr).max() < 1e-8 and np.abs(to_numpy(xb) - xr).max() < 1e-7
