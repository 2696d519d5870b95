"""Bad inputs through the command line and the Python API.

Each bad input must give: exit status 1 (2 for usage errors), exactly one
line on stderr (run with --quiet), no output file (nor a stray temporary
file), and an unchanged input. Most cases call ``hqsdeblur.cli.main``
in-process (fast); signals, /dev/full and usage errors also run a real
``python -m hqsdeblur`` process.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hqsdeblur import cli
from hqsdeblur.batch import process_file
from hqsdeblur.deblur import deblur
from hqsdeblur.errors import HqsdeblurError, InputError, ModelError
from hqsdeblur.io import write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--method", "tv", "--kernel-size", "5", "--quiet"]


def _sha(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _png(path, shape=(32, 32), seed=0):
    write_image(path, np.random.default_rng(seed).random(shape))


def _truncate(path, keep):
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------- #
# the bad inputs: name -> function(dir) returning the input path
# --------------------------------------------------------------------------- #

def _missing(d):
    return os.path.join(d, "missing.png")


def _directory(d):
    p = os.path.join(d, "adir")
    os.mkdir(p)
    return p


def _text_png(d):
    p = os.path.join(d, "text.png")
    with open(p, "w") as fh:
        fh.write("this is not an image\n")
    return p


def _truncated_png(d):
    p = os.path.join(d, "trunc.png")
    _png(p)
    _truncate(p, 0.5)
    return p


def _truncated_jpeg(d):
    p = os.path.join(d, "trunc.jpg")
    write_image(p, np.random.default_rng(1).random((64, 64)))
    _truncate(p, 0.4)
    return p


def _corrupt_tiff(d):
    p = os.path.join(d, "bad.tif")
    with open(p, "wb") as fh:
        fh.write(b"II*\x00" + b"\xff\x00\x13" * 40)
    return p


def _npy(arr, name):
    def make(d):
        p = os.path.join(d, name)
        np.save(p, arr)
        return p
    return make


_nan = np.full((32, 32), 0.5)
_nan[3, 4] = np.nan

BAD_INPUTS = {
    "missing file": _missing,
    "directory": _directory,
    "text file named .png": _text_png,
    "truncated PNG": _truncated_png,
    "truncated JPEG": _truncated_jpeg,
    "corrupt TIFF": _corrupt_tiff,
    "NaN .npy": _npy(_nan, "nan.npy"),
    "4-D .npy": _npy(np.zeros((4, 8, 8, 3)), "four.npy"),
    "5-channel .npy": _npy(np.zeros((16, 16, 5)), "five.npy"),
    "smaller than the kernel": _npy(np.full((4, 4), 0.5), "tiny.npy"),
}


@pytest.fixture
def dirs(tmp_path):
    i, o = tmp_path / "in", tmp_path / "out"
    i.mkdir()
    o.mkdir()
    return str(i), str(o)


def _check_cli(capsys, argv, *, rc, inputs=(), out_dir=None):
    before = {p: _sha(p) for p in inputs}
    listing = sorted(os.listdir(out_dir)) if out_dir else None
    code = cli.main(argv)
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert code == rc, (code, cap.err)
    assert len(lines) == 1, cap.err
    assert "Traceback" not in cap.err
    for p, h in before.items():
        assert _sha(p) == h, f"{p} changed"
    if out_dir:
        assert sorted(os.listdir(out_dir)) == listing, "an output or temporary file was left"
    return lines[0]


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_cli(case, dirs, capsys):
    d, o = dirs
    src = BAD_INPUTS[case](d)
    out = os.path.join(o, "result.png")
    line = _check_cli(capsys, ["deblur", src, "-o", out, "--kernel-out", os.path.join(o, "k.png"), *FAST],
                      rc=1, inputs=[src], out_dir=o)
    assert os.path.basename(src) in line


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_process_file(case, dirs):
    d, o = dirs
    src = BAD_INPUTS[case](d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        row = process_file(src, os.path.join(o, "r.png"), kernel_path=os.path.join(o, "k.png"),
                           settings={"method": "tv", "kernel_size": 5})
    assert row["status"] == "failed"
    assert "\n" not in row["error"] and os.path.basename(src) in row["error"]
    assert os.listdir(o) == []


@pytest.mark.parametrize("size", [4, -3, 0])
def test_bad_kernel_size(size, dirs, capsys):
    d, o = dirs
    src = os.path.join(d, "a.png")
    _png(src)
    with pytest.raises(SystemExit) as exc:  # argparse: usage error
        cli.main(["deblur", src, "-o", os.path.join(o, "r.png"), "--kernel-size", str(size), "--quiet"])
    assert exc.value.code == 2
    assert os.listdir(o) == []
    with pytest.raises(InputError):
        deblur(np.full((32, 32), 0.5), method="tv", kernel_size=size)
    row = process_file(src, os.path.join(o, "r.png"), settings={"method": "tv", "kernel_size": size})
    assert row["status"] == "failed" and os.listdir(o) == []


def _text_npz(d):
    p = os.path.join(d, "model.npz")
    with open(p, "w") as fh:
        fh.write("not a model\n")
    return p


def _truncated_npz(d):
    p = os.path.join(d, "model.npz")
    np.savez(p, weight_00=np.zeros((16, 1, 3, 3), np.float32), other=np.zeros(1000))
    _truncate(p, 0.5)
    return p


@pytest.mark.parametrize("make", [_text_npz, _truncated_npz], ids=["text", "truncated"])
def test_corrupt_model(make, dirs, capsys):
    d, o = dirs
    src = os.path.join(d, "a.png")
    _png(src)
    model = make(d)
    line = _check_cli(capsys, ["deblur", src, "-o", os.path.join(o, "r.png"), "--method", "unrolled",
                               "--model", model, "--quiet"], rc=1, inputs=[src, model], out_dir=o)
    assert "model.npz" in line
    with pytest.raises(ModelError):
        deblur(np.full((64, 64), 0.5), method="unrolled", model=model)
    row = process_file(src, os.path.join(o, "r.png"), settings={"method": "unrolled", "model": model})
    assert row["status"] == "failed" and "model.npz" in row["error"] and os.listdir(o) == []


def test_output_is_input(dirs, capsys):
    d, _ = dirs
    src = os.path.join(d, "a.png")
    _png(src)
    for extra in ([], ["--overwrite"]):
        _check_cli(capsys, ["deblur", src, "-o", src, *FAST, *extra], rc=1, inputs=[src], out_dir=d)
    row = process_file(src, os.path.join(d, ".", "a.png"), overwrite=True)
    assert row["status"] == "failed" and _sha(src)


def test_existing_output_kept(dirs, capsys):
    d, o = dirs
    src, out = os.path.join(d, "a.png"), os.path.join(o, "a.png")
    _png(src)
    _png(out, seed=5)
    line = _check_cli(capsys, ["deblur", src, "-o", out, *FAST], rc=1, inputs=[src, out], out_dir=o)
    assert "--overwrite" in line


def test_missing_output_directory(dirs, capsys):
    d, o = dirs
    src = os.path.join(d, "a.png")
    _png(src)
    out = os.path.join(o, "nowhere", "r.png")
    _check_cli(capsys, ["deblur", src, "-o", out, *FAST], rc=1, inputs=[src], out_dir=o)
    assert not os.path.exists(os.path.dirname(out))


def _run(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hqsdeblur", *args], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_write_to_dev_full(dirs):
    d, _ = dirs
    src = os.path.join(d, "a.npy")
    np.save(src, np.random.default_rng(0).random((24, 24)))
    h = _sha(src)
    p = _run(["deblur", src, "-o", "/dev/full", *FAST])
    assert p.returncode == 1, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "/dev/full" in p.stderr and _sha(src) == h


def test_usage_error_subprocess(dirs):
    p = _run(["deblur", "--kernel-size", "4", "x.png", "-o", "y.png"])
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_batch_with_one_bad_file(dirs, capsys):
    d, o = dirs
    good = [os.path.join(d, f"g{i}.png") for i in range(2)]
    for i, g in enumerate(good):
        _png(g, seed=i)
    bad = _truncated_png(d)
    code = cli.main(["deblur", good[0], bad, good[1], "-o", o, "--kernel-out", o, *FAST])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 1
    assert len(err) == 1 and "trunc.png" in err[0]
    assert sorted(os.listdir(o)) == ["g0.png", "g0_kernel.png", "g1.png", "g1_kernel.png"]


def test_interrupted_write_leaves_nothing(dirs, monkeypatch):
    from hqsdeblur import io

    d, o = dirs
    src = os.path.join(d, "a.png")
    _png(src)

    def half_then_interrupt(path, data, overwrite):
        with io.atomic_write(path, overwrite=overwrite) as fh:
            fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(io, "_write_bytes", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        process_file(src, os.path.join(o, "r.png"), kernel_path=os.path.join(o, "k.png"),
                     settings={"method": "tv", "kernel_size": 5})
    assert os.listdir(o) == []


def test_sigterm_mid_batch(dirs):
    d, o = dirs
    srcs = []
    for i in range(12):
        srcs.append(os.path.join(d, f"im{i:02d}.png"))
        _png(srcs[-1], shape=(96, 96), seed=i)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "hqsdeblur", "deblur", *srcs, "-o", o,
                             "--method", "tv", "--kernel-size", "9", "--quiet"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        t0 = time.monotonic()
        while not os.listdir(o) and proc.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    if proc.returncode == 0:
        pytest.skip("the batch finished before SIGTERM arrived")
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err
    names = os.listdir(o)
    assert all(not n.startswith(".") and "tmp" not in n for n in names), names
    assert len(names) < len(srcs)
    from hqsdeblur.io import read_image

    for n in names:  # whatever was written is complete
        assert read_image(os.path.join(o, n))[0].shape == (96, 96)


# --------------------------------------------------------------------------- #
# property: anything goes in, a finite image or an InputError comes out
# --------------------------------------------------------------------------- #

_dtypes = st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_])
_shapes = st.tuples(st.integers(1, 20), st.integers(1, 20)) | st.tuples(
    st.integers(1, 16), st.integers(1, 16), st.integers(1, 5))
_specials = st.sampled_from(["uniform", "nan", "inf", "negative", "big", "constant"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=_shapes, dtype=_dtypes, special=_specials, seed=st.integers(0, 2**16))
def test_deblur_property(shape, dtype, special, seed):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    if special == "nan":
        a.flat[rng.integers(a.size)] = np.nan
    elif special == "inf":
        a.flat[rng.integers(a.size)] = np.inf
    elif special == "negative":
        a -= 0.5
    elif special == "big":
        a *= 300
    elif special == "constant":
        a[:] = 0.25
    if np.dtype(dtype).kind in "uib":
        a = np.nan_to_num(a, nan=0, posinf=0) * (1 if dtype is np.bool_ else np.iinfo(dtype).max)
    a = a.astype(dtype)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x, k = deblur(a, method="tv", kernel_size=5)
    except InputError:
        return
    except HqsdeblurError as exc:  # pragma: no cover - shown on failure
        pytest.fail(f"{type(exc).__name__} instead of InputError: {exc}")
    assert np.isfinite(x).all() and np.isfinite(k).all()
    assert x.shape[:2] == a.shape[:2] and (a.ndim == 3 or x.shape == a.shape)
    assert k.shape == (5, 5)
