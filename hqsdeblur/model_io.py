"""Model files: our ``.npz`` format (arrays + a JSON metadata entry with a
checksum) and the published DUBLID parameter archive.

Our format: one ``.npz`` holding every parameter array under its name plus
``__meta__``, a 0-d unicode array with JSON::

    {"format": "hqsdeblur-unrolled", "format_version": 1,
     "config": {...UnrolledConfig...},
     "shapes": {"w0": [16, 1, 3, 3], ...},
     "sha256": "<hash of the arrays, in name order, as little-endian float64>",
     "training": {...}, "metrics": {...}}

Loading never unpickles (``allow_pickle=False``), and checks the format
version, the array names, their shapes and the checksum; every failure is a
:class:`~hqsdeblur.errors.ModelError` with one sentence naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile

import numpy as np

from .errors import ModelError
from .unrolled import UnrolledConfig, UnrolledModel, param_shapes

__all__ = ["load_model", "save_model", "FORMAT", "FORMAT_VERSION", "checksum"]

FORMAT = "hqsdeblur-unrolled"
FORMAT_VERSION = 1
_PUBLISHED_SCALES = dict(prox_scale=10.0, kernel_bias_scale=0.01, temperature=100.0, eps=1e-8, fft_multiple=64)


def checksum(params: dict) -> str:
    """SHA-256 of the parameter arrays (name order, float64 little-endian)."""
    h = hashlib.sha256()
    for name in sorted(params):
        a = np.ascontiguousarray(np.asarray(params[name], dtype="<f8"))
        h.update(name.encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save_model(path, model: UnrolledModel, *, overwrite=False, training=None, metrics=None):
    """Write `model` to `path` (``.npz``) atomically.

    Examples
    --------
    >>> import tempfile, os
    >>> from hqsdeblur.unrolled import UnrolledConfig, UnrolledModel, init_params
    >>> cfg = UnrolledConfig(channels=2, layers=2, kernel_size=9)
    >>> d = tempfile.mkdtemp(); f = os.path.join(d, "m.npz")
    >>> save_model(f, UnrolledModel(cfg, init_params(cfg)))
    >>> load_model(f).config.channels
    2
    """
    from .io import atomic_path

    meta = dict(model.meta)
    if training is not None:
        meta["training"] = training
    if metrics is not None:
        meta["metrics"] = metrics
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "shapes": {k: list(v.shape) for k, v in model.params.items()},
        "sha256": checksum(model.params),
        **{k: v for k, v in meta.items() if k not in ("format", "format_version", "config", "shapes", "sha256")},
    }
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in model.params.items()}
    arrays["__meta__"] = np.array(json.dumps(header))
    with atomic_path(os.fspath(path), overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def _fail(path, msg):
    raise ModelError(f"{path}: {msg}")


def load_model(path) -> UnrolledModel:
    """Load a model file: our format or the published DUBLID archive.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npz`` file.

    Raises
    ------
    ModelError
        Not a readable ``.npz``; missing, extra or wrongly shaped arrays; a
        header that does not match; a checksum that does not match.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        _fail(path, "model file not found")
    if os.path.isdir(path):
        _fail(path, "is a directory, not a model file")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        _fail(path, f"not a readable .npz model file ({type(exc).__name__}: {exc})")
    if "__meta__" in arrays:
        return _load_ours(path, arrays)
    if "weight_00" in arrays:
        return _load_published(path, arrays)
    _fail(path, "not a model file: neither an hqsdeblur header (__meta__) nor the published DUBLID arrays (weight_00 ...)")


def _load_ours(path, arrays):
    try:
        header = json.loads(str(arrays.pop("__meta__")[()]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        _fail(path, f"its JSON header cannot be read ({exc})")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        _fail(path, f"its header does not name the format {FORMAT!r}")
    if header.get("format_version") != FORMAT_VERSION:
        _fail(path, f"format version {header.get('format_version')!r} is not supported (this hqsdeblur reads version {FORMAT_VERSION})")
    try:
        cfg = UnrolledConfig(**header["config"])
    except (KeyError, TypeError) as exc:
        _fail(path, f"its configuration is invalid ({exc})")
    expected = param_shapes(cfg)
    _check_arrays(path, arrays, expected)
    if header.get("shapes") != {k: list(v) for k, v in expected.items()}:
        _fail(path, "the shapes in its header do not match its configuration")
    if header.get("sha256") != checksum(arrays):
        _fail(path, "checksum mismatch: the arrays are corrupt or were changed after saving")
    meta = {k: v for k, v in header.items() if k not in ("format", "format_version", "config", "shapes", "sha256")}
    meta["source"] = path
    return UnrolledModel(cfg, arrays, meta)


def _check_arrays(path, arrays, expected):
    missing = sorted(set(expected) - set(arrays))
    extra = sorted(set(arrays) - set(expected))
    if missing:
        _fail(path, f"missing arrays: {', '.join(missing)}")
    if extra:
        _fail(path, f"unexpected arrays: {', '.join(extra)}")
    for k, shape in expected.items():
        a = arrays[k]
        if tuple(a.shape) != tuple(shape):
            _fail(path, f"array {k!r} has shape {tuple(a.shape)}, expected {tuple(shape)}")
        if a.dtype.kind != "f":
            _fail(path, f"array {k!r} has dtype {a.dtype}, expected floating point")
        if not np.all(np.isfinite(a)):
            _fail(path, f"array {k!r} contains non-finite values")


def _load_published(path, a):
    """The published archive (reference README section 4)."""
    try:
        w0 = a["weight_00"]
        C, Cin, K, _ = w0.shape
        L = sum(1 for k in a if k.startswith("weight_"))
        p = {"w0": w0}
        for l in range(1, L):
            p[f"w{l}"] = a[f"weight_{l:02d}"]
        p["bias"] = np.stack([a[f"bias_{i:02d}"].reshape(-1) for i in range(L + 2)])
        p["kernel_bias"] = np.array([a[f"kernel_bias_{i:02d}"].reshape(-1)[0] for i in range(L)])
        p["kernel_prox"] = np.array([a[f"kernel_prox_{i:02d}"].reshape(-1)[0] for i in range(L)])
        p["zeta"] = np.stack([a[f"zeta_{i:02d}"].reshape(-1) for i in range(L)])
        p["eta"] = a["eta"].reshape(-1)
    except (KeyError, ValueError, IndexError) as exc:
        _fail(path, f"looks like the published DUBLID archive but an array is missing or malformed ({exc})")
    names = {f"weight_{l:02d}" for l in range(L)} | {f"bias_{i:02d}" for i in range(L + 2)}
    names |= {f"kernel_bias_{i:02d}" for i in range(L)} | {f"kernel_prox_{i:02d}" for i in range(L)}
    names |= {f"zeta_{i:02d}" for i in range(L)} | {"eta"}
    extra = sorted(set(a) - names)
    if extra:
        _fail(path, f"unexpected arrays for the published layout: {', '.join(extra)}")
    cfg = UnrolledConfig(channels=C, layers=L, filter_size=K, kernel_size=45, image_channels=Cin, **_PUBLISHED_SCALES)
    _check_arrays(path, p, param_shapes(cfg))
    return UnrolledModel(cfg, p, {"source": path, "published": True, "name": os.path.basename(path)})
