"""Shared helpers for the tvinit experiments (scratch)."""
import os, sys, time, json
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HQSDEBLUR_FFT_WORKERS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(_HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(_HERE, "..", ".."))
import numpy as np
from eval_all import DATA, C2F_KERNEL_SIZE  # reuse the harness constants
from hqsdeblur.evaluate import evaluate, summarize
from hqsdeblur.nonblind import deconvolve


def run(name, est, limit=8, nonblind=True, idx=None):
    """est(y) -> (x_net, k). Scores deconvolve(y, k) (or x_net)."""
    def meth(y):
        x, k = est(y)
        return (deconvolve(y, k) if nonblind else x), k
    c0 = time.process_time()
    rows, s = evaluate(meth, str(DATA), "levin", limit=limit, progress=False)
    cpu = time.process_time() - c0
    line = (f"{name}: n={s['count']} PSNR {s['mean_psnr_aligned_db']:.2f} ER<=3 {s['error_ratio_frac_le_3']:.0%} "
            f"ERmed {s['error_ratio_median']:.2f} cpu/img {cpu/len(rows):.1f}s | "
            + " ".join(f"{r['psnr']:.1f}" for r in rows))
    print(line, flush=True)
    with open(os.environ.get("RESULTS", "/tmp/tv_c2f_results.txt"), "a") as fh:
        fh.write(line + "\n")
    return rows, s
