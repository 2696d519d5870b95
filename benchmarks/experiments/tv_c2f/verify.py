"""Check emu_forward == UnrolledModel.forward (fast path) for an identity cascade."""
from emu import *
from hqsdeblur.evaluate import load_dataset
it = next(iter(load_dataset(str(DATA), "levin", limit=1)))
y = it.blurred
for C in (2, 16):
    cfg, params = schedule(C=C, iterations=2, inner=5, kbias=1.0, rho=1.0)
    m_ref = U.UnrolledModel(cfg, params, {})
    m_emu = U.UnrolledModel(cfg, params, {"emu": {}})
    _, k1 = m_ref.forward(y)
    _, k2 = m_emu.forward(y)
    print(C, cfg.layers, np.abs(k1 - k2).max(), k1.max())
