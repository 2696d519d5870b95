"""The command line, run as ``python -m hqsdeblur`` in a subprocess."""

import glob
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from hqsdeblur.io import read_image, write_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.normpath(os.path.join(ROOT, "..", "shared"))
FAST = ["--method", "tv", "--kernel-size", "5", "--quiet"]


def run(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hqsdeblur", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _img(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


def test_demo(tmp_path):
    p = run("demo", "-o", tmp_path / "demo", "--quiet")
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "demo")) == ["example_deblurred.png", "example_kernel.png"]
    gain = float(re.search(r"\(([+-][0-9.]+) dB\)", p.stdout).group(1))
    assert gain > 0, p.stdout
    x, info = read_image(tmp_path / "demo" / "example_deblurred.png")
    assert x.shape == (256, 256) and info.bit_depth == 8


def test_help_and_backends():
    p = run("deblur", "--help")
    assert p.returncode == 0 and "--exact" in p.stdout and "DUBLID" in p.stdout
    assert "multiples of 64" in " ".join(p.stdout.split())
    p = run("backends")
    assert p.returncode == 0 and "numpy" in p.stdout.split()


@pytest.mark.parametrize("args", [
    [],
    ["deblur"],
    ["deblur", "a.png"],
    ["deblur", "a.png", "-o", "b.png", "--kernel-size", "4"],
    ["deblur", "a.png", "-o", "b.png", "--overwrite", "--skip-existing"],
    ["deblur", "a.png", "-o", "b.png", "--method", "tv", "--exact"],
    ["deblur", "a.png", "-o", "b.png", "--max-pixels", "-1"],
    ["nosuchcommand"],
], ids=["nothing", "no-input", "no-output", "even-kernel", "overwrite+skip", "tv+exact",
        "max-pixels", "unknown-command"])
def test_usage_errors(args, tmp_path):
    p = run(*args, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert os.listdir(tmp_path) == []
    if args == ["deblur"]:
        assert "hqsdeblur demo" in p.stderr


def test_one_input_writes_output_and_kernel(tmp_path):
    src = tmp_path / "blurred.png"
    write_image(src, _img((40, 48)), bit_depth=16)
    p = run("deblur", src, "-o", tmp_path / "sharp.png", "--kernel-out", tmp_path / "k.npy", *FAST)
    assert p.returncode == 0, p.stderr
    x, info = read_image(tmp_path / "sharp.png")
    assert x.shape == (40, 48) and info.bit_depth == 16
    k = np.load(tmp_path / "k.npy")
    assert k.shape == (5, 5) and abs(k.sum() - 1) < 1e-6


def test_method_unrolled_uses_the_shipped_model(tmp_path):
    # --method unrolled without --model runs the model that ships with the
    # package, also while it is not the default method
    from hqsdeblur.deblur import default_model_path

    if default_model_path() is None:
        pytest.skip("no shipped model in this checkout")
    src = tmp_path / "blurred.npy"
    np.save(src, _img((64, 72)).astype(np.float32))
    p = run("deblur", src, "-o", tmp_path / "sharp.npy", "--method", "unrolled", "--quiet")
    assert p.returncode == 0, p.stderr
    assert np.load(tmp_path / "sharp.npy").shape == (64, 72)


def test_formats_and_bit_depth_kept(tmp_path):
    """One batch over several formats: bit depth, dtype and layout kept."""
    d = tmp_path / "in"
    d.mkdir()
    write_image(d / "g8.png", _img((32, 32), 1))
    write_image(d / "g16.png", _img((32, 32), 2), bit_depth=16)
    write_image(d / "c16.tif", _img((32, 32, 3), 3), bit_depth=16)
    write_image(d / "rgba.png", _img((32, 32, 4), 4))
    np.save(d / "f32.npy", _img((32, 32), 5).astype(np.float32))
    np.save(d / "f64.npy", _img((32, 32), 6))
    out, kdir = tmp_path / "out", tmp_path / "kernels"
    p = run("deblur", d, "-o", out, "--kernel-out", kdir, "--report", tmp_path / "report.json",
            "--method", "tv", "--kernel-size", "5")
    assert p.returncode == 0, p.stderr
    assert "alpha" in p.stderr  # the dropped alpha channel is noted
    expect = {"g8.png": ((32, 32), 8), "g16.png": ((32, 32), 16), "c16.tif": ((32, 32, 3), 16),
              "rgba.png": ((32, 32, 3), 8)}
    for name, (shape, depth) in expect.items():
        x, info = read_image(out / name)
        assert (x.shape, info.bit_depth) == (shape, depth), name
    assert np.load(out / "f32.npy").dtype == np.float32
    assert np.load(out / "f64.npy").dtype == np.float64
    assert sorted(os.listdir(kdir)) == sorted(
        ["g8_kernel.png", "g16_kernel.png", "c16_kernel.tif", "rgba_kernel.png",
         "f32_kernel.npy", "f64_kernel.npy"])
    rows = json.loads((tmp_path / "report.json").read_text())
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}


