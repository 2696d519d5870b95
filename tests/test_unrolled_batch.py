"""The stacked fast forward against the single-image fast forward."""

import numpy as np
import pytest
from scipy.ndimage import convolve, gaussian_filter

from hqsdeblur.backend import to_numpy, use_backend
from hqsdeblur.train import make_model
from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params
from hqsdeblur.unrolled_batch import forward_batch


def _stack(n=3, shape=(70, 86), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = (gaussian_filter(rng.random(shape), 2) > 0.5).astype(float)
        k = np.zeros((7, 7))
        k[3, : 3 + i] = 1  # off-centre kernels: the re-centring shifts differ per image
        out.append(convolve(x, k / k.sum(), mode="wrap"))
    return np.stack(out)


@pytest.fixture(scope="module", params=["published", "hqs"])
def model(request):
    if request.param == "published":
        return make_model(channels=4, layers=3, kernel_size=15, init="xavier", seed=3)
    # identity cascade, kernel steps on some layers, cleaning rule, ridge prior
    cfg = UnrolledConfig(channels=2, layers=4, kernel_size=15, cascade="identity", kernel_layers=(1, 3),
                         kernel_rule="clean", kernel_prior="ridge")
    p = init_params(cfg, init="tv")
    p["kernel_prox"][:] = 0.5
    return UnrolledModel(cfg, p)


@pytest.mark.parametrize("border", ["smooth", "wrap"])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_matches_single_image_path(backend, model, dtype, tol, border):
    ys = _stack().astype(dtype)
    with use_backend(backend.name):
        xb, kb = forward_batch(model, backend.xp.asarray(ys), max_batch=2, border=border)  # two chunks
    xb, kb = to_numpy(xb), to_numpy(kb)
    assert xb.dtype == dtype and xb.shape == ys.shape and kb.shape == (3, 15, 15)
    for i in range(len(ys)):
        x, k = model.forward(ys[i], backend="numpy", border=border)
        assert np.abs(xb[i] - x).max() < tol * 10
        assert np.abs(kb[i] - k).max() < tol
    assert np.allclose(kb.sum(axis=(1, 2)), 1, atol=1e-5) and kb.min() >= 0


def test_initial_kernels(model):
    ys = _stack(2)
    rng = np.random.default_rng(1)
    k0 = rng.random((2, 15, 15))
    k0 /= k0.sum(axis=(1, 2), keepdims=True)
    xb, kb = forward_batch(model, ys, k0=k0)
    for i in range(2):
        x, k = model.forward(ys[i], backend="numpy", k0=k0[i])
        assert np.abs(xb[i] - x).max() < 1e-11 and np.abs(kb[i] - k).max() < 1e-12
    with pytest.raises(ValueError):
        forward_batch(model, ys, k0=k0[:1])


def test_refuses_image_latent_models():
    from hqsdeblur.schedule import hqs_schedule

    with pytest.raises(ValueError, match="latent"):
        forward_batch(hqs_schedule(kernel_size=9, latent="image", iterations=2), _stack(1))


def test_refuses_wrong_shapes(model):
    with pytest.raises(ValueError):
        forward_batch(model, np.zeros((40, 40)))


def test_deblur_coarse_to_fine_on_every_backend(backend, model):
    # deblur(method='unrolled') runs its pyramid on the chosen backend's
    # device and gives the NumPy result
    from hqsdeblur import deblur

    y = _stack(1, shape=(60, 70))[0].astype(np.float32)
    x0, k0 = deblur(y, method="unrolled", model=model, coarsest=5, backend="numpy")
    x1, k1 = deblur(y, method="unrolled", model=model, coarsest=5, backend=backend.name)
    assert isinstance(x1, np.ndarray) and x1.shape == y.shape
    assert np.abs(k1 - k0).max() < 1e-5 and np.abs(x1 - x0).max() < 1e-4
