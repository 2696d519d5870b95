import os

import numpy as np
import pytest

from hqsdeblur.backend import BackendError, get_backend

BACKENDS = ["numpy", "cython", "numba", "cupy"]
SHARED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared")
SHARED = os.path.normpath(SHARED)


@pytest.fixture(params=BACKENDS)
def backend(request):
    try:
        return get_backend(request.param)
    except BackendError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def shared():
    if not os.path.isdir(SHARED):
        pytest.skip("../shared is absent")
    return SHARED


def fd_check(loss, x, grad, *, h=1e-6, seed=0, rtol=1e-6):
    """Central finite difference of `loss` at `x` along a random direction
    against the analytic gradient `grad` (float64)."""
    rng = np.random.default_rng(seed)
    d = rng.standard_normal(np.shape(x))
    x = np.asarray(x, dtype=np.float64)
    num = (loss(x + h * d) - loss(x - h * d)) / (2 * h)
    ana = float(np.sum(np.asarray(grad) * d))
    err = abs(num - ana) / max(abs(num), abs(ana), 1e-12)
    assert err < rtol, f"finite difference {num!r} vs adjoint {ana!r}: relative error {err:.2e}"
    return err


def dot_test(A, AT, xshape, yshape, *, seed=0, xp=np, dtype=np.float64):
    """<A x, y> == <x, A^T y> to 1e-10 relative."""
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal(xshape).astype(dtype))
    y = xp.asarray(rng.standard_normal(yshape).astype(dtype))
    lhs = float(xp.sum(A(x) * y))
    rhs = float(xp.sum(x * AT(y)))
    assert abs(lhs - rhs) <= 1e-10 * max(abs(lhs), abs(rhs)), (lhs, rhs)
