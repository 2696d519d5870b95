"""The unrolled DUBLID network: the HQS iteration with learned per-layer
filters, thresholds and step weights, its forward pass and its backward pass.

The forward pass follows the published network exactly when ``exact=True``
(reference spec section 5: reflect-padded cascade of 3x3 filters, features
consumed in reverse order, zero-padded observation, FFT grid rounded to
multiples of 64, soft-maximum kernel threshold). The default fast mode
computes the same iteration with the cascade composed into effective filters
applied in the Fourier domain, smooth FFT sizes, a smooth periodic border
(no dark ringing frame) and a re-centred kernel (output aligned with the
input).

Parameters (a dict of arrays, the "parameter groups"):

==============  ==============  ==========================================
name            shape           role
==============  ==============  ==========================================
``w0``          (C, Cin, 3, 3)  first filter layer (mean removed in use)
``w1..w{L-1}``  (C, C, 3, 3)    filter layers 1..L-1
``bias``        (L + 2, C)      z-thresholds: init, one per layer, final
``kernel_bias`` (L,)            kernel threshold fractions (x 0.01)
``kernel_prox`` (L,)            kernel proximal weights rho_t
``zeta``        (L, C)          feature-update weights (x 10)
``eta``         (C,)            reconstruction weights (x 10)
==============  ==============  ==========================================
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _fftw
from .backend import backend_for, blas_single_thread, get_backend, to_numpy, use_backend
from .steps import border as border_ext
from .steps import features, filters, fourier, kernel, reconstruct, shrink
from .validate import LUMA  # rgb2gray weights

__all__ = ["UnrolledConfig", "UnrolledModel", "init_params", "param_shapes", "reconstruct_channels"]


@dataclasses.dataclass(frozen=True)
class UnrolledConfig:
    """Architecture of an unrolled network.

    Attributes
    ----------
    channels : int
        Feature channels C.
    layers : int
        Unrolled iterations L (= filter layers).
    filter_size : int
        Spatial size of every filter (3).
    kernel_size : int
        Kernel window (odd).
    image_channels : int
        1 (gray) or 3 (colour).
    cascade : {'learned', 'identity'}
        'learned' (published): layer l's features come from the cascade of
        filters ``w0 .. w_{L-1-l}``. 'identity': the layers after the first
        are the identity, so every layer uses the ``w0`` features (one
        spectrum, no composition, no ``w1..`` parameters) - the classical
        HQS, where the filters are fixed and only the schedule varies, and
        cheap enough for hundreds of layers.
    kernel_layers : tuple of int, optional
        Layers that end with a kernel step (default: all). The others keep
        the kernel, as the classical mode's inner (latent-only) iterations.
    kernel_rule : {'softmax', 'clean'}
        Kernel constraint: the published soft-maximum threshold
        (``kernel_bias``) or the classical cleaning
        (:func:`hqsdeblur.steps.kernel.clean_normalize`, with
        `clean_threshold` and `clean_min_component`).
    kernel_prior : {'prox', 'ridge'}
        Kernel least squares pulled towards the previous kernel (published)
        or towards 0 (ridge, the classical mode's).
    latent : {'features', 'image'}
        What a layer updates: each feature channel on its own (published),
        or one latent image from all channels at once (Xu et al. 2013,
        ``tv``'s default): ``X = (conj(K) Y + sum_c b_c conj(W_c) Z_c) /
        (|K|^2 + sum_c b_c |W_c|^2)`` with ``b_c = 1 / (prox_scale zeta_c)``,
        then the features ``W_c X``; the kernel step fits those (before the
        shrinkage). Gray, not `exact`.
    shrink : {'soft', 'l0'}
        Soft threshold per channel, or (image latent only) the L0 step:
        keep a pixel's features where ``sum_c g_c^2`` exceeds the mean
        threshold of the layer (piecewise constant: no threshold gradient).
    restart : bool
        (image latent) the layer after each kernel step starts again from
        the observation's features, as each outer iteration of ``tv`` does.
    """

    channels: int = 16
    layers: int = 10
    filter_size: int = 3
    kernel_size: int = 45
    image_channels: int = 1
    prox_scale: float = 10.0
    kernel_bias_scale: float = 0.01
    temperature: float = 100.0
    eps: float = 1e-8
    fft_multiple: int = 64
    cascade: str = "learned"
    kernel_layers: tuple | None = None
    kernel_rule: str = "softmax"
    kernel_prior: str = "prox"
    clean_threshold: float = 0.05
    clean_min_component: float = 0.02
    latent: str = "features"
    shrink: str = "soft"
    restart: bool = False

    def __post_init__(self):
        for name, allowed in (("cascade", ("learned", "identity")), ("kernel_rule", ("softmax", "clean")),
                              ("kernel_prior", ("prox", "ridge")), ("latent", ("features", "image")),
                              ("shrink", ("soft", "l0"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.latent == "features" and (self.shrink != "soft" or self.restart):
            raise ValueError("shrink='l0' and restart need latent='image'")
        if self.kernel_layers is not None:
            kl = tuple(sorted({int(t) for t in self.kernel_layers}))
            if kl and not (0 <= kl[0] and kl[-1] < self.layers):
                raise ValueError(f"kernel_layers must lie in 0..{self.layers - 1}")
            object.__setattr__(self, "kernel_layers", kl)  # JSON gives a list

    def to_dict(self):
        d = dataclasses.asdict(self)
        if d["kernel_layers"] is not None:
            d["kernel_layers"] = list(d["kernel_layers"])
        return d

    def kernel_step(self, t):
        """Whether layer `t` ends with a kernel step."""
        return self.kernel_layers is None or t in self.kernel_layers

    def feature_index(self, t):
        """Which effective filter layer `t` reads: the published network
        consumes the cascade outputs in reverse order; an identity cascade
        has one."""
        return 0 if self.cascade == "identity" else self.layers - 1 - t

    @property
    def n_filter_layers(self):
        return 1 if self.cascade == "identity" else self.layers


def param_shapes(cfg: UnrolledConfig) -> dict:
    """Shape of every parameter array of a configuration."""
    C, L, K = cfg.channels, cfg.layers, cfg.filter_size
    shapes = {"w0": (C, cfg.image_channels, K, K)}
    for l in range(1, cfg.n_filter_layers):
        shapes[f"w{l}"] = (C, C, K, K)
    shapes.update(bias=(L + 2, C), kernel_bias=(L,), kernel_prox=(L,), zeta=(L, C), eta=(C,))
    return shapes


def init_params(cfg: UnrolledConfig, *, seed=0, init="xavier", dtype=np.float64) -> dict:
    """Initial parameters: Xavier-normal filters (``init='xavier'``) or the
    classical TV start (``init='tv'``: derivative filters in the first
    layer, identity-like cascade, a decreasing continuation schedule).

    The non-filter initial values are the published ones (bias 0.02,
    zeta 1, eta 1, kernel_prox 1, kernel_bias 0).
    """
    rng = np.random.default_rng(seed)
    C, L, K = cfg.channels, cfg.layers, cfg.filter_size
    p = {}
    for name, shape in param_shapes(cfg).items():
        if name.startswith("w"):
            fan_in = shape[1] * K * K
            fan_out = shape[0] * K * K
            p[name] = rng.standard_normal(shape) * np.sqrt(2.0 / (fan_in + fan_out))
    p["bias"] = np.full((L + 2, C), 0.02)
    p["kernel_bias"] = np.zeros(L)
    p["kernel_prox"] = np.ones(L)
    p["zeta"] = np.ones((L, C))
    p["eta"] = np.ones(C)
    if init == "tv":
        # Derivative filters (and their rotations) in layer 0, the identity
        # (plus a little noise, so channels can specialise) afterwards;
        # thresholds decreasing and zeta increasing over the layers, as the
        # classical continuation does.
        d = np.zeros((C, cfg.image_channels, K, K))
        c = K // 2
        for i in range(C):
            angle = np.pi * i / C
            dy, dx = np.sin(angle), np.cos(angle)
            d[i, :, c, c] = -1.0
            # bilinear split of the +1 tap along the direction
            d[i, :, c, c + 1] += max(dx, 0)
            d[i, :, c, c - 1] += max(-dx, 0)
            d[i, :, c + 1, c] += abs(dy) * (1 - abs(dx))
        p["w0"] = d / cfg.image_channels
        for l in range(1, cfg.n_filter_layers):
            eye = np.zeros((C, C, K, K))
            eye[np.arange(C), np.arange(C), c, c] = 1.0
            p[f"w{l}"] = eye + 0.01 * rng.standard_normal((C, C, K, K))
        p["bias"] = np.geomspace(0.05, 0.005, L + 2)[:, None] * np.ones((1, C))
        p["zeta"] = np.geomspace(0.1, 10.0, L)[:, None] * np.ones((1, C))
    return {k: np.asarray(v, dtype=dtype) for k, v in p.items()}


class _Tape:
    """What the backward pass needs from the forward pass."""

    def __init__(self):
        self.layers = []
        self.outs = None  # spatial cascade outputs (exact / zero-border path only)


class UnrolledModel:
    """An unrolled network: configuration + parameters (+ metadata).

    Parameters
    ----------
    config : UnrolledConfig
    params : dict of ndarray
        See the module docstring.
    meta : dict, optional
        Free-form metadata (training data, steps, metrics ...).

    Examples
    --------
    >>> import numpy as np
    >>> cfg = UnrolledConfig(channels=4, layers=2, kernel_size=9)
    >>> model = UnrolledModel(cfg, init_params(cfg))
    >>> x, k = model.forward(np.random.default_rng(0).random((32, 40)))
    >>> x.shape, k.shape, round(float(k.sum()), 6)
    ((32, 40), (9, 9), 1.0)
    """

    def __init__(self, config: UnrolledConfig, params: dict, meta: dict | None = None):
        self.config = config
        shapes = param_shapes(config)
        missing = set(shapes) - set(params)
        if missing:
            raise ValueError(f"missing parameters: {sorted(missing)}")
        self.params = {k: np.asarray(params[k]) for k in shapes}
        self.meta = dict(meta or {})
        self._cache = {}

    # ------------------------------------------------------------------ utils
    def _p(self, xp, dtype):
        key = (xp.__name__, np.dtype(dtype).str)
        if key not in self._cache:
            # one copy of the parameters at a time (device, dtype); derived
            # entries (spectra, per-level models) are keyed by dtype themselves
            for k_ in [k_ for k_ in self._cache if isinstance(k_, tuple) and len(k_) == 2]:
                del self._cache[k_]
            self._cache[key] = {k: xp.asarray(v, dtype=dtype) for k, v in self.params.items()}
        return self._cache[key]

    def with_window(self, kernel_size):
        """The same parameters with another kernel window (the window is not
        a learned shape), cached on this model: its filter spectra are kept
        between calls, as coarse-to-fine runs use one model per level."""
        if kernel_size == self.config.kernel_size:
            return self
        models = self._cache.setdefault("windows", {})
        if kernel_size not in models:
            models[kernel_size] = UnrolledModel(dataclasses.replace(self.config, kernel_size=kernel_size),
                                                self.params, self.meta)
        return models[kernel_size]

    def filters(self, xp, dtype):
        """The effective first layer A0 (mean removed) and the cascade weights."""
        p = self._p(xp, dtype)
        A0 = p["w0"] - p["w0"].mean(axis=(-2, -1), keepdims=True)
        ws = [filters.flip(A0)] + [p[f"w{l}"] for l in range(1, self.config.n_filter_layers)]
        return A0, ws

    # --------------------------------------------------------------- forward
    @blas_single_thread
    def forward(self, y, *, exact=False, border=None, recenter=None, dtype=None, tape=False, backend=None, return_state=False, k0=None):
        """Deblur one gray image (or a colour image for a colour model).

        Parameters
        ----------
        y : (H, W) or (Cin, H, W) array
            Observation in [0, 1] (a NumPy or CuPy array).
        exact : bool
            Reproduce the published network exactly (reflect-padded cascade,
            zero-padded observation, 64-multiple FFT grid, no re-centring).
        border : {'zero', 'smooth', 'wrap'}, optional
            How the observation is extended to the FFT grid (see
            :data:`BORDERS`). Default 'zero' when exact else 'smooth'.
        recenter : bool, optional
            Move the kernel's centre of mass to the window centre before the
            reconstruction, so the output is aligned with the input. Default
            ``not exact``.
        dtype : numpy dtype, optional
            float32 (default for float32 input) or float64.
        tape : bool
            Also return what :meth:`backward` needs.
        return_state : bool
            Also return the small final state (feature spectra, kernel and
            filter transfer functions) that :func:`reconstruct_channels`
            needs to reconstruct other images (e.g. colour channels) with the
            same kernel and features.
        k0 : (kernel_size, kernel_size) array, optional
            Initial kernel (default the delta), e.g. the upsampled estimate
            of a coarser scale; non-negative, summing to 1. Treated as data:
            :meth:`backward` returns no gradient for it.

        Returns
        -------
        x : array like y
            The deblurred image (not clipped).
        k : (kernel_size, kernel_size) array
            The kernel, non-negative, summing to 1.
        tape : object, only when ``tape=True``.
        """
        if backend is not None:
            with use_backend(backend):
                return self.forward(y, exact=exact, border=border, recenter=recenter, dtype=dtype, tape=tape, return_state=return_state, k0=k0)
        be = backend_for(y)
        xp = be.xp
        cfg = self.config
        if dtype is None:
            dtype = y.dtype if y.dtype in (np.float32, np.float64) else np.float64
        y = xp.asarray(y, dtype=dtype)
        gray_in = y.ndim == 2
        if gray_in:
            y = y[None]
        if border is None:
            border = "zero" if exact else "smooth"
        if recenter is None:
            recenter = not exact
        Hv, Wv = y.shape[-2:]
        Hk = Wk = cfg.kernel_size
        h = Hk // 2
        pad = Hk - 1
        if border not in BORDERS:
            raise ValueError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")
        if exact or border == "zero":
            S = fourier.fft_shape((Hv, Wv), pad=pad, multiple=cfg.fft_multiple if exact else None)
        else:
            S = border_grid((Hv, Wv), pad, border)
        imgl = cfg.latent == "image"
        if imgl and (exact or not gray_in or border == "zero"):
            raise ValueError("latent='image' runs on gray images with the 'smooth' or 'wrap' border, not exact")
        if _FAST_PATH and not (exact or tape or border == "zero" or imgl) and gray_in and cfg.image_channels == 1:
            if xp is np:
                return self._forward_fast(y[0], S, dtype, be, return_state=return_state, k0=k0, border=border)
            if not return_state:
                # on a GPU the stacked form is the fast path (few, large launches)
                from .unrolled_batch import forward_batch

                x, k = forward_batch(self, y, dtype=dtype, k0=k0, border=border)
                return x[0], k[0]
        p = self._p(xp, dtype)
        A0, ws = self.filters(xp, dtype)
        L, C = cfg.layers, cfg.channels

        # The observation on the FFT grid, content at (pad, pad).
        ygrid = extend(y, S, pad, border)

        # Features of every layer, as spectra on the grid.
        T = _Tape() if tape else None
        if exact or border == "zero":
            outs = filters.cascade(y, ws)
            Yspec = [fourier.rfft2_stack(fourier.embed(F, S, (pad, pad))) for F in outs]
            if T is not None:
                T.outs = outs
        else:
            # Composed effective filters, applied to the periodic grid image in
            # the Fourier domain: one product per layer, no FFT.
            outs = None
            eff = filters.compose_cascade(ws)
            Yg = be.rfft2(ygrid)
            Yspec = []
            for l, e in enumerate(eff):
                r = e.shape[-1] // 2
                E = fourier.psf2otf(filters.flip(e), S, centre=(r, r))  # correlation = conv with flipped
                if E.shape[1] == 1:  # gray: one product, in place
                    E = E[:, 0]
                    E *= Yg[0]
                    Yspec.append(E)
                else:
                    Yspec.append((E * Yg[None]).sum(axis=1))
            if T is not None:
                T.eff, T.Yg = eff, Yg

        k = _initial_kernel(k0, Hk, xp, dtype)
        u0 = fourier.roll(fourier.irfft2_stack(Yspec[-1], S), (-h, -h))
        z = _shrink(cfg, u0, p["bias"][0])
        Z = fourier.rfft2_stack(z)
        if T is not None:
            T.u0 = u0
        W = fourier.psf2otf(A0, S, centre=(cfg.filter_size // 2,) * 2)  # (C, Cin, F1, F2)
        if imgl:
            Wl, Yg0 = W[:, 0], Yg[0]  # the latent layers' filters: those of the reconstruction
            if T is not None:
                T.Wl = Wl
        G = g = None
        for t in range(L):
            Y = Yspec[cfg.feature_index(t)]
            K = fourier.psf2otf(k, S, centre=(0, 0))
            zeta = cfg.prox_scale * p["zeta"][t]
            restart = imgl and cfg.restart and t > 0 and cfg.kernel_step(t - 1)
            if restart:  # the latent starts again from the observation
                Z = fourier.rfft2_stack(_shrink(cfg, u0, p["bias"][t]))
            Zprev = Z
            X = beta = None
            if imgl:
                beta = 1.0 / zeta
                X = reconstruct.reconstruct(Yg0, K, Wl, Zprev, beta)
                G = Wl * X[None]
                g = fourier.irfft2_stack(G, S)
                Z = fourier.rfft2_stack(_shrink(cfg, g, p["bias"][t + 1]))
                fit = G  # the kernel fits the latent's features before the shrinkage
            else:
                G = features.feature_update(Y, Zprev, K, zeta)
                g, Z = shrink.soft_shrink_spectrum(G, p["bias"][t + 1], S)
                fit = Z
            rec = dict(Zprev=Zprev, K=K, zeta=zeta, G=G, g=g, k=k, X=X, beta=beta, restart=restart)
            if not cfg.kernel_step(t):
                if T is not None:
                    T.layers.append(dict(step=False, **rec))
                continue
            rho = p["kernel_prox"][t]
            Kt = kernel.kernel_ls(fit, Y, K if cfg.kernel_prior == "prox" else None, rho)
            kt = fourier.irfft2_stack(Kt, S)
            k, m = _kernel_constraint(cfg, kt, p["kernel_bias"][t], exact)
            if T is not None:
                T.layers.append(dict(step=True, **{**rec, "k": k}, Z=fit, rho=rho, Kt=Kt, kt=kt, m=m))

        shift = (0, 0)
        if recenter:
            shift = kernel.center_of_mass_shift(k)
            k = kernel.shift_kernel(k, shift)
        gfin = _shrink(cfg, g, p["bias"][L + 1])
        if shift != (0, 0):
            # the features belong to the un-shifted kernel: x moves by -shift
            gfin = fourier.roll(gfin, (-shift[0], -shift[1]))
        Gf = fourier.rfft2_stack(gfin)
        Y0 = Yg if outs is None else be.rfft2(ygrid)  # the same transform
        K = fourier.psf2otf(k, S, centre=(0, 0))
        eta = cfg.prox_scale * p["eta"]
        if gray_in:
            X = reconstruct.reconstruct(Y0[0], K, W[:, 0], Gf, eta)
            xg = be.irfft2(X, s=S)
        else:
            X = reconstruct.reconstruct(Y0, K, W, Gf, eta)
            xg = be.irfft2(X, s=S)
        x = xg[..., h : h + Hv, h : h + Wv]
        if T is not None:
            T.__dict__.update(
                y=y, S=S, exact=exact, border=border, ygrid=ygrid, Yspec=Yspec, gray=gray_in, A0=A0, ws=ws,
                shift=shift, kfinal=k, gfin=gfin, Gf=Gf, Y0=Y0, Kfin=K, W=W, eta=eta, X=X, dtype=dtype,
            )
            return x, k, T
        if return_state:
            state = dict(S=S, border=border, pad=pad, h=h, Gf=Gf, K=K, W=W, eta=eta)
            return x, k, state
        return x, k

    # ------------------------------------------------------------ fast path
    def _spectra(self, S, dtype):
        """Parameter-only spectra on the grid `S`, cached until the
        parameters change (``self._cache`` is reset by the trainer)."""
        p = self._p(np, dtype)
        key = ("spectra", tuple(S), np.dtype(dtype).str)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        for k_ in [k_ for k_ in self._cache if isinstance(k_, tuple) and k_ and k_[0] == "spectra"]:
            del self._cache[k_]  # one grid at a time: these are large
        cfg = self.config
        L, C, h = cfg.layers, cfg.channels, cfg.kernel_size // 2
        A0, ws = self.filters(np, dtype)
        eff = filters.compose_cascade(ws)
        cdt = np.result_type(dtype, np.complex64)
        F1, F2 = S[0], S[1] // 2 + 1
        big = len(eff) * C * F1 * F2 * np.dtype(cdt).itemsize > _SPECTRA_CACHE_BYTES
        out = dict(eff=eff, E=None if big else [None] * len(eff))
        if not big:
            for l, e in enumerate(eff):
                out["E"][l] = _small_otf(e[:, 0], S, (e.shape[-1] // 2,) * 2, sign=+1, dtype=cdt)
        # the initial features are read with a (-h, -h) circular shift: fold
        # it into their filter spectra as a phase ramp
        ramp = _phase(S, (-h, -h), cdt)
        Einit = (out["E"][-1] if not big else _small_otf(eff[-1][:, 0], S, (eff[-1].shape[-1] // 2,) * 2, sign=+1, dtype=cdt))
        out["Einit"] = Einit * ramp
        W = _small_otf(A0[:, 0], S, (cfg.filter_size // 2,) * 2, sign=-1, dtype=cdt)
        eta = (cfg.prox_scale * p["eta"]).astype(dtype)
        out["W"], out["eta"] = W, eta
        out["Wc"] = np.conj(W) * eta[:, None, None]
        out["den0"] = (eta[:, None, None] * (W.real**2 + W.imag**2)).sum(axis=0)
        self._cache[key] = out
        return out

    @blas_single_thread
    def forward_batch(self, ys, *, dtype=None, k0=None, max_batch=16):
        """Fast-mode forward of a (B, H, W) stack of same-size gray images,
        each layer one pass over the whole stack (the fast path on a GPU);
        see :func:`hqsdeblur.unrolled_batch.forward_batch`."""
        from .unrolled_batch import forward_batch

        return forward_batch(self, ys, dtype=dtype, k0=k0, max_batch=max_batch)

    def _forward_fast(self, y, S, dtype, be, *, return_state=False, k0=None, border="smooth"):
        """Inference-only fast mode (gray, NumPy arrays, smooth border): the
        same iteration as the general path, with cached filter spectra,
        channel-at-a-time in-place steps on threads and no rolls (see
        benchmarks/README.md for what each change buys)."""
        import scipy.fft as sfft

        from .backend import _workers

        cfg = self.config
        p = self._p(np, dtype)
        L, C = cfg.layers, cfg.channels
        Hk = Wk = cfg.kernel_size
        h, pad = Hk // 2, Hk - 1
        Hv, Wv = y.shape
        sp = self._spectra(S, dtype)
        wk = _workers()
        cdt = sp["W"].dtype
        F1, F2 = S[0], S[1] // 2 + 1

        def E(l):
            if sp["E"] is not None:
                return sp["E"][l]
            e = sp["eff"][l]
            return _small_otf(e[:, 0], S, (e.shape[-1] // 2,) * 2, sign=+1, dtype=cdt)

        ygrid = extend(y, S, pad, border)
        S = tuple(S)
        # the transforms between the channel loops run on the main thread
        # alone: on grids below ~2^18 pixels pocketfft's threads cost more
        # than they save (irfft2 336 x 500: 0.46 ms on one thread, 0.50-0.61
        # ms with two; the kernel's transfer function 0.22 vs 0.75 ms)
        sw = wk if S[0] * S[1] > _SERIAL_FFT_PIXELS else 1
        Yg = sfft.rfft2(ygrid, workers=sw)
        aligned = _fftw.empty_aligned  # FFTW (where enabled) runs at full speed on these
        # Channels are processed one at a time (every temporary stays in
        # cache) in `nt` groups on threads: FFTs and large ufuncs release the
        # GIL, and the FFTs of one 2-D channel gain little from pocketfft's
        # own workers.
        nt = fourier._n_groups(C, wk)
        groups = [list(range(C))[i::nt] for i in range(nt)]
        fw = 1 if nt > 1 else wk

        def rfft2(x, out):  # one channel: the spectrum, in `out` where the transform can write it
            return fourier._rfft2_into(out, x, fw)

        def irfft2(X, out):  # destroys X
            return fourier.irfft2_destroy(X, S, fw, out=out)
        # compiled backends: single-pass fused kernels (serial and without
        # the GIL inside each channel group's thread)
        fk = _fused_kernels(be)

        class _Buf:
            def __init__(self):
                self.tmpr = aligned(S, dtype)
                self.g = aligned(S, dtype)
                self.G = aligned((F1, F2), cdt)  # final features, last layer
                if fk is not None:
                    self.tmpr2 = aligned(S, dtype)
                    return
                self.buf = aligned((F1, F2), cdt)
                self.d = np.empty((F1, F2), dtype)
                self.dc = np.zeros((F1, F2), cdt)  # d as complex (imag 0): complex*real casts slowly
                self.sq = np.empty((F1, 2 * F2), dtype)

        bufs = [_Buf() for _ in groups]

        def shrink_into(g, b, out):
            if fk is not None:
                return fk.fused_soft_shrink(g, b, out, parallel=False)
            np.clip(g, -b, b, out=out)
            return np.subtract(g, out, out=out)

        Z = [aligned((F1, F2), cdt) for _ in range(C)]

        def init(gi):
            bb = bufs[gi]
            for c in groups[gi]:
                np.multiply(sp["Einit"][c], Yg, out=Z[c])
                u = irfft2(Z[c], bb.g)
                Z[c] = rfft2(shrink_into(u, p["bias"][0][c], bb.tmpr), Z[c])

        def layer_fused(gi, El, P, K2, zeta, bt, last, sums):
            # the same steps as `layer`, each one pass: G overwrites Z_c,
            # sqsum is sum_c |Z_c|^2 (not interleaved)
            bb = bufs[gi]
            num = np.zeros((F1, F2), cdt)
            sqsum = np.zeros((F1, F2), dtype)
            B = np.zeros((F1, F2), cdt) if last else None
            for c in groups[gi]:
                Zc = fk.fused_feature_update(El[c], P, Z[c], K2, zeta[c], out=Z[c], parallel=False)
                g = irfft2(Zc, bb.g)
                if last:
                    fk.fused_soft_shrink(g, bt[c], bb.tmpr, b2=p["bias"][L + 1][c], out2=bb.tmpr2, parallel=False)
                    Gc = rfft2(bb.tmpr2, bb.G)
                else:
                    fk.fused_soft_shrink(g, bt[c], bb.tmpr, parallel=False)
                Zc = Z[c] = rfft2(bb.tmpr, Z[c])
                if sums:
                    fk.fused_kernel_ls_sums(Zc, El[c], num, sqsum, parallel=False)
                if last:
                    B += sp["Wc"][c] * Gc
                    if return_state:
                        Gf[c] = Gc.copy()  # bb.G is reused
            return num, sqsum, B

        def layer(gi, El, P, K2, zeta, bt, last, sums):
            bb = bufs[gi]
            buf, d, dc, sq = bb.buf, bb.d, bb.dc, bb.sq
            num = np.zeros((F1, F2), cdt)
            sqsum = np.zeros((F1, 2 * F2), dtype)
            B = np.zeros((F1, F2), cdt) if last else None
            for c in groups[gi]:
                # feature update G = (zeta conj(K) Y + Z) / (zeta |K|^2 + 1),
                # Y = E Yg and P = conj(K) Yg
                np.multiply(El[c], P, out=buf)
                buf *= zeta[c]
                buf += Z[c]
                np.multiply(K2, zeta[c], out=d)
                d += 1
                np.reciprocal(d, out=d)
                dc.real[...] = d
                buf *= dc
                g = irfft2(buf, bb.g)
                Zc = Z[c] = rfft2(shrink_into(g, bt[c], bb.tmpr), Z[c])
                if sums:
                    # kernel LS sums: conj(Z) E (times Yg later) and |Z|^2
                    # (interleaved re/im) over the channels
                    np.conj(Zc, out=buf)
                    buf *= El[c]
                    num += buf
                    v = Zc.view(dtype)
                    np.multiply(v, v, out=sq)
                    sqsum += sq
                if last:
                    # final features: their reconstruction term does not
                    # depend on the final kernel (only on the re-centring phase)
                    Gc = rfft2(shrink_into(g, p["bias"][L + 1][c], bb.tmpr), bb.G)
                    np.multiply(sp["Wc"][c], Gc, out=buf)
                    B += buf
                    if return_state:
                        Gf[c] = Gc.copy()  # bb.G is reused
            return num, sqsum, B

        pool = None
        if nt > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(nt)

        def run(fn, *a):
            if pool is None:
                return [fn(0, *a)]
            return list(pool.map(lambda gi: fn(gi, *a), range(nt)))

        Gf = [None] * C
        try:
            run(init)
            k = _initial_kernel(k0, Hk, np, dtype)
            for t in range(L):
                El = E(cfg.feature_index(t))
                K = _kernel_otf(k, S, sw)
                K2 = K.real * K.real
                K2 += K.imag * K.imag
                zeta = (cfg.prox_scale * p["zeta"][t]).astype(dtype)
                last = t == L - 1
                step = cfg.kernel_step(t)
                parts = run(layer if fk is None else layer_fused, El, np.conj(K) * Yg, K2, zeta, p["bias"][t + 1], last, step)
                if last:
                    B = parts[0][2]
                    for q in parts[1:]:
                        B += q[2]
                if not step:
                    continue
                num = parts[0][0]
                sqsum = parts[0][1]
                for q in parts[1:]:
                    num += q[0]
                    sqsum += q[1]
                # kernel least squares Kt = (rho sum conj(Z) Y + K) / (rho sum |Z|^2 + 1)
                rho = p["kernel_prox"][t]
                den = sqsum if fk is not None else sqsum[:, 0::2] + sqsum[:, 1::2]
                num *= Yg
                num *= rho
                if cfg.kernel_prior == "prox":
                    num += K
                den *= rho
                den += 1
                np.reciprocal(den, out=den)
                num *= den.astype(cdt)
                kt = fourier.irfft2_destroy(num, S, sw)
                k, _ = _kernel_constraint(cfg, kt, p["kernel_bias"][t])
        finally:
            if pool is not None:
                pool.shutdown()
        del Z, bufs
        shift = kernel.center_of_mass_shift(k)
        if shift != (0, 0):
            k = kernel.shift_kernel(k, shift)
        ramp = _phase(S, (-shift[0], -shift[1]), cdt) if shift != (0, 0) else None
        K = _kernel_otf(k, S, sw)
        # X = (conj(K) Y0 + ramp * sum_c eta_c conj(W_c) Gf_c) / (|K|^2 + sum_c eta_c |W_c|^2)
        if ramp is not None:
            B *= ramp
        B += np.conj(K) * Yg
        den = K.real * K.real
        den += K.imag * K.imag
        den += sp["den0"]
        np.reciprocal(den, out=den)
        B *= den.astype(cdt)
        xg = fourier.irfft2_destroy(B, S, sw)
        x = xg[h : h + Hv, h : h + Wv]
        if return_state:
            Gf = np.stack(Gf)
            if ramp is not None:
                Gf *= ramp
            state = dict(S=S, border=border, pad=pad, h=h, Gf=Gf, K=K, W=sp["W"][:, None], eta=sp["eta"])
            return x, k, state
        return x, k

    # -------------------------------------------------------------- backward
    @blas_single_thread
    def backward(self, T, xbar, kbar=None):
        """Gradients of a loss with respect to every parameter group.

        Parameters
        ----------
        T : tape from ``forward(..., tape=True)``
        xbar : array like the output image
            Gradient of the loss with respect to the image.
        kbar : (kernel_size, kernel_size) array, optional
            Gradient with respect to the output kernel.

        Returns
        -------
        dict name -> array, the same keys and shapes as ``params``.
        """
        be = backend_for(T.y)
        xp = be.xp
        cfg = self.config
        p = self._p(xp, T.dtype)
        L, S = cfg.layers, T.S
        Hk = cfg.kernel_size
        h, pad = Hk // 2, Hk - 1
        Hv, Wv = T.y.shape[-2:]
        grads = {k: xp.zeros(v.shape, dtype=T.dtype) for k, v in p.items()}

        # --- reconstruction
        xg_bar = fourier.embed(xbar if not T.gray else xbar[None] if xbar.ndim == 2 else xbar, S, (h, h))
        if T.gray:
            xg_bar = xg_bar[0]
        Xbar = be.rfft2(xg_bar)
        if T.gray:
            Y0b, Kb, Wb, Gfb, etab = reconstruct.reconstruct_vjp(T.Y0[0], T.Kfin, T.W[:, 0], T.Gf, T.eta, T.X, Xbar, S)
            Wb = Wb[:, None]
        else:
            Y0b, Kb, Wb, Gfb, etab = reconstruct.reconstruct_vjp(T.Y0, T.Kfin, T.W, T.Gf, T.eta, T.X, Xbar, S)
        grads["eta"] += cfg.prox_scale * etab
        A0bar = fourier.psf2otf_adjoint(Wb, (cfg.filter_size,) * 2, S, centre=(cfg.filter_size // 2,) * 2)
        k_bar = fourier.psf2otf_adjoint(Kb, (Hk, Hk), S, centre=(0, 0))
        if kbar is not None:
            k_bar = k_bar + kbar
        gfin_bar = fourier.irfft2_stack(Gfb, S)
        if T.shift != (0, 0):
            gfin_bar = fourier.roll_adjoint(gfin_bar, (-T.shift[0], -T.shift[1]))
            # The shift itself is piecewise constant: pass the gradient through.
            k_bar = kernel.shift_kernel_adjoint(k_bar, T.shift, T.layers[-1]["k"])
        last = T.layers[-1]
        g_bar, b_bar = _shrink_vjp(cfg, last["g"], p["bias"][L + 1], gfin_bar)
        grads["bias"][L + 1] += b_bar

        # --- unrolled iterations, in reverse
        Ybars = [None] * len(T.Yspec)

        def add_y(li, v):
            # the cotangents are fresh arrays: accumulate in place
            if Ybars[li] is None:
                Ybars[li] = v
            else:
                Ybars[li] += v

        Zbar = None
        imgl = cfg.latent == "image"
        u0_bar = None  # cotangent of the observation's features from restarts
        Wl_bar = 0  # cotangent of the latent layers' filter spectra
        for t in range(L - 1, -1, -1):
            r = T.layers[t]
            li = cfg.feature_index(t)
            Y = T.Yspec[li]
            Zb, K_bar = Zbar, None
            if r["step"]:
                # kernel constraint, then the kernel least squares
                kt_bar = _kernel_constraint_vjp(cfg, r, p["kernel_bias"][t], k_bar, grads, t)
                Ktbar = be.rfft2(kt_bar)
                prox = cfg.kernel_prior == "prox"
                Zb2, Yb, Kb_prev, rho_bar = kernel.kernel_ls_vjp(r["Z"], Y, r["K"] if prox else None, r["rho"], r["Kt"], Ktbar, S)
                grads["kernel_prox"][t] += rho_bar
                if Zb is not None and not imgl:  # (image latent: Zb2 is G_t's cotangent, Zb Z_t's)
                    Zb2 += Zb
                Zb = Zb2
                add_y(li, Yb)
                K_bar = Kb_prev if prox else None
                k_carry = None
            else:
                k_carry = k_bar  # k_t = k_{t-1}
            if imgl:
                # Z_t = rfft(shrink(irfft(G_t))); the kernel step's cotangent
                # (Zb above) is G_t's itself
                Gbar = Zb if r["step"] else None
                zb = Zbar if r["step"] else Zb
                gb = g_bar
                if zb is not None:
                    gz, b_bar = _shrink_vjp(cfg, r["g"], p["bias"][t + 1], fourier.irfft2_stack(zb, S))
                    grads["bias"][t + 1] += b_bar
                    gb = gz if gb is None else gb + gz
                if gb is not None:
                    Gg = fourier.rfft2_stack(gb)
                    Gbar = Gg if Gbar is None else Gbar + Gg
                g_bar = None
                # G = W X, X = reconstruct(Yg, K, W, Zprev, beta)
                Xbar = (T.Wl.conj() * Gbar).sum(axis=0)
                Wl_bar = Wl_bar + Gbar * r["X"].conj()[None]
                _, Kb2, Wb2, Zbar, beta_bar = reconstruct.reconstruct_vjp(T.Yg[0], r["K"], T.Wl, r["Zprev"], r["beta"],
                                                                        r["X"], Xbar, S)
                Wl_bar = Wl_bar + Wb2
                grads["zeta"][t] += -cfg.prox_scale * r["beta"] ** 2 * beta_bar  # beta = 1 / (prox_scale zeta)
                if r["restart"]:  # Zprev came from the observation's features
                    ub, b_bar = _shrink_vjp(cfg, T.u0, p["bias"][t], fourier.irfft2_stack(Zbar, S))
                    grads["bias"][t] += b_bar
                    u0_bar = ub if u0_bar is None else u0_bar + ub
                    Zbar = None
            else:
                # shrinkage (Z_t is unused when no later step reads it)
                if Zb is not None:
                    Gbar, b_bar = shrink.soft_shrink_spectrum_vjp(r["g"], p["bias"][t + 1], Zb, S, gbar=g_bar)
                    grads["bias"][t + 1] += b_bar
                else:
                    Gbar = fourier.rfft2_stack(g_bar)
                g_bar = None
                Yb2, Zbar, Kb2, zeta_bar = features.feature_update_vjp(Y, r["Zprev"], r["K"], r["zeta"], r["G"], Gbar, S)
                grads["zeta"][t] += cfg.prox_scale * zeta_bar
                add_y(li, Yb2)
            K_bar = Kb2 if K_bar is None else K_bar + Kb2
            if t == 0:
                break  # the initial kernel is data: no cotangent
            k_bar = fourier.psf2otf_adjoint(K_bar, (Hk, Hk), S, centre=(0, 0))  # cotangent of k_{t-1}
            if k_carry is not None:
                k_bar = k_bar + k_carry

        # --- initial z
        u_bar, b_bar = _shrink_vjp(cfg, T.u0, p["bias"][0], fourier.irfft2_stack(Zbar, S))
        grads["bias"][0] += b_bar
        if u0_bar is not None:
            u_bar = u_bar + u0_bar
        add_y(len(Ybars) - 1, fourier.rfft2_stack(fourier.roll_adjoint(u_bar, (-h, -h))))
        if imgl:
            A0bar = A0bar + fourier.psf2otf_adjoint(Wl_bar[:, None], (cfg.filter_size,) * 2, S,
                                                    centre=(cfg.filter_size // 2,) * 2)

        # --- features
        if T.outs is not None:
            Fbars = [fourier.embed_adjoint(fourier.irfft2_stack(Yb, S), (Hv, Wv), (pad, pad)) for Yb in Ybars]
            _, wbars = filters.cascade_vjp(T.y, T.ws, T.outs, Fbars)
        else:
            # Y_l = sum_cin E_l[:, cin] * Yg[cin]; cotangent of the effective filter
            # spectrum is Ybar * conj(Yg) (complex-linear in E).
            ebars = []
            Ygc = T.Yg.conj()
            for l, e in enumerate(T.eff):
                if Ygc.shape[0] == 1:  # gray: in place (Ybars[l] is not needed any more)
                    Ybars[l] *= Ygc[0]
                    Eb = Ybars[l][:, None]
                else:
                    Eb = Ybars[l][:, None] * Ygc[None]
                r_ = e.shape[-1] // 2
                ebars.append(filters.flip(fourier.psf2otf_adjoint(Eb, e.shape[-2:], S, centre=(r_, r_))))
            wbars = _compose_cascade_vjp(T.ws, T.eff, ebars, xp)
        A0bar = A0bar + filters.flip(wbars[0])
        for l in range(1, len(T.ws)):
            grads[f"w{l}"] += wbars[l]
        grads["w0"] += A0bar - A0bar.mean(axis=(-2, -1), keepdims=True)
        return grads


def _shrink(cfg, g, b):
    """The configured shrinkage of features `g` (C, H, W) with thresholds `b` (C,)."""
    if cfg.shrink == "l0":
        return shrink.l0_joint(g, b)[0]
    return shrink.soft_shrink(g, b)


def _shrink_vjp(cfg, g, b, zbar):
    """VJP of :func:`_shrink`: ``(gbar, bbar)`` (the L0 step's ``bbar`` is 0)."""
    if cfg.shrink == "l0":
        return shrink.l0_joint(g, b)[1] * zbar, backend_for(g).xp.zeros_like(b)
    return shrink.soft_shrink_vjp(g, b, zbar)


def _kernel_constraint(cfg, kt, kernel_bias, exact=False):
    """The configured kernel constraint on the least-squares kernel `kt`:
    ``(k, state for the VJP)``."""
    window = (cfg.kernel_size, cfg.kernel_size)
    if cfg.kernel_rule == "clean":
        return kernel.clean_normalize(kt, window, threshold=cfg.clean_threshold, min_component=cfg.clean_min_component)
    return kernel.soft_threshold_normalize(kt, cfg.kernel_bias_scale * kernel_bias, window, temperature=cfg.temperature,
                                           eps=cfg.eps, delta_dtype=np.float32 if exact else None)


def _kernel_constraint_vjp(cfg, r, kernel_bias, kbar, grads, t):
    """VJP of :func:`_kernel_constraint` (layer record `r`): the cotangent of
    kt; the kernel-bias gradient goes into `grads`."""
    window = (cfg.kernel_size, cfg.kernel_size)
    if cfg.kernel_rule == "clean":
        return kernel.clean_normalize_vjp(r["kt"], window, r["m"], kbar)
    kt_bar, kb_bar = kernel.soft_threshold_normalize_vjp(r["kt"], cfg.kernel_bias_scale * kernel_bias, window, r["k"],
                                                         r["m"], kbar, temperature=cfg.temperature, eps=cfg.eps)
    grads["kernel_bias"][t] += cfg.kernel_bias_scale * kb_bar
    return kt_bar


def _compose_cascade_vjp(ws, eff, ebars, xp):
    """VJP of :func:`filters.compose_cascade` (cotangents of every layer's
    effective filter -> cotangents of the cascade weights)."""
    L = len(ws)
    wbars = [None] * L
    acc = None
    for l in range(L - 1, 0, -1):
        acc = ebars[l] if acc is None else acc + ebars[l]
        w = ws[l]
        prev = eff[l - 1]
        cout, cmid, kh, kw = w.shape
        eh, ew = prev.shape[-2:]
        wb = xp.zeros_like(w)
        pb = xp.zeros_like(prev)
        for a in range(kh):
            for b in range(kw):
                blk = acc[:, :, a : a + eh, b : b + ew]
                wb[:, :, a, b] = xp.einsum("ocij,mcij->om", blk, prev)
                pb += xp.einsum("om,ocij->mcij", w[:, :, a, b], blk)
        wbars[l] = wb
        acc = pb
    acc = ebars[0] if acc is None else acc + ebars[0]
    wbars[0] = acc
    return wbars



# --- fast-path helpers -------------------------------------------------------

_SPECTRA_CACHE_BYTES = 256 * 2**20  # largest filter-spectra cache kept on a model
_FAST_PATH = True  # benchmarks switch it off to time the general (tape-capable) path


def _fused_kernels(be):
    """The module of fused fast-path kernels of a compiled CPU backend
    ('cython': :mod:`hqsdeblur._ext._fused`, 'numba':
    :mod:`hqsdeblur._numba_kernels`), or None (NumPy: the ufunc sequence)."""
    try:
        if be.name == "cython":
            from ._ext import _fused as mod
        elif be.name == "numba":
            from . import _numba_kernels as mod
        else:
            return None
    except ImportError:  # e.g. an installed package built before _fused existed
        return None
    return mod


#: Grid size (pixels) above which the fast forward's transforms outside the
#: channel loops use every FFT worker (measured on 2 cores: 512^2 and larger
#: gain from two workers, 336 x 500 loses).
_SERIAL_FFT_PIXELS = 1 << 18


def _initial_kernel(k0, size, xp, dtype):
    """The kernel the first layer starts from: `k0` or the delta."""
    if k0 is None:
        k = xp.zeros((size, size), dtype=dtype)
        k[size // 2, size // 2] = 1
        return k
    k0 = xp.asarray(k0, dtype=dtype)
    if k0.shape != (size, size):
        raise ValueError(f"k0 must be {size}x{size}, not {tuple(k0.shape)}")
    return k0


def _smooth_grid(shape, pad):
    """FFT grid for the smooth periodic border: one extension of `pad` per axis."""
    return tuple(fourier.fast_len(n + pad) for n in shape[-2:])


#: How the observation is extended to the FFT grid (content at (pad, pad)):
#: 'zero' pads with zeros (the published network); 'smooth' blends mirrored
#: borders over one band of kernel_size - 1 (smallest grid, fastest);
#: 'wrap' uses the classical mode's border (:func:`hqsdeblur.boundary.pad_smooth_wrap`:
#: blurred edge profiles over a band of about 3 kernel widths), which
#: gains ~0.5 dB on Levin coarse to fine with the same weights (24.74 ->
#: 25.23 dB, non-blind final step) at ~1.4x the FFT grid
#: (benchmarks/experiments/tv_c2f).
BORDERS = ("zero", "smooth", "wrap")


def _wrap_band(pad):
    return 2 * (pad + pad // 2 + 3)


def border_grid(shape, pad, border):
    """FFT grid for the 'smooth' (7-smooth sizes, :func:`fourier.fast_len`)
    and 'wrap' borders (5-smooth, as the classical mode whose border it is;
    the shipped schedule network was trained and scored on those grids)."""
    if border == "smooth":
        return _smooth_grid(shape, pad)
    import scipy.fft as sfft

    band = _wrap_band(pad)
    return tuple(int(sfft.next_fast_len(n + band, real=True)) for n in shape[-2:])


def extend(y, S, pad, border):
    """The observation(s) `y` (..., H, W) on the grid `S`, content at
    (pad, pad), extended as `border` says (see :data:`BORDERS`)."""
    if border == "zero":
        return fourier.embed(y, S, (pad, pad))
    if border == "smooth":
        return border_ext.periodic_extend(y, S, (pad, pad))
    if border == "wrap":
        from .boundary import pad_smooth_wrap

        xp = backend_for(y).xp
        lead = y.shape[:-2]
        flat = y.reshape((-1,) + y.shape[-2:])
        out = pad_smooth_wrap(flat, (pad, pad), shape=S)  # host, float64
        return xp.asarray(out.reshape(lead + tuple(S)), dtype=y.dtype)
    raise ValueError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")


def _dft_factors(n, m, centre, sign, nfreq, cdt):
    # exp(sign 2 pi i f (a - centre) / n) for f < nfreq, a < m, computed in float64
    f = np.arange(nfreq, dtype=np.float64)[:, None]
    a = (np.arange(m, dtype=np.float64) - centre)[None, :]
    return np.exp(sign * 2j * np.pi * ((f * a) % n) / n).astype(cdt)


def _small_otf(f, S, centre, *, sign=-1, dtype=np.complex64):
    """Half spectrum on grid `S` of small filters `f` (..., a, b) whose pixel
    `centre` sits at the origin, by two small DFT matrix products (exact, and
    cheaper than a zero-padded FFT for small filters). ``sign=-1`` is the
    transfer function of a convolution kernel (``psf2otf``), ``sign=+1`` that
    of a correlation filter (``psf2otf`` of the flipped filter)."""
    H, Wd = S
    Fy = _dft_factors(H, f.shape[-2], centre[0], sign, H, dtype)  # (H, a)
    Fx = _dft_factors(Wd, f.shape[-1], centre[1], sign, Wd // 2 + 1, dtype).T  # (b, F2)
    return Fy @ (f.astype(dtype) @ Fx)


def _phase(S, shift, cdt, xp=np):
    """Spectrum multiplier of a circular shift by `shift` (``roll``): one
    (dy, dx) gives (F1, F2), a (B, 2) array of shifts (B, F1, F2)."""
    H, Wd = S
    sh = xp.asarray(shift)
    u = xp.exp(-2j * np.pi * ((xp.arange(H) * sh[..., :1]) % H) / H)
    v = xp.exp(-2j * np.pi * ((xp.arange(Wd // 2 + 1) * sh[..., 1:]) % Wd) / Wd)
    return (u[..., :, None] * v[..., None, :]).astype(cdt)


def _kernel_otf(k, S, workers):
    """``psf2otf(k, S, centre=(0, 0))`` as a pruned FFT: the rows of the small
    kernel first, then the zero-padded columns."""
    import scipy.fft as sfft

    R = sfft.rfft(k, n=S[1], axis=1, workers=workers)
    return sfft.fft(R, n=S[0], axis=0, workers=workers, overwrite_x=True)


def _channel_sums(Z, Y):
    """``sum_c conj(Z_c) Y_c`` and ``sum_c |Z_c|^2`` channel by channel (the
    2-D temporaries stay in cache)."""
    num = np.zeros(Z.shape[1:], Z.dtype)
    den = np.zeros(Z.shape[1:], Z.real.dtype)
    t = np.empty(Z.shape[1:], Z.dtype)
    r = np.empty(Z.shape[1:], Z.real.dtype)
    for c in range(Z.shape[0]):
        np.conj(Z[c], out=t)
        t *= Y[c]
        num += t
        zr, zi = Z[c].real, Z[c].imag
        np.multiply(zr, zr, out=r)
        den += r
        np.multiply(zi, zi, out=r)
        den += r
    return num, den


def _weighted_channel_sum(Wc, G):
    """``sum_c Wc_c G_c`` channel by channel."""
    out = np.zeros(G.shape[1:], G.dtype)
    t = np.empty(G.shape[1:], G.dtype)
    for c in range(G.shape[0]):
        np.multiply(Wc[c], G[c], out=t)
        out += t
    return out



def reconstruct_channels(state, channels, *, joint=True):
    """Reconstruct several image channels (n, H, W) with the kernel and the
    features a gray model found on their luminance.

    ``joint=True`` solves the n x n system per frequency in which the
    features constrain the luminance of the result (filters ``w_c`` applied
    to ``sum_j LUMA_j x_j``) and pull the filtered chroma towards zero;
    ``joint=False`` reconstructs every channel on
    its own with the same features.
    """
    be = backend_for(channels)
    xp = be.xp
    S, pad, h = state["S"], state["pad"], state["h"]
    n, Hv, Wv = channels.shape
    grid = extend(channels, S, pad, state["border"])
    Y0 = be.rfft2(grid)
    W = state["W"][:, 0]
    if joint:
        # Luminance rows carry the features; the chroma directions (the
        # orthogonal complement of the luminance weights) get the same filters
        # with target 0, so that no colour direction is left unregularised
        # where |K| vanishes.
        lw = np.asarray(LUMA[:n] if n == 3 else (1.0 / n,) * n)
        basis = np.linalg.svd(lw[None, :] / np.linalg.norm(lw))[2][1:]  # (n-1, n)
        rows = [xp.asarray(lw, dtype=W.real.dtype)] + [xp.asarray(r, dtype=W.real.dtype) for r in basis]
        Wj = xp.concatenate([W[:, None] * r[None, :, None, None] for r in rows], axis=0)
        Gj = xp.concatenate([state["Gf"]] + [xp.zeros_like(state["Gf"])] * (n - 1), axis=0)
        ej = xp.concatenate([state["eta"]] * n)
        X = reconstruct.reconstruct(Y0, state["K"], Wj, Gj, ej)
    else:
        X = xp.stack([reconstruct.reconstruct(Y0[j], state["K"], W, state["Gf"], state["eta"]) for j in range(n)])
    return be.irfft2(X, s=S)[..., h : h + Hv, h : h + Wv]
