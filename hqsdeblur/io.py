"""Reading and writing images and kernels, with atomic writes.

Reading
    :func:`read_image` reads PNG, JPEG, TIFF (8 and 16 bit; gray, gray+alpha,
    RGB, RGBA) and ``.npy`` arrays, and returns a float64 image in [0, 1] of
    shape ``(H, W)`` or ``(H, W, 3)`` plus an :class:`ImageInfo`. The pixel count
    is checked from the file header *before* any pixel data is decoded, against
    ``max_pixels`` (default :data:`DEFAULT_MAX_PIXELS` = 100 million, about a
    10000 x 10000 image), so a lying or hostile header cannot make us allocate
    gigabytes. The decoder is picked from the file content; the extension must be
    one of ``.png .jpg .jpeg .tif .tiff .npy``.

Writing
    :func:`write_image`, :func:`write_kernel`, :func:`atomic_write` and
    :func:`atomic_path` never leave a partial file behind: data goes to a hidden
    temporary file in the target directory (``.<name>.<pid>-<n>.tmp<ext>``), is
    flushed and fsynced, then moved into place with an atomic rename. On any
    exception (KeyboardInterrupt included) the temporary file is removed and the
    target is untouched. Existing files are only replaced with
    ``overwrite=True``. Targets that are not regular files (``/dev/stdout``, a
    FIFO) are written directly, as a rename onto them makes no sense.

PNGs are encoded and decoded by :mod:`imagecodecs` (libpng), which keeps
16-bit samples; Pillow reduces 16-bit colour PNGs to 8 bits. Pillow handles
JPEG, :mod:`tifffile` handles TIFF.

All failures raise :class:`~hqsdeblur.errors.InputError` (reading) or
:class:`~hqsdeblur.errors.OutputError` (writing), naming the file.
"""

import contextlib
import dataclasses
import io as _stdio
import itertools
import os
import stat
import struct
import threading
import warnings

import numpy as np

from .errors import HqsdeblurError, InputError, OutputError
from .validate import _to_float, as_image, as_kernel

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageInfo",
    "read_image",
    "write_image",
    "write_kernel",
    "atomic_write",
    "atomic_path",
    "check_output_path",
]

#: Largest image (width * height) that :func:`read_image` decodes by default:
#: 100 million pixels, i.e. 0.8 GB as one float64 gray plane (2.4 GB RGB).
DEFAULT_MAX_PIXELS = 100_000_000

_READ_EXT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".tif": "tiff",
             ".tiff": "tiff", ".npy": "npy"}
_WRITE_EXT = _READ_EXT
_FORMAT_NAME = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "npy": "NumPy .npy"}
_PNG_SIG = b"\x89PNG\r\n\x1a\n"

