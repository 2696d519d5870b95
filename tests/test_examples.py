"""Each runnable example in examples/ runs to completion."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args, cwd):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_deblur_photo(tmp_path):
    p = _run("deblur_photo.py", tmp_path / "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["deblurred.png", "kernel.png"]
    assert "PSNR" in p.stdout


def test_pipeline_arrays(tmp_path):
    p = _run("pipeline_arrays.py", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "gray:" in p.stdout and "colour:" in p.stdout and "float32" in p.stdout
    assert os.listdir(tmp_path) == []  # no files written
