"""Training-cost benchmark of the unrolled network on this machine.

For candidate configurations (channels, layers, kernel window, patch size)
it times one forward pass and one forward + backward pass per patch (float32,
fast mode), reports their ratio and the estimated seconds per optimiser step
for a batch, then times a few real training steps (data, loss, Adam) of the
main configuration and checks the float32 gradient against float64 on one
batch.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py [--threads 1] [--batch 8] [--json out.json]
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from hqsdeblur.data import PairSampler, make_batch, list_images, split_images, DEFAULT_TRAIN_IMAGES
from hqsdeblur.optim import Adam, clip_grad_norm
from hqsdeblur.train import _limit_fft_workers, batch_loss_and_grads, gradient_precision, make_model

CONFIGS = [  # (channels, layers, kernel_size, patch)
    (16, 10, 45, 128),
    (16, 10, 45, 96),
    (16, 10, 45, 64),
    (16, 10, 31, 64),
    (8, 6, 31, 64),
]


def _time(fn, repeat):
    fn()  # warm-up (FFT plans, caches)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench_config(C, L, K, P, *, repeat=3):
    model = make_model(channels=C, layers=L, kernel_size=K, init="tv")
    y = np.random.default_rng(0).random((P, P)).astype(np.float32)

    def fwd():
        model.forward(y, dtype=np.float32)

    def fwd_bwd():
        x, k, tape = model.forward(y, tape=True, dtype=np.float32)
        model.backward(tape, np.ones_like(x), np.ones_like(k))

    tf, tfb = _time(fwd, repeat), _time(fwd_bwd, repeat)
    return {"channels": C, "layers": L, "kernel_size": K, "patch": P, "forward_s": tf,
            "forward_backward_s": tfb, "ratio": tfb / tf}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="real training steps timed (main config)")
    p.add_argument("--main", default="16,10,45,96", help="C,L,K,P of the main configuration")
    p.add_argument("--images", default=str(DEFAULT_TRAIN_IMAGES))
    p.add_argument("--json")
    a = p.parse_args(argv)
    _limit_fft_workers(a.threads)
    res = {"threads": a.threads, "cpu_count": os.cpu_count(), "batch": a.batch, "configs": []}
    for cfg in CONFIGS:
        r = bench_config(*cfg, repeat=a.repeat)
        r["est_s_per_step"] = a.batch * r["forward_backward_s"]
        res["configs"].append(r)
        print(f"C={r['channels']:2d} L={r['layers']:2d} K={r['kernel_size']} P={r['patch']:3d}: "
              f"forward {r['forward_s']:.3f} s, forward+backward {r['forward_backward_s']:.3f} s "
              f"(x{r['ratio']:.2f}), ~{r['est_s_per_step']:.2f} s/step at batch {a.batch}", flush=True)

    C, L, K, P = (int(v) for v in a.main.split(","))
    try:
        imgs = split_images(list_images(a.images))[0]
    except Exception:
        imgs = [np.random.default_rng(i).random((256, 256)) for i in range(4)]
    sampler = PairSampler(imgs, patch_size=P, kernel_size=K, kernel_mode="mixed")
    model = make_model(channels=C, layers=L, kernel_size=K, init="xavier")
    opt = Adam(model.params, lr=1e-4)
    times = []
    for s in range(a.steps):
        t0 = time.perf_counter()
        b = make_batch(sampler, a.batch, seed=0, step=s)
        _, g = batch_loss_and_grads(model, b, kappa=100.0, kernel_shift=3)
        g, _ = clip_grad_norm(g, 1.0)
        opt.step(model.params, g)
        model._cache = {}
        times.append(time.perf_counter() - t0)
    res["main"] = {"config": [C, L, K, P], "s_per_step": statistics.median(times), "steps_timed": a.steps}
    print(f"real training step (C={C} L={L} K={K} P={P}, batch {a.batch}): "
          f"{res['main']['s_per_step']:.2f} s/step", flush=True)
    prec = gradient_precision(model, make_batch(sampler, 2, seed=1, step=0), kappa=100.0, kernel_shift=3)
    res["float32_vs_float64"] = prec
    print(f"float32 vs float64 gradient: relative error {prec['rel_error']:.2e}, cosine {prec['cosine']:.8f}, "
          f"worst group {prec['worst_group']} ({prec['worst_rel_error']:.2e})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=1)
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
