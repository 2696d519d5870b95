"""Optimisation for the unrolled network, in plain NumPy.

Adam with its state as arrays (so a checkpoint restores it exactly),
gradient clipping by global norm, a learning-rate schedule (linear warm-up
then cosine or step decay) and the projection onto the parameter
constraints of DUBLID (thresholds and proximal weights are >= 0).

Parameters and gradients are dicts ``name -> ndarray`` with the keys of
:func:`hqsdeblur.unrolled.param_shapes`; filter weights are the keys
``w0``, ``w1``, ...
"""

from __future__ import annotations

import math

import numpy as np

from .errors import InputError

__all__ = [
    "CONSTRAINED",
    "is_filter",
    "Adam",
    "clip_grad_norm",
    "global_norm",
    "lr_at",
    "project",
]

#: Parameter groups that must stay >= 0 (soft thresholds, step weights).
CONSTRAINED = ("bias", "kernel_bias", "kernel_prox", "zeta", "eta")


def is_filter(name):
    """True for filter weights ``w0``, ``w1``, ... (weight decay applies)."""
    return name.startswith("w") and name[1:].isdigit()


def global_norm(grads):
    """Euclidean norm of all gradient arrays together.

    Example
    -------
    >>> global_norm({"a": np.array([3.0]), "b": np.array([4.0])})
    5.0
    """
    return float(math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values())))


def clip_grad_norm(grads, max_norm):
    """Scale all gradients together so their global norm is <= `max_norm`.

    Parameters
    ----------
    grads : dict of ndarray
    max_norm : float or None
        ``None`` or ``inf`` disables clipping.

    Returns
    -------
    clipped : dict of ndarray
        New arrays (the input is not modified).
    norm : float
        The global norm before clipping.

    Example
    -------
    >>> g, n = clip_grad_norm({"a": np.array([3.0, 4.0])}, 1.0)
    >>> n, g["a"].round(6).tolist()
    (5.0, [0.6, 0.8])
    """
    norm = global_norm(grads)
    if not np.isfinite(norm):
        raise FloatingPointError(f"gradient norm is {norm}")
    scale = 1.0
    if max_norm is not None and np.isfinite(max_norm) and norm > max_norm:
        scale = float(max_norm) / norm
    return {k: np.asarray(g, dtype=np.float64) * scale for k, g in grads.items()}, norm


def lr_at(step, *, base_lr, total_steps, warmup=0, schedule="cosine", min_lr=0.0,
          decay_every=None, gamma=0.5):
    """Learning rate of (0-based) `step`.

    Linear warm-up from ``base_lr / warmup`` to ``base_lr`` over the first
    `warmup` steps, then:

    * ``'cosine'``: half a cosine from ``base_lr`` down to `min_lr` at
      `total_steps`;
    * ``'step'``: multiply by `gamma` every `decay_every` steps (default a
      third of the run);
    * ``'constant'``.

    Example
    -------
    >>> [round(lr_at(s, base_lr=1.0, total_steps=10, warmup=2), 3) for s in (0, 1, 2, 9)]
    [0.5, 1.0, 1.0, 0.038]
    """
    step = int(step)
    if warmup and step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        span = max(1, int(total_steps) - int(warmup))
        t = min(1.0, (step - warmup) / span)
        return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))
    if schedule == "step":
        every = decay_every or max(1, int(total_steps) // 3)
        return max(min_lr, base_lr * gamma ** ((step - warmup) // every))
    raise InputError(f"unknown learning-rate schedule {schedule!r}; choose cosine, step or constant")


def project(params, *, min_value=0.0):
    """Clamp the constrained groups (:data:`CONSTRAINED`) to ``>= min_value``, in place.

    Example
    -------
    >>> p = {"bias": np.array([-1.0, 2.0]), "w0": np.array([-1.0])}
    >>> project(p)["bias"].tolist(), p["w0"].tolist()
    ([0.0, 2.0], [-1.0])
    """
    for name in CONSTRAINED:
        if name in params:
            np.maximum(params[name], min_value, out=params[name])
    return params


class Adam:
    """Adam (Kingma & Ba) on a dict of float64 arrays, updated in place.

    With ``weight_decay > 0``, ``weight_decay * w`` is added to the gradient
    of every filter weight (classical L2 regularisation of the filters, the
    term ``weight_decay / 2 * ||w||^2`` of the objective); the thresholds and
    step weights are not decayed.

    Parameters
    ----------
    params : dict of ndarray
        The parameters (their shapes size the state).
    lr : float
        Default learning rate (a per-step value can be passed to :meth:`step`).
    betas : (float, float)
    eps : float
    weight_decay : float
    constrain : bool
        Project onto the constraints (:func:`project`) after every step.
    log_scale : sequence of str
        Groups updated in log space (non-negative ones whose entries span
        orders of magnitude, e.g. the thresholds ``lam / beta`` of a
        continuation schedule, 1e-5 .. 1e-2): Adam runs on the gradient with
        respect to ``log p`` (``g * p``) and the step multiplies ``p`` by
        ``exp(-step)``, so every entry moves by a relative amount and keeps
        its sign; zeros stay zero.

    Example
    -------
    >>> p = {"w0": np.array([1.0])}
    >>> opt = Adam(p, lr=0.1)
    >>> opt.step(p, {"w0": np.array([2.0])})
    >>> p["w0"].round(6).tolist()   # first Adam step moves by lr * sign(g)
    [0.9]
    """

    def __init__(self, params, *, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 constrain=True, log_scale=()):
        self.lr = float(lr)
        self.beta1, self.beta2 = (float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.constrain = bool(constrain)
        self.log_scale = frozenset(log_scale)
        self.m = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        self.v = {k: np.zeros(np.shape(v)) for k, v in params.items()}
        self.t = 0

    def step(self, params, grads, *, lr=None):
        """One update of `params` (in place) from `grads`."""
        lr = self.lr if lr is None else float(lr)
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1 = 1.0 - b1 ** self.t
        c2 = 1.0 - b2 ** self.t
        for k, p in params.items():
            g = np.asarray(grads[k], dtype=np.float64)
            if self.weight_decay and is_filter(k):
                g = g + self.weight_decay * p
            log = k in self.log_scale
            if log:
                g = g * p  # d loss / d log p
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1.0 - b1) * g
            v *= b2
            v += (1.0 - b2) * g * g
            d = lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
            if log:
                p *= np.exp(-d)
            else:
                p -= d
        if self.constrain:
            project(params)

    def state_dict(self):
        """The state as a flat dict of arrays (``m/<name>``, ``v/<name>``, ``t``)."""
        out = {f"m/{k}": a.copy() for k, a in self.m.items()}
        out.update({f"v/{k}": a.copy() for k, a in self.v.items()})
        out["t"] = np.array(self.t, dtype=np.int64)
        out["hyper"] = np.array([self.lr, self.beta1, self.beta2, self.eps, self.weight_decay])
        return out

    def load_state_dict(self, state):
        """Restore a state written by :meth:`state_dict` (exactly)."""
        for k in self.m:
            for slot, store in (("m", self.m), ("v", self.v)):
                a = np.asarray(state[f"{slot}/{k}"], dtype=np.float64)
                if a.shape != store[k].shape:
                    raise InputError(f"optimiser state {slot}/{k} has shape {a.shape}, expected {store[k].shape}")
                store[k] = a.copy()
        self.t = int(state["t"])
