"""The tiny training example runs end to end."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "train_tiny.py"


def _load():
    spec = importlib.util.spec_from_file_location("train_tiny", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_train_tiny_few_steps(tmp_path):
    res = _load().main(["--steps", "3", "--quiet", "--out", str(tmp_path)])
    assert res["summary"]["step"] == 3
    assert np.isfinite(res["psnr_deblurred"])
    for name in ("blurred.png", "deblurred.png", "tiny_model.npz", "run/checkpoint.npz"):
        assert (tmp_path / name).is_file(), name


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("HQSDEBLUR_RUN_SLOW"), reason="slow: set HQSDEBLUR_RUN_SLOW=1")
def test_train_tiny_full_run_improves(tmp_path):
    res = _load().main(["--quiet", "--out", str(tmp_path)])
    s = res["summary"]
    assert s["best_val_psnr"] > s["val_psnr_blurred"]