# Pillow's decompression-bomb limit and truncated-image flag are module globals;
# they are changed only while this lock is held and always restored.
_PIL_LOCK = threading.Lock()
_TMP_COUNTER = itertools.count()


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What :func:`read_image` found in a file.

    Attributes
    ----------
    path : str
        The path as given.
    format : str
        ``'png'``, ``'jpeg'``, ``'tiff'`` or ``'npy'`` (from the file content).
    bit_depth : int or None
        Bits per sample as stored (8 or 16 usually; 1, 2, 4 for low-depth PNG,
        32 for float TIFF); None for ``.npy``.
    channels : int
        Channels as stored: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (a palette
        image counts as 3 or 4).
    had_alpha : bool
        Whether an alpha channel was stored (and dropped).
    shape : tuple of int
        Shape of the returned array, ``(H, W)`` or ``(H, W, 3)``.
    """

    path: str
    format: str
    bit_depth: "int | None"
    channels: int
    had_alpha: bool
    shape: tuple


# --------------------------------------------------------------------------- #
# reading
# --------------------------------------------------------------------------- #

def _sniff(head):
    if head.startswith(_PNG_SIG):
        return "png"
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    return None


def _check_pixels(path, w, h, max_pixels):
    n = int(w) * int(h)
    if max_pixels is not None and n > max_pixels:
        raise InputError(
            f"{path}: image is {w} x {h} = {n:,} pixels, above the limit of "
            f"{max_pixels:,} (raise it with max_pixels= / --max-pixels)."
        )


def read_image(path, *, max_pixels=DEFAULT_MAX_PIXELS):
    """Read an image file as a float64 array in [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        A ``.png``, ``.jpg``/``.jpeg``, ``.tif``/``.tiff`` or ``.npy`` file.
        Integer samples are divided by their maximum (255, 65535); float TIFF
        and ``.npy`` data must already lie in [0, 1] (see
        :func:`hqsdeblur.validate.as_image`). A ``.npy`` array must be
        ``(H, W)`` or ``(H, W, C)``; pickled (object) arrays are refused. For
        TIFF only the first page is read.
    max_pixels : int or None, optional
        Refuse images with more than this many pixels (width * height),
        checked from the header before decoding. None disables the check.
        Default :data:`DEFAULT_MAX_PIXELS` (100 million).

    Returns
    -------
    image : ndarray of float64
        Shape ``(H, W)`` or ``(H, W, 3)``. Alpha channels are dropped with a
        ``UserWarning``.
    info : ImageInfo

    Raises
    ------
    InputError
        Missing file, directory, unreadable, unsupported extension, not an
        image, truncated or corrupt data, too many pixels, invalid values.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> write_image(os.path.join(d, "a.png"), np.full((4, 6), 0.5), bit_depth=16)
    >>> img, info = read_image(os.path.join(d, "a.png"))
    >>> img.shape, info.bit_depth, round(float(img[0, 0]), 4)
    ((4, 6), 16, 0.5)
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise InputError(f"read_image needs a file path, not {type(path).__name__}.") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) \
                or max_pixels <= 0:
            raise InputError(f"max_pixels must be a positive integer or None, not {max_pixels!r}.")
        max_pixels = int(max_pixels)
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READ_EXT:
        raise InputError(
            f"{path}: unsupported file extension {ext or '(none)'!r}; use .png, .jpg, "
            ".jpeg, .tif, .tiff or .npy."
        )
    expected = _READ_EXT[ext]
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found.") from None
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied).") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be accessed ({exc.strerror}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path} is a directory, not an image file.")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file.")
    if st.st_size == 0:
        raise InputError(f"{path} is empty (0 bytes), not an image.")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except PermissionError:
        raise InputError(f"{path}: cannot be read (permission denied).") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror}).") from None

    kind = _sniff(head)
    if kind is None:
        raise InputError(
            f"{path} is not a {_FORMAT_NAME[expected]} file (its content has no "
            "PNG, JPEG, TIFF or .npy signature)."
        )
    try:
        if kind == "png":
            raw, bit_depth = _read_png(path, max_pixels)
        elif kind == "jpeg":
            raw, bit_depth = _read_jpeg(path, max_pixels)
        elif kind == "tiff":
            raw, bit_depth = _read_tiff(path, max_pixels)
        else:
            raw, bit_depth = _read_npy(path, max_pixels)
    except (HqsdeblurError, MemoryError, KeyboardInterrupt, ImportError):
        raise
    except Exception as exc:  # third-party decoders raise many types
        raise InputError(
            f"{path}: cannot decode the {_FORMAT_NAME[kind]} data, the file is truncated "
            f"or corrupt ({type(exc).__name__}: {exc})."
        ) from exc

    if raw.ndim == 2:
        channels = 1
    elif raw.ndim == 3:
        channels = raw.shape[-1]
    else:
        raise InputError(
            f"{path}: array has {raw.ndim} dimensions (shape {raw.shape}); expected "
            "(H, W) or (H, W, C)."
        )
    if channels not in (1, 2, 3, 4):
        raise InputError(
            f"{path}: image has {channels} channels; expected 1 (gray), 2 (gray+alpha), "
            "3 (RGB) or 4 (RGBA)."
        )
    had_alpha = channels in (2, 4)
    if channels == 2:
        warnings.warn(f"{path} has a gray+alpha image; the alpha channel is dropped.",
                      UserWarning, stacklevel=2)
        raw = raw[..., 0]
    with warnings.catch_warnings():
        if channels == 4:  # say it once, from here, with the file name
            warnings.simplefilter("ignore", UserWarning)
        image = as_image(raw, channel_axis=-1 if raw.ndim == 3 else None, name=path)
    if channels == 4:
        warnings.warn(f"{path} has an RGBA image; the alpha channel is dropped.",
                      UserWarning, stacklevel=2)
    image = image.astype(np.float64, copy=False)
    info = ImageInfo(path=path, format=kind, bit_depth=bit_depth, channels=int(channels),
                     had_alpha=had_alpha, shape=tuple(image.shape))
    return image, info