def test_multi_input_glob_and_forced_extension(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"a{i}.png", _img((24, 24), i))
    p = run("deblur", tmp_path / "a*.png", "-o", tmp_path / "out", "--ext", "tif", *FAST)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a0.tif", "a1.tif", "a2.tif"]


def test_overwrite_and_skip_existing(tmp_path):
    src, out, k = tmp_path / "in.png", tmp_path / "out.png", tmp_path / "k.png"
    write_image(src, _img((32, 32)))
    base = ["deblur", src, "-o", out, "--kernel-out", k, *FAST]
    assert run(*base).returncode == 0
    stamp = os.stat(out).st_mtime_ns
    p = run(*base)  # exists: refused
    assert p.returncode == 1 and "already exists" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    p = run(*base, "--skip-existing")  # complete: nothing done
    assert p.returncode == 0 and os.stat(out).st_mtime_ns == stamp
    os.remove(k)  # incomplete: the kernel is part of the output, so it is redone
    p = run(*base, "--skip-existing")
    assert p.returncode == 0 and k.exists()
    write_image(out, np.zeros((8, 8)), overwrite=True)
    p = run(*base, "--overwrite")
    assert p.returncode == 0 and read_image(out)[0].shape == (32, 32)


def _parity_files():
    return sorted(glob.glob(os.path.join(SHARED, "reference", "parity_*.npz")))


@pytest.mark.skipif(not _parity_files(), reason="../shared/reference is absent")
def test_parity_through_cli(tmp_path):
    """The published network through the CLI matches the reference outputs."""
    files = _parity_files()
    inputs = []
    for f in files:
        name = os.path.basename(f)[:-4] + ".npy"
        np.save(tmp_path / name, np.load(f)["blurred"])
        inputs.append(tmp_path / name)
    model = os.path.join(SHARED, "reference", "dublid_linear_16c10l.npz")
    p = run("deblur", *inputs, "-o", tmp_path / "out", "--kernel-out", tmp_path / "k",
            "--method", "unrolled", "--model", model, "--exact", "--backend", "numpy", "--quiet",
            timeout=600)
    assert p.returncode == 0, p.stderr
    for f in files:
        ref = np.load(f)
        stem = os.path.basename(f)[:-4]
        x = np.load(tmp_path / "out" / f"{stem}.npy")
        k = np.load(tmp_path / "k" / f"{stem}_kernel.npy")
        assert x.dtype == np.float32
        # written images are clipped to [0, 1]; the reference is the raw output
        assert np.abs(x - np.clip(ref["image"], 0, 1)).max() < 1e-4, stem
        assert np.abs(k - ref["kernel"]).max() < 1e-5, stem


def test_workers_dask(tmp_path):
    pytest.importorskip("distributed")
    for i in range(2):
        write_image(tmp_path / f"a{i}.png", _img((24, 24), i))
    p = run("deblur", tmp_path / "a0.png", tmp_path / "a1.png", "-o", tmp_path / "out",
            "--workers", "1", *FAST)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a0.png", "a1.png"]
