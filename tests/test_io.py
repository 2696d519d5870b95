"""Tests of hqsdeblur.io: reading, writing, atomicity and refusals."""

import errno
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hqsdeblur import io as hio
from hqsdeblur.errors import InputError, OutputError
from hqsdeblur.io import (
    DEFAULT_MAX_PIXELS,
    atomic_path,
    atomic_write,
    check_output_path,
    read_image,
    write_image,
    write_kernel,
)
from hqsdeblur.validate import as_kernel


def _rng():
    return np.random.default_rng(1234)


def _listdir(d):
    return sorted(os.listdir(d))


def _png_chunk(tag, body):
    return (struct.pack(">I", len(body)) + tag + body
            + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF))


def _png(w, h, depth, ctype, idat, interlace=0):
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
          (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # (x0, y0, dx, dy) per pass


def _paeth(a, b, c):
    a, b, c = (v.astype(np.int32) for v in (a, b, c))
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def _filter_rows(rows, bpp):
    """Reference PNG encoder side: row y gets filter type y % 5."""
    out = []
    prev = np.zeros(rows.shape[1], np.int32)
    for y, row in enumerate(rows.astype(np.int32)):
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        ft = y % 5
        pred = [0 * row, left, prev, (left + prev) // 2, _paeth(left, prev, upleft)][ft]
        out.append(bytes([ft]) + ((row - pred) % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def _png16_reference(img, interlace):
    """16-bit PNG with every filter type, optionally Adam7 interlaced."""
    h, w, nch = img.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[nch]
    passes = [(0, 0, 1, 1)] if not interlace else _ADAM7
    data = b""
    for x0, y0, dx, dy in passes:
        sub = img[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = np.ascontiguousarray(sub, ">u2").reshape(sub.shape[0], -1).view(np.uint8)
        data += _filter_rows(rows, 2 * nch)
    return _png(w, h, 16, ctype, zlib.compress(data), interlace)


# --------------------------------------------------------------------------- #
# round trips
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("ext", [".png", ".tif", ".tiff"])
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("shape", [(17, 23), (17, 23, 3)])
def test_round_trip_lossless(tmp_path, ext, bit_depth, shape):
    top = 2 ** bit_depth - 1
    x = np.round(_rng().random(shape) * top) / top
    p = tmp_path / f"img{ext}"
    write_image(p, x, bit_depth=bit_depth)
    y, info = read_image(p)
    assert y.dtype == np.float64 and y.shape == shape
    np.testing.assert_allclose(y, x, atol=1e-12)
    assert info.bit_depth == bit_depth
    assert info.format == ("png" if ext == ".png" else "tiff")
    assert info.channels == (1 if len(shape) == 2 else 3) and not info.had_alpha
    assert info.shape == shape and info.path == str(p)
    assert _listdir(tmp_path) == [p.name]  # no temp files left


def test_16bit_png_keeps_16_bits_and_pil_agrees(tmp_path):
    x = _rng().integers(0, 65536, (9, 11, 3)).astype(np.uint16)
    p = tmp_path / "a.png"
    write_image(p, x, bit_depth=16)  # uint16 input is scaled by 65535
    y, info = read_image(p)
    assert info.bit_depth == 16
    np.testing.assert_array_equal(np.rint(y * 65535).astype(np.uint16), x)
    # Pillow reads 16-bit RGB as the high bytes: our file is standard
    np.testing.assert_array_equal(np.asarray(Image.open(p)), (x >> 8).astype(np.uint8))


def test_16bit_gray_png_written_by_pillow(tmp_path):
    x = _rng().integers(0, 65536, (7, 9)).astype(np.uint16)
    p = tmp_path / "g.png"
    Image.fromarray(x).save(p)
    y, info = read_image(p)
    assert info.bit_depth == 16 and info.channels == 1
    np.testing.assert_array_equal(np.rint(y * 65535), x)


@pytest.mark.parametrize("nch", [1, 3, 4])
@pytest.mark.parametrize("interlace", [0, 1])
def test_png16_decoder_all_filters_and_interlace(tmp_path, nch, interlace):
    img = _rng().integers(0, 65536, (13, 11, nch)).astype(np.uint16)
    p = tmp_path / "f.png"
    p.write_bytes(_png16_reference(img, interlace))
    if nch == 4:
        with pytest.warns(UserWarning, match="alpha"):
            y, info = read_image(p)
    else:
        y, info = read_image(p)
    ref = img[..., :3] if nch == 4 else img[..., 0] if nch == 1 else img
    np.testing.assert_array_equal(np.rint(y * 65535), ref)
    assert info.channels == nch and info.had_alpha == (nch == 4)


def test_jpeg_round_trip(tmp_path):
    yy, xx = np.mgrid[0:32, 0:40]
    x = np.stack([xx / 39, yy / 31, 0.5 + 0 * xx], axis=-1)
    p = tmp_path / "a.jpg"
    write_image(p, x)
    y, info = read_image(p)
    assert info.format == "jpeg" and info.bit_depth == 8 and y.shape == x.shape
    assert np.abs(y - x).mean() < 0.01


def test_npy_round_trip_keeps_dtype(tmp_path):
    x = _rng().random((6, 7, 3)).astype(np.float32)
    p = tmp_path / "a.npy"
    write_image(p, x)
    assert np.load(p).dtype == np.float32
    y, info = read_image(p)
    assert y.dtype == np.float64 and info.format == "npy" and info.bit_depth is None
    np.testing.assert_array_equal(y, x)


def test_rgba_png_alpha_dropped(tmp_path):
    x = _rng().integers(0, 256, (5, 6, 4)).astype(np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(x, "RGBA").save(p)
    with pytest.warns(UserWarning, match="alpha"):
        y, info = read_image(p)
    assert y.shape == (5, 6, 3) and info.channels == 4 and info.had_alpha
    np.testing.assert_array_equal(np.rint(y * 255), x[..., :3])


def test_gray_alpha_png_alpha_dropped(tmp_path):
    x = _rng().integers(0, 256, (5, 6, 2)).astype(np.uint8)
    p = tmp_path / "a.png"
    Image.fromarray(x, "LA").save(p)
    with pytest.warns(UserWarning, match="alpha"):
        y, info = read_image(p)
    assert y.shape == (5, 6) and info.channels == 2 and info.had_alpha
    np.testing.assert_array_equal(np.rint(y * 255), x[..., 0])


def test_palette_png_read_as_rgb(tmp_path):
    im = Image.fromarray(_rng().integers(0, 256, (5, 6, 3)).astype(np.uint8)).quantize(8)
    p = tmp_path / "p.png"
    im.save(p)
    y, info = read_image(p)
    assert y.shape == (5, 6, 3) and info.bit_depth == 8
    np.testing.assert_array_equal(np.rint(y * 255), np.asarray(im.convert("RGB")))


def test_png_colour_key_is_not_alpha(tmp_path):
    # libpng expands a tRNS colour key to alpha; it is ignored, as Pillow does
    x = _rng().integers(0, 256, (5, 6, 3)).astype(np.uint8)
    p = tmp_path / "t.png"
    Image.fromarray(x).save(p, transparency=tuple(int(v) for v in x[0, 0]))
    y, info = read_image(p)
    assert y.shape == (5, 6, 3) and info.channels == 3 and not info.had_alpha
    np.testing.assert_array_equal(np.rint(y * 255), x)


@pytest.mark.parametrize("depth", [1, 2, 4])
def test_low_depth_gray_png(tmp_path, depth):
    top = 2 ** depth - 1
    x = _rng().integers(0, top + 1, (6, 13)).astype(np.uint8)
    p = tmp_path / "low.png"
    if depth == 1:
        Image.fromarray(x.astype(bool)).save(p)
    else:
        Image.fromarray(x * (255 // top)).save(p, bits=depth)
    assert p.read_bytes()[24] == depth  # IHDR bit depth as intended
    y, info = read_image(p)
    assert info.bit_depth == depth and y.shape == x.shape
    np.testing.assert_allclose(y, x / top, atol=1e-12)


def test_npy_int_and_bool_arrays(tmp_path):
    p = tmp_path / "b.npy"
    np.save(p, np.array([[True, False]]))
    np.testing.assert_array_equal(read_image(p)[0], [[1.0, 0.0]])
    np.save(p, np.array([[0, 255]], np.uint8))
    np.testing.assert_array_equal(read_image(p)[0], [[0.0, 1.0]])
    np.save(p, np.zeros((4, 5, 1)))
    assert read_image(p)[0].shape == (4, 5)


def test_pil_globals_restored(tmp_path):
    from PIL import ImageFile

    before = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    p = tmp_path / "a.jpg"
    write_image(p, np.zeros((4, 4)))
    read_image(p)
    (tmp_path / "bad.jpg").write_bytes(p.read_bytes()[:40])
    with pytest.raises(InputError):
        read_image(tmp_path / "bad.jpg")
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --------------------------------------------------------------------------- #
# bad inputs (table driven)
# --------------------------------------------------------------------------- #

def _noise_png(p, depth=8):
    write_image(p, _rng().random((64, 64, 3)), bit_depth=depth)
    return p.read_bytes()


def _make_missing(d):
    return d / "missing.png"


def _make_directory(d):
    (d / "dir.png").mkdir()
    return d / "dir.png"


def _make_text_png(d):
    (d / "text.png").write_text("hello, I am not an image\n")
    return d / "text.png"


def _make_empty(d):
    (d / "empty.png").write_bytes(b"")
    return d / "empty.png"


def _make_bad_ext(d):
    (d / "a.bmp").write_bytes(b"BM")
    return d / "a.bmp"


def _make_truncated_png(d):
    data = _noise_png(d / "full.png")
    (d / "trunc.png").write_bytes(data[: len(data) // 2])
    return d / "trunc.png"


def _make_truncated_png16(d):
    data = _noise_png(d / "full.png", 16)
    (d / "trunc.png").write_bytes(data[: len(data) // 2])
    return d / "trunc.png"


def _make_bad_crc_png16(d):
    data = bytearray(_noise_png(d / "full.png", 16))
    data[60] ^= 0xFF  # inside the IDAT chunk
    (d / "crc.png").write_bytes(bytes(data))
    return d / "crc.png"


def _make_truncated_jpeg(d):
    write_image(d / "full.jpg", _rng().random((64, 64, 3)))
    data = (d / "full.jpg").read_bytes()
    (d / "trunc.jpg").write_bytes(data[: len(data) // 2])
    return d / "trunc.jpg"


def _make_corrupt_tiff(d):
    (d / "c.tif").write_bytes(b"II*\x00" + struct.pack("<I", 8) + b"\xff" * 40)
    return d / "c.tif"


def _make_truncated_tiff(d):
    write_image(d / "full.tif", _rng().random((64, 64)))
    data = (d / "full.tif").read_bytes()
    (d / "t.tif").write_bytes(data[:100])
    return d / "t.tif"


def _make_pickled_npy(d):
    np.save(d / "o.npy", np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    return d / "o.npy"


def _make_npy(arr):
    def make(d):
        np.save(d / "a.npy", arr)
        return d / "a.npy"
    return make


def _make_garbage_npy(d):
    (d / "g.npy").write_bytes(b"\x93NUMPY\x01\x00garbage")
    return d / "g.npy"


def _make_truncated_npy(d):
    np.save(d / "t.npy", np.zeros((50, 50)))
    data = (d / "t.npy").read_bytes()
    (d / "t.npy").write_bytes(data[:500])
    return d / "t.npy"


BAD_FILES = [
    ("missing", _make_missing, "not found"),
    ("directory", _make_directory, "is a directory"),
    ("text file named .png", _make_text_png, "not a PNG file"),
    ("empty file", _make_empty, "empty"),
    ("unsupported extension", _make_bad_ext, "unsupported file extension"),
    ("truncated PNG", _make_truncated_png, "truncated or corrupt"),
    ("truncated 16-bit PNG", _make_truncated_png16, "truncated or corrupt"),
    ("16-bit PNG bad CRC", _make_bad_crc_png16, "CRC"),
    ("truncated JPEG", _make_truncated_jpeg, "truncated or corrupt"),
    ("corrupt TIFF", _make_corrupt_tiff, "TIFF"),
    ("truncated TIFF", _make_truncated_tiff, "TIFF"),
    ("pickled npy", _make_pickled_npy, "pickled"),
    ("garbage npy", _make_garbage_npy, "truncated or corrupt"),
    ("truncated npy", _make_truncated_npy, "truncated or corrupt"),
    ("npy 1-D", _make_npy(np.zeros(10)), "1 dimensions"),
    ("npy 4-D", _make_npy(np.zeros((2, 3, 4, 3))), "4 dimensions"),
    ("npy 5 channels", _make_npy(np.zeros((4, 4, 5))), "5 channels"),
    ("npy NaN", _make_npy(np.array([[np.nan, 0.5]])), "1 NaN"),
    ("npy inf", _make_npy(np.array([[np.inf, 0.5]])), "1 infinite"),
    ("npy out of range", _make_npy(np.array([[0.0, 255.0]])), r"\[0, 255\]"),
    ("npy negative ints", _make_npy(np.array([[-1, 4]], np.int32)), "negative"),
    ("npy complex", _make_npy(np.zeros((3, 3), complex)), "complex"),
    ("npy structured", _make_npy(np.zeros((3, 3), "i4,f4")), "not a numeric"),
]


@pytest.mark.parametrize("label, make, match", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_read_image_refuses(tmp_path, label, make, match):
    path = make(tmp_path)
    with pytest.raises(InputError, match=match) as exc:
        read_image(path)
    assert os.path.basename(str(path)) in str(exc.value)  # names the file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read files without permission")
def test_read_image_permission_denied(tmp_path):
    p = tmp_path / "a.png"
    write_image(p, np.zeros((4, 4)))
    p.chmod(0)
    with pytest.raises(InputError, match="permission"):
        read_image(p)


# --------------------------------------------------------------------------- #
# size limit, checked from the header before decoding
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif", ".npy"])
def test_max_pixels_refused(tmp_path, ext):
    p = tmp_path / f"a{ext}"
    write_image(p, np.zeros((20, 30)), bit_depth=8)
    with pytest.raises(InputError, match=r"30 x 20 = 600 pixels, above the limit of 599"):
        read_image(p, max_pixels=599)
    assert read_image(p, max_pixels=600)[0].shape == (20, 30)


def test_lying_png_header_refused_without_allocating(tmp_path):
    p = tmp_path / "liar.png"
    p.write_bytes(_png(100_000, 100_000, 8, 0, zlib.compress(b"\x00" * 10)))
    with pytest.raises(InputError, match="above the limit of 100,000,000"):
        read_image(p)
    p16 = tmp_path / "liar16.png"
    p16.write_bytes(_png(100_000, 100_000, 16, 2, zlib.compress(b"\x00" * 10)))
    with pytest.raises(InputError, match="--max-pixels"):
        read_image(p16)


def test_lying_png_header_within_limit_is_truncated(tmp_path):
    p = tmp_path / "liar.png"
    p.write_bytes(_png(2000, 2000, 8, 0, zlib.compress(b"\x00" * 10)))
    with pytest.raises(InputError, match="liar.png"):
        read_image(p)


def test_lying_npy_header_refused_without_allocating(tmp_path):
    p = tmp_path / "liar.npy"
    with open(p, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (200_000, 200_000)})
    with pytest.raises(InputError, match="above the limit"):
        read_image(p)


def test_default_max_pixels():
    assert DEFAULT_MAX_PIXELS == 100_000_000


@pytest.mark.parametrize("bad", [0, -5, 1.5, "10", True])
def test_max_pixels_validated(tmp_path, bad):
    with pytest.raises(InputError, match="max_pixels"):
        read_image(tmp_path / "a.png", max_pixels=bad)


# --------------------------------------------------------------------------- #
# writing: refusals and failures
# --------------------------------------------------------------------------- #

def test_write_refuses_existing_without_overwrite(tmp_path):
    p = tmp_path / "a.png"
    write_image(p, np.zeros((4, 4)))
    before = p.read_bytes()
    with pytest.raises(OutputError, match="already exists"):
        write_image(p, np.ones((4, 4)))
    assert p.read_bytes() == before
    write_image(p, np.ones((4, 4)), overwrite=True)
    assert read_image(p)[0].min() == 1.0
    assert _listdir(tmp_path) == ["a.png"]


def test_write_into_missing_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "nope" / "a.png", np.zeros((4, 4)))
    assert _listdir(tmp_path) == []


def test_write_onto_directory(tmp_path):
    (tmp_path / "d.png").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        write_image(tmp_path / "d.png", np.zeros((4, 4)), overwrite=True)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("size", [10, 1_000_000])  # buffered and direct writes
def test_atomic_write_to_dev_full(size):
    before = set(os.listdir("/dev"))
    with pytest.raises(OutputError, match="/dev/full: No space left"):
        with atomic_write("/dev/full") as fh:
            fh.write(b"x" * size)
    # no temp file next to it, and the device node is still a device
    assert set(os.listdir("/dev")) == before
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_write_image_disk_full_dev_full(tmp_path):
    # a .png name that resolves to /dev/full: the encoded PNG hits ENOSPC
    link = tmp_path / "full.png"
    link.symlink_to("/dev/full")
    with pytest.raises(OutputError, match="No space left"):
        write_image(link, np.zeros((64, 64)))
    assert _listdir(tmp_path) == ["full.png"] and link.is_symlink()


@pytest.mark.parametrize("overwrite", [False, True])
def test_disk_full_simulated_leaves_nothing(tmp_path, monkeypatch, overwrite):
    p = tmp_path / "a.tif"
    if overwrite:
        write_image(p, np.zeros((4, 4)))
    before = _listdir(tmp_path), p.read_bytes() if overwrite else None

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(hio.os, "fsync", full)
    with pytest.raises(OutputError, match="a.tif: No space left"):
        write_image(p, np.ones((4, 4)), overwrite=overwrite)
    assert (_listdir(tmp_path), p.read_bytes() if overwrite else None) == before


@pytest.mark.parametrize(
    "kwargs, image, match, exc",
    [
        ({"bit_depth": 12}, np.zeros((4, 4)), "bit_depth", InputError),
        ({"bit_depth": 16}, np.zeros((4, 4)), "JPEG", InputError),
        ({}, np.zeros((4, 4, 4)), "alpha", InputError),
        ({}, np.full((4, 4), np.nan), "NaN", InputError),
        ({}, np.zeros((4, 4, 2)), "shape", InputError),
        ({}, np.zeros(4), "shape", InputError),
    ],
)
def test_write_image_refuses(tmp_path, kwargs, image, match, exc):
    with pytest.raises(exc, match=match):
        write_image(tmp_path / "a.jpg", image, **kwargs)
    assert _listdir(tmp_path) == []


def test_write_image_unsupported_extension(tmp_path):
    with pytest.raises(OutputError, match="unsupported extension"):
        write_image(tmp_path / "a.gif", np.zeros((4, 4)))


def test_write_clips_out_of_range(tmp_path):
    write_image(tmp_path / "a.png", np.array([[-0.5, 0.5, 1.5]]))
    np.testing.assert_allclose(read_image(tmp_path / "a.png")[0], [[0, 128 / 255, 1]])


# --------------------------------------------------------------------------- #
# atomic_write / atomic_path
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("exc_type", [RuntimeError, KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize("existing", [False, True])
def test_atomic_write_exception_mid_write(tmp_path, exc_type, existing):
    p = tmp_path / "state.json"
    if existing:
        p.write_text("old")
    seen = []
    with pytest.raises(exc_type):
        with atomic_write(p, mode="w", overwrite=True) as fh:
            seen.append(fh.name)
            fh.write("new" * 1000)
            fh.flush()
            raise exc_type()
    assert not os.path.exists(seen[0])
    assert _listdir(tmp_path) == (["state.json"] if existing else [])
    if existing:
        assert p.read_text() == "old"


def test_atomic_write_temp_name_and_result(tmp_path):
    p = tmp_path / "table.csv"
    with atomic_write(p, mode="w", newline="") as fh:
        name = os.path.basename(fh.name)
        assert not p.exists()
        fh.write("a,b\r\n1,2\r\n")
    assert name.startswith(".") and ".tmp" in name and name.endswith(".csv")
    assert p.read_bytes() == b"a,b\r\n1,2\r\n"
    assert _listdir(tmp_path) == ["table.csv"]


def test_atomic_write_refuses_existing(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        with atomic_write(p) as fh:
            fh.write(b"new")
    assert p.read_bytes() == b"old" and _listdir(tmp_path) == ["a.bin"]


def test_atomic_write_unrelated_oserror_not_wrapped(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_write(tmp_path / "a.bin") as fh:
            fh.write(b"x")
            open(tmp_path / "does-not-exist")
    assert _listdir(tmp_path) == []


def test_atomic_path_with_np_savez(tmp_path):
    p = tmp_path / "ckpt.npz"
    with atomic_path(p) as tmp:
        base = os.path.basename(tmp)
        assert base.startswith(".") and ".tmp" in base and base.endswith(".npz")
        np.savez(tmp, w=np.arange(5))
    assert _listdir(tmp_path) == ["ckpt.npz"]
    np.testing.assert_array_equal(np.load(p)["w"], np.arange(5))


def test_atomic_path_interrupted(tmp_path):
    p = tmp_path / "ckpt.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(p) as tmp:
            np.savez(tmp, w=np.arange(5))
            raise KeyboardInterrupt
    assert _listdir(tmp_path) == []


# --------------------------------------------------------------------------- #
# check_output_path
# --------------------------------------------------------------------------- #

def test_check_output_path(tmp_path):
    inp = tmp_path / "in.png"
    write_image(inp, np.zeros((4, 4)))
    out = tmp_path / "out.png"
    assert check_output_path(out, [inp]) is True
    write_image(out, np.zeros((4, 4)))
    with pytest.raises(OutputError, match="already exists"):
        check_output_path(out, [inp])
    assert check_output_path(out, [inp], overwrite=True) is True
    assert check_output_path(out, [inp], skip_existing=True) is False
    assert check_output_path(out, inp, overwrite=True, skip_existing=True) is False


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_check_output_path_refuses_input(tmp_path, spelling):
    inp = tmp_path / "in.png"
    write_image(inp, np.zeros((4, 4)))
    (tmp_path / "sub").mkdir()
    out = {"same": inp, "dotdot": tmp_path / "sub" / ".." / "in.png",
           "symlink": tmp_path / "link.png", "hardlink": tmp_path / "hard.png"}[spelling]
    if spelling == "symlink":
        out.symlink_to(inp)
    if spelling == "hardlink":
        os.link(inp, out)
    for flags in ({}, {"overwrite": True}, {"skip_existing": True}):
        with pytest.raises(OutputError, match="is the input file"):
            check_output_path(out, [tmp_path / "other.png", inp], **flags)


def test_check_output_path_missing_parent_and_directory(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_output_path(tmp_path / "nope" / "out.png")
    with pytest.raises(OutputError, match="is a directory"):
        check_output_path(tmp_path, overwrite=True)


# --------------------------------------------------------------------------- #
# write_kernel
# --------------------------------------------------------------------------- #

def _kernel():
    yy, xx = np.mgrid[-7:8, -7:8]
    k = np.exp(-(xx ** 2 + 2 * yy ** 2) / 8.0)
    return k / k.sum()


def test_write_kernel_npy_raw(tmp_path):
    k = (_kernel() * 3).astype(np.float32)
    write_kernel(tmp_path / "k.npy", k)
    out = np.load(tmp_path / "k.npy")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, k)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_write_kernel_16bit_image(tmp_path, ext):
    k = _kernel()
    write_kernel(tmp_path / f"k{ext}", k)
    img, info = read_image(tmp_path / f"k{ext}")
    assert info.bit_depth == 16 and img.max() == 1.0
    np.testing.assert_allclose(as_kernel(img), k, atol=1e-5 * k.max())


def test_write_kernel_refuses_bad_kernel(tmp_path):
    with pytest.raises(InputError, match="negative"):
        write_kernel(tmp_path / "k.png", -_kernel())
    assert _listdir(tmp_path) == []