def _read_png(path, max_pixels):
    # Size check from the IHDR chunk first, so no pixel data is read or
    # allocated for an oversized image. Decoding errors (imagecodecs.PngError
    # for truncation, bad CRC, ...) become InputError in read_image.
    import imagecodecs

    with open(path, "rb") as fh:
        head = fh.read(33)
        if len(head) < 33 or head[12:16] != b"IHDR":
            raise InputError(f"{path}: corrupt PNG (no IHDR header chunk).")
        w, h, depth, ctype = struct.unpack(">IIBB", head[16:26])
        if w == 0 or h == 0:
            raise InputError(f"{path}: corrupt PNG (header gives a {w} x {h} image).")
        _check_pixels(path, w, h, max_pixels)
        arr = imagecodecs.png_decode(head + fh.read())
    if ctype in (0, 2) and arr.ndim == 3 and arr.shape[-1] in (2, 4):
        # libpng turns a tRNS colour key into alpha; like Pillow, ignore it
        arr = arr[..., 0] if ctype == 0 else arr[..., :3]
    return arr, 8 if ctype == 3 else depth  # palette entries are 8-bit


def _read_jpeg(path, max_pixels):
    from PIL import Image, ImageFile

    with _PIL_LOCK:
        old_max, old_trunc = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        # Our own limit is checked below, before load(); Pillow's must not
        # interfere (it warns or raises at a different, global threshold).
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must raise
        try:
            with Image.open(path, formats=["JPEG"]) as im:
                _check_pixels(path, *im.size, max_pixels)
                im.load()
                if im.mode not in ("L", "RGB"):  # CMYK, YCbCr
                    im = im.convert("RGB")
                return np.asarray(im), 8
        finally:
            Image.MAX_IMAGE_PIXELS = old_max
            ImageFile.LOAD_TRUNCATED_IMAGES = old_trunc


def _read_tiff(path, max_pixels):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not len(tif.pages):
            raise InputError(f"{path}: TIFF file holds no image.")
        page = tif.pages[0]
        w, h = page.imagewidth, page.imagelength
        _check_pixels(path, w, h, max_pixels)
        if getattr(page, "imagedepth", 1) > 1:
            raise InputError(f"{path}: volumetric TIFF images are not supported.")
        photometric = int(page.photometric)
        if photometric not in (0, 1, 2, 3):  # MINISWHITE, MINISBLACK, RGB, PALETTE
            raise InputError(
                f"{path}: TIFF photometric interpretation {page.photometric.name} is not "
                "supported (use gray or RGB)."
            )
        bit_depth = int(page.bitspersample)
        arr = page.asarray()
        axes = page.axes
        colormap = page.colormap if photometric == 3 else None
    # drop singleton axes other than Y/X/S, then put samples last
    for i in reversed(range(len(axes))):
        if axes[i] not in "YXS" and arr.shape[i] == 1:
            arr = arr.reshape(arr.shape[:i] + arr.shape[i + 1:])
            axes = axes[:i] + axes[i + 1:]
    if "Y" not in axes or "X" not in axes or not set(axes) <= set("YXS"):
        raise InputError(f"{path}: TIFF layout {axes!r} (shape {arr.shape}) is not an image.")
    order = [axes.index("Y"), axes.index("X")] + ([axes.index("S")] if "S" in axes else [])
    arr = np.transpose(arr, order)
    if photometric == 0:  # white is zero
        if arr.dtype.kind == "b":
            arr = ~arr
        elif arr.dtype.kind == "u":
            arr = np.iinfo(arr.dtype).max - arr
        elif arr.dtype.kind == "f":
            arr = 1.0 - arr
    elif photometric == 3:
        if colormap is None or arr.ndim != 2:
            raise InputError(f"{path}: corrupt palette TIFF.")
        arr = np.asarray(colormap).T[arr].astype(np.uint16)
    return arr, bit_depth


def _read_npy(path, max_pixels):
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise InputError(
            f"{path} holds Python objects (a pickled array); only numeric arrays are read."
        )
    if dtype.kind not in "buifc" or dtype.fields is not None:
        raise InputError(f"{path}: array dtype {dtype} is not a numeric image type.")
    if len(shape) not in (2, 3):
        raise InputError(
            f"{path}: array has {len(shape)} dimensions (shape {shape}); expected (H, W) "
            "or (H, W, C)."
        )
    _check_pixels(path, shape[1], shape[0], max_pixels)
    return np.load(path, allow_pickle=False), None


