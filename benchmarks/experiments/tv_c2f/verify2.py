"""emu_forward(tvgrid) == real UnrolledModel.forward with border_patch (L=10 and a full recipe level at w=11)."""
from emu import *
import border_patch
from hqsdeblur.evaluate import load_dataset
it = next(iter(load_dataset(str(DATA), "levin", limit=1)))
y = it.blurred
cases = [dict(C=2, iterations=2, inner=5, kbias=2.0), dict(C=2, kbias=2.0, ks=11)]
res = []
for sk in cases:
    cfg, params = schedule(**sk)
    ys = y if sk.get("ks", 45) == 45 else y[::4, ::4].copy()
    _, ke = U.UnrolledModel(cfg, params, {"emu": {"tvgrid": True}}).forward(ys)
    res.append((cfg.layers, ke))
border_patch.apply()
for (L, ke), sk in zip(res, cases):
    cfg, params = schedule(**sk)
    ys = y if sk.get("ks", 45) == 45 else y[::4, ::4].copy()
    _, kr = U.UnrolledModel(cfg, params, {}).forward(ys.astype(np.float64))
    print("L", L, "max|k_emu - k_real|", np.abs(ke - kr).max(), "kmax", kr.max())
