"""Lai et al.'s 75 px kernel: coarse-to-fine variants of the shipped schedule
network, each scored by ISNR and by tv's selection statistic (gradient
sparsity of the non-blind result; kernel support).

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/experiments/lai75/lai75_variants.py MODEL VARIANTS NAMES

e.g. ``hqsdeblur/models/hqsdeblur_unrolled.npz base,tv2 natural_01_kernel_04``.
Variants: ``base`` (deblur's coarse to fine), ``carry``/``carry10`` (the
thresholds of pyramid level i scaled by 1.1^-5i / 1.1^-10i, floor 5e-4),
``double``/``half`` (all thresholds x2 / x0.5), ``tv2`` (tv's second
candidate: the first 5 outer iterations of each level, prior weight carried
across levels, floor 5e-4). Results: see README.md beside this file.
"""
import os, sys, json, time
import numpy as np
sys.path.insert(0, os.getcwd())
from hqsdeblur.model_io import load_model
from hqsdeblur.deblur import _resize, _window_prior
from hqsdeblur.coarse_to_fine import levels
from hqsdeblur.steps.kernel import center_of_mass_shift, shift_kernel
from hqsdeblur.tv import resize_kernel, noise_rules, gradient_sparsity, kernel_support
from hqsdeblur.nonblind import deconvolve
from hqsdeblur.unrolled import UnrolledModel
from hqsdeblur.evaluate import load_dataset
from hqsdeblur import metrics as M

model_path, variants, names = sys.argv[1], sys.argv[2].split(','), sys.argv[3].split(',')

import dataclasses
def truncate(model, n_iter):
    cfg = model.config
    kl = list(cfg.kernel_layers)[:n_iter]
    L = kl[-1] + 1
    p = model.params
    q = dict(p, bias=np.concatenate([p['bias'][:L], p['bias'][-2:]]), kernel_bias=p['kernel_bias'][:L],
             kernel_prox=p['kernel_prox'][:L], zeta=p['zeta'][:L])
    return UnrolledModel(dataclasses.replace(cfg, layers=L, kernel_layers=tuple(kl)), q, model.meta)

def iter_index(cfg):
    t = np.zeros(cfg.layers, int); prev = -1
    for i, k in enumerate(cfg.kernel_layers):
        t[prev + 1:k + 1] = i; prev = k
    return t

def c2f(model, y, ks, scale_of_level):
    lv = levels(ks, coarsest=5)
    k = None
    for i, (w, s) in enumerate(lv):
        f = scale_of_level(i, len(lv))
        if callable(f):
            m = f(model)
        else:
            m = model if f == 1 else UnrolledModel(model.config, {**model.params, 'bias': model.params['bias'] * f}, model.meta)
        m = m.with_window(w)
        ys = y if s == 1 else _resize(y, s)
        k0 = None
        if k is not None:
            k0 = resize_kernel(k, w); k0 = shift_kernel(k0, center_of_mass_shift(k0)).astype(np.float32)
        out = m.forward(np.asarray(ys, np.float32), k0=k0, border='wrap')
        k = np.asarray(out[1], np.float64)
    return k

VAR = {
  'base': lambda i, n: 1.0,
  'carry': lambda i, n: max(0.909 ** (5 * i), 5e-4 / 3.763e-3),
  'carry10': lambda i, n: max(0.909 ** (10 * i), 5e-4 / 3.763e-3),
  'half': lambda i, n: 0.5,
  'tv2': lambda i, n: (lambda model: carry_model(model, i)),
  'double': lambda i, n: 2.0,
}
LAM0 = 3.763e-3; DEC = 1 / 1.1
def carry_model(model, i):
    m = truncate(model, 5)
    t = iter_index(m.config)
    f = np.maximum(DEC ** (5 * i), 5e-4 / (LAM0 * DEC ** t))
    b = m.params['bias'].copy(); b[:m.config.layers] *= f[:, None]
    return UnrolledModel(m.config, {**m.params, 'bias': b}, m.meta)
base = load_model(model_path)
res = {}
for item in load_dataset(os.path.join(os.getcwd(), '..', 'shared', 'data'), 'lai2016'):
    if item.name not in names: continue
    y, x = item.blurred, item.sharp
    ks = 75
    model = _window_prior(base, ks)
    _, _, source, weight = noise_rules(y)
    blur = M.aligned_compare(y, x)['psnr']
    for v in variants:
        t = time.process_time()
        k = c2f(model, source, ks, VAR[v])
        im = deconvolve(y, k, weight=weight)
        sp = gradient_sparsity(im, border=ks // 2)
        isnr = M.aligned_compare(im, x)['psnr'] - blur
        print(f"{item.name} {v:8s} ISNR {isnr:+6.2f} sparsity {sp:.4f} support {kernel_support(k):.1f} cpu {time.process_time()-t:.0f}s", flush=True)
        res[f"{item.name}/{v}"] = dict(isnr=isnr, sparsity=sp, support=kernel_support(k))
print(json.dumps(res, indent=1))