# --------------------------------------------------------------------------- #
# atomic writing
# --------------------------------------------------------------------------- #

def _fspath(path, what="output path"):
    try:
        path = os.fspath(path)
    except TypeError:
        raise OutputError(f"The {what} must be a str or os.PathLike, not "
                          f"{type(path).__name__}.") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise OutputError(f"The {what} is empty.")
    return path


def _target_kind(path, overwrite):
    """None (absent), 'file' (regular file, may be replaced) or 'special'."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"Cannot write {path}: {exc.strerror}.") from None
    if st is None:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise OutputError(f"Cannot write {path}: directory {parent} does not exist.")
        return None
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"Cannot write {path}: it is a directory.")
    if not stat.S_ISREG(st.st_mode):
        return "special"
    if not overwrite:
        raise OutputError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it."
        )
    return "file"


def _make_temp(path):
    folder, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        # deterministic, unique per process; O_EXCL guards against collisions
        tmp = os.path.join(folder, f".{stem[:100]}.{os.getpid()}-{next(_TMP_COUNTER)}.tmp{ext}")
        try:
            fd = os.open(tmp, flags, 0o666)  # umask applies, like a plain open()
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputError(f"Cannot write {path}: {exc.strerror}.") from None
        os.close(fd)
        return tmp


def _fsync_path(path, *, directory=False):
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems refuse fsync on directories
            raise
    finally:
        os.close(fd)


def _commit(tmp, path, overwrite):
    if overwrite:
        os.replace(tmp, path)
    else:
        # link() fails if the target appeared meanwhile: no clobbering race
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise OutputError(
                f"{path} already exists; pass overwrite=True (--overwrite) to replace it."
            ) from None
        except OSError:  # filesystem without hard links
            if os.path.lexists(path):
                raise OutputError(
                    f"{path} already exists; pass overwrite=True (--overwrite) to replace it."
                ) from None
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    _fsync_path(os.path.dirname(os.path.abspath(path)), directory=True)


def _remove_quiet(tmp):
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _as_output_error(exc, path, tmp):
    """Wrap an OSError from writing `path` (not one from unrelated code)."""
    if isinstance(exc, OSError) and not isinstance(exc, HqsdeblurError):
        if getattr(exc, "filename", None) in (None, tmp, path, os.path.abspath(path)):
            reason = exc.strerror or str(exc) or type(exc).__name__
            return OutputError(f"Cannot write {path}: {reason}.")
    return None


@contextlib.contextmanager
def _atomic(path, overwrite, fsync):
    path = _fspath(path)
    kind = _target_kind(path, overwrite)
    if kind == "special":
        try:
            yield path, True
        except BaseException as exc:
            err = _as_output_error(exc, path, path)
            if err is not None:
                raise err from exc
            raise
        return
    tmp = _make_temp(path)
    try:
        yield tmp, False
        if not os.path.exists(tmp):
            raise OutputError(f"Cannot write {path}: the temporary file {tmp} disappeared.")
        if fsync:
            _fsync_path(tmp)
        _commit(tmp, path, overwrite)
    except BaseException as exc:  # KeyboardInterrupt too: never leave a partial file
        _remove_quiet(tmp)
        err = _as_output_error(exc, path, tmp)
        if err is not None:
            raise err from exc
        raise


@contextlib.contextmanager
def atomic_path(path, *, overwrite=False):
    """Context manager giving a temporary path that replaces `path` on success.

    For libraries that want a file name (``np.savez``, ``tifffile``). The
    temporary file exists (empty) in the target directory and ends with the
    target's extension, so ``np.savez`` does not append ``.npz``.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    overwrite : bool, optional
        Replace an existing file. Otherwise an existing target raises.

    Yields
    ------
    tmp : str
        Where to write. It is fsynced and renamed onto `path` when the block
        ends normally, and deleted if the block raises.

    Raises
    ------
    OutputError
        Target exists (without `overwrite`), is a directory, its directory is
        missing, or writing / renaming fails.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "state.npz")
    >>> with atomic_path(target) as tmp:
    ...     np.savez(tmp, a=np.arange(3))
    >>> sorted(np.load(target).files)
    ['a']
    """
    with _atomic(path, overwrite, True) as (tmp, _):
        yield tmp


@contextlib.contextmanager
def atomic_write(path, *, overwrite=False, mode="wb", encoding="utf-8", newline=None):
    """Context manager giving an open file that replaces `path` on success.

    Parameters
    ----------
    path : str or os.PathLike
        Final destination.
    overwrite : bool, optional
        Replace an existing file. Otherwise an existing target raises.
    mode : {'wb', 'w'}, optional
        Binary or text.
    encoding, newline : optional
        Passed to :func:`open` in text mode (use ``newline=''`` for ``csv``).

    Yields
    ------
    fh : file object
        Open on a temporary file in the same directory; flushed, fsynced and
        renamed onto `path` when the block ends normally, deleted (target
        untouched) if it raises, KeyboardInterrupt included.

    Raises
    ------
    OutputError
        As :func:`atomic_path`; also for write errors such as a full disk.

    Examples
    --------
    >>> import tempfile, os, json
    >>> target = os.path.join(tempfile.mkdtemp(), "report.json")
    >>> with atomic_write(target, mode="w") as fh:
    ...     json.dump({"psnr": 30.1}, fh)
    >>> open(target).read()
    '{"psnr": 30.1}'
    """
    if mode not in ("w", "wb", "wt"):
        raise InputError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}.")
    kwargs = {} if "b" in mode else {"encoding": encoding, "newline": newline}
    with _atomic(path, overwrite, False) as (tmp, special):
        with open(tmp, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            if not special:
                os.fsync(fh.fileno())


def check_output_path(output, inputs=(), *, overwrite=False, skip_existing=False):
    """Decide whether `output` may be written, before doing any work.

    Parameters
    ----------
    output : str or os.PathLike
    inputs : path or sequence of paths, optional
        Files the result is computed from; the output must not be one of them
        (even with `overwrite`), whatever the spelling (links, ``..``).
    overwrite : bool, optional
        Allow replacing an existing output.
    skip_existing : bool, optional
        If the output exists, return False so the caller skips it (takes
        precedence over `overwrite`).

    Returns
    -------
    ok : bool
        True to go ahead, False to skip.

    Raises
    ------
    OutputError
        Output is an input, is a directory, exists (without either flag), or
        its parent directory does not exist.

    Examples
    --------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> check_output_path(os.path.join(d, "out.png"), [os.path.join(d, "in.png")])
    True
    """
    out = _fspath(output)
    if isinstance(inputs, (str, bytes, os.PathLike)):
        inputs = (inputs,)
    for inp in inputs:
        inp = _fspath(inp, "input path")
        if _same_file(out, inp):
            raise OutputError(f"{out} is the input file {inp}; choose another output name.")
    try:
        st = os.stat(out)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"Cannot write {out}: {exc.strerror}.") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"Cannot write {out}: it is a directory.")
        if stat.S_ISREG(st.st_mode):
            if skip_existing:
                return False
            if not overwrite:
                raise OutputError(
                    f"{out} already exists; pass --overwrite to replace it or "
                    "--skip-existing to skip it."
                )
        return True
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise OutputError(f"Cannot write {out}: directory {parent} does not exist.")
    return True


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare resolved names
        norm = os.path.normcase
        return norm(os.path.realpath(a)) == norm(os.path.realpath(b))


# --------------------------------------------------------------------------- #
# encoding
# --------------------------------------------------------------------------- #

def _write_format(path):
    ext = os.path.splitext(path)[1].lower()
    if ext not in _WRITE_EXT:
        raise OutputError(
            f"Cannot write {path}: unsupported extension {ext or '(none)'!r}; use .png, "
            ".tif, .tiff, .jpg, .jpeg or .npy."
        )
    return _WRITE_EXT[ext]


def _image_for_writing(image, path):
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or arr.size == 0:
        raise InputError(
            f"Cannot write {path}: image has shape {arr.shape}; expected (H, W), (H, W, 3) "
            "or (H, W, 4)."
        )
    if arr.dtype.kind not in "buif":
        raise InputError(f"Cannot write {path}: image dtype {arr.dtype} is not real numeric.")
    out = _to_float(arr, f"image for {path}")
    n_bad = int((~np.isfinite(out)).sum())
    if n_bad:
        raise InputError(f"Cannot write {path}: image contains {n_bad} NaN or infinite values.")
    return out


def _quantize(x, bit_depth):
    top = 255 if bit_depth == 8 else 65535
    q = np.rint(np.clip(x, 0.0, 1.0) * top)
    return q.astype(np.uint8 if bit_depth == 8 else np.uint16)


def _encode(q, fmt, bit_depth):
    if fmt == "png":
        import imagecodecs

        return bytes(imagecodecs.png_encode(np.ascontiguousarray(q), level=6))
    buf = _stdio.BytesIO()
    if fmt == "jpeg":
        from PIL import Image

        Image.fromarray(q).save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        import tifffile

        tifffile.imwrite(buf, q, photometric="minisblack" if q.ndim == 2 else "rgb",
                         compression="zlib")
    return buf.getvalue()


def _write_bytes(path, data, overwrite):
    with atomic_write(path, overwrite=overwrite, mode="wb") as fh:
        fh.write(data)


def _encode_checked(path, func, *args):
    try:
        return func(*args)
    except (HqsdeblurError, MemoryError, KeyboardInterrupt, ImportError):
        raise
    except Exception as exc:
        raise OutputError(f"Cannot encode {path} ({type(exc).__name__}: {exc}).") from exc


def write_image(path, image, *, bit_depth=8, overwrite=False):
    """Write an image atomically; the format follows the extension.

    Parameters
    ----------
    path : str or os.PathLike
        ``.png``, ``.tif``/``.tiff``, ``.jpg``/``.jpeg`` or ``.npy``.
    image : array_like
        ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (alpha kept, not for JPEG).
        Floats are clipped to [0, 1] and rounded to `bit_depth`; integer /
        bool input is scaled as in :func:`~hqsdeblur.validate.as_image`.
        ``.npy`` stores the float array as is (float32 / float64 kept, no
        clipping). NaN / inf are refused.
    bit_depth : {8, 16}, optional
        Bits per sample for PNG / TIFF; JPEG is always 8. Ignored for ``.npy``.
    overwrite : bool, optional
        Replace an existing file.

    Raises
    ------
    InputError
        Invalid image or bit depth.
    OutputError
        Unsupported extension, target exists, missing directory, write failure
        (no partial file is left).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.tif")
    >>> write_image(p, np.zeros((8, 8, 3)), bit_depth=16)
    >>> read_image(p)[1].bit_depth
    16
    """
    path = _fspath(path)
    fmt = _write_format(path)
    if isinstance(bit_depth, bool) or bit_depth not in (8, 16):
        raise InputError(f"bit_depth must be 8 or 16, not {bit_depth!r}.")
    if fmt == "jpeg" and bit_depth != 8:
        raise InputError(f"Cannot write {path}: JPEG supports only bit_depth=8.")
    _target_kind(path, overwrite)  # fail before encoding
    arr = _image_for_writing(image, path)
    if fmt == "npy":
        data = _encode_checked(path, _npy_bytes, arr)
    else:
        if fmt == "jpeg" and arr.ndim == 3 and arr.shape[-1] == 4:
            raise InputError(f"Cannot write {path}: JPEG cannot store an alpha channel.")
        data = _encode_checked(path, _encode, _quantize(arr, bit_depth), fmt, bit_depth)
    _write_bytes(path, data, overwrite)


def _npy_bytes(arr):
    buf = _stdio.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def write_kernel(path, kernel, *, overwrite=False):
    """Write a blur kernel atomically.

    ``.npy`` stores the float values as given (float32 / float64 kept, ints
    -> float64). Image formats store the kernel divided by its maximum, as
    16-bit PNG / TIFF (8-bit JPEG, lossy: avoid); reading it back with
    :func:`read_image` and :func:`~hqsdeblur.validate.as_kernel` recovers the
    normalised kernel to about 1e-5.

    Parameters
    ----------
    path : str or os.PathLike
    kernel : array_like
        2-D, finite, non-negative, positive sum (see ``as_kernel``).
    overwrite : bool, optional

    Raises
    ------
    InputError
        Invalid kernel.
    OutputError
        As :func:`write_image`.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "k.npy")
    >>> write_kernel(p, np.ones((3, 3)) / 9)
    >>> float(np.load(p).sum())
    1.0
    """
    path = _fspath(path)
    fmt = _write_format(path)
    k = as_kernel(kernel)  # validates
    _target_kind(path, overwrite)
    if fmt == "npy":
        raw = np.asarray(kernel)
        if not (raw.dtype.kind == "f" and raw.dtype.itemsize in (4, 8)):
            raw = raw.astype(np.float64)
        data = _encode_checked(path, _npy_bytes, np.ascontiguousarray(raw))
    else:
        depth = 8 if fmt == "jpeg" else 16
        data = _encode_checked(path, _encode, _quantize(k / k.max(), depth), fmt, depth)
    _write_bytes(path, data, overwrite)
