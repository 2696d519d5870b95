"""Unrolled (emulated, identity cascade) TV-schedule models run coarse to fine."""
from emu import *
from hqsdeblur.coarse_to_fine import unrolled_coarse_to_fine
from hqsdeblur.tv import estimate_kernel
CL = dict(threshold=0.05, min_component=0.02, constraint="clip")
cfgs = {
 "u_base": (dict(), {}),
 "u_kb1": (dict(kbias=1.0), {}),
 "u_kb2": (dict(kbias=2.0), {}),
 "u_kb4": (dict(kbias=4.0), {}),
 "u_kb8": (dict(kbias=8.0), {}),
 "u_joint_kb2": (dict(kbias=2.0), {"shrink": "joint"}),
 "u_clean": (dict(rho=0.5), {"kclean": CL}),
 "u_clean_ridge": (dict(), {"kclean": CL, "ridge": True}),
 "u_clean_ridge_joint": (dict(), {"kclean": CL, "ridge": True, "shrink": "joint"}),
 "u_clean_ridge_restart": (dict(), {"kclean": CL, "ridge": True, "restart": True}),
 "u_clean_ridge_joint_restart": (dict(), {"kclean": CL, "ridge": True, "shrink": "joint", "restart": True}),
 "u_kb2_restart": (dict(kbias=2.0), {"restart": True}),
 "u_kb2_joint_restart": (dict(kbias=2.0), {"restart": True, "shrink": "joint"}),
}
limit = int(os.environ.get("LIMIT", 8))
for k_ in list(cfgs):
    cfgs[k_ + "_tvgrid"] = (cfgs[k_][0], {**cfgs[k_][1], "tvgrid": True})
for k_ in [k_ for k_ in cfgs if not k_.endswith("tvgrid")]:
    for b_ in (2, 3):
        cfgs[k_ + f"_band{b_}"] = (cfgs[k_][0], {**cfgs[k_][1], "band": b_})
for name in sys.argv[1:]:
    if name.startswith("classic45"):
        run(name, lambda y: (None, estimate_kernel(y, 45, prior="tv", iterations=10, latent="gradient", lam=1e-2, coarsest=15)), limit=limit)
        continue
    sk, opt = cfgs[name]
    cfg, params = schedule(**sk)
    m = U.UnrolledModel(cfg, params, {"emu": opt})
    run(f"{name} L={cfg.layers}/level", lambda y: unrolled_coarse_to_fine(m, y, kernel_size=45, dtype=np.float64), limit=limit)
