"""Tests for hqsdeblur.metrics and hqsdeblur.evaluate.

Synthetic checks run everywhere; the protocol reproduction tests read the
reference data in ../shared (relative to the repo root) and skip without it.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import convolve

from hqsdeblur import metrics as m
from hqsdeblur.evaluate import (evaluate, format_table, load_dataset, summarize,
                                write_report)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATA = SHARED / "data"
REF = SHARED / "reference" / "dublid_reference_dev_sets.json"


def _smooth_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    a = convolve(rng.random(shape), np.ones((5, 5)) / 25, mode="wrap")
    return (a - a.min()) / (a.max() - a.min())


# ---------------------------------------------------------------- alignment

@pytest.mark.parametrize("shift", [(0, 0), (3, -7), (-15, 15), (-4, 11)])
def test_known_shift_recovered(shift):
    gt = _smooth_image((96, 80))
    res = np.roll(gt, shift, axis=(0, 1))  # displaced down/right by shift
    out = m.aligned_compare(res, gt)
    assert out["shift"] == shift
    assert out["psnr"] == math.inf and out["ssd"] == 0.0
    assert out["ssim"] == pytest.approx(1.0)
    assert out["at_edge"] == (max(map(abs, shift)) == 15)


def test_fast_ssd_matches_brute_force():
    rng = np.random.default_rng(3)
    gt = _smooth_image((40, 50), seed=1)
    res = np.clip(np.roll(gt, (2, 1), axis=(0, 1)) + 0.05 * rng.standard_normal(gt.shape), 0, 1)
    s = b = 6
    H, W = gt.shape
    g = gt[b:H - b, b:W - b]
    brute = np.array([[np.sum((res[b + dy:H - b + dy, b + dx:W - b + dx] - g) ** 2)
                       for dx in range(-s, s + 1)] for dy in range(-s, s + 1)])
    fast = m._ssd_map(res, g, b, s)
    np.testing.assert_allclose(fast, brute, rtol=1e-9, atol=1e-9)
    out = m.aligned_compare(res, gt, max_shift=s, border=b, compute_ssim=False)
    iy, ix = np.unravel_index(np.argmin(brute), brute.shape)
    assert out["shift"] == (iy - s, ix - s)
    assert out["ssd"] == pytest.approx(brute.min(), rel=1e-12)


def test_result_is_clipped():
    gt = _smooth_image((48, 48))
    a = m.aligned_compare(gt + 2.0 * (gt > 0.99), gt, max_shift=2, border=2)
    b = m.aligned_compare(np.where(gt > 0.99, 1.0, gt), gt, max_shift=2, border=2)
    assert a["psnr"] == b["psnr"]


def test_psnr_and_isnr():
    a = np.zeros((8, 8))
    assert m.psnr(a, a) == math.inf
    assert m.psnr(a, np.full((8, 8), 0.1)) == pytest.approx(20.0)
    gt = _smooth_image((64, 64))
    noisy = np.clip(gt + 0.1, 0, 1)
    assert m.isnr(gt, noisy, gt, max_shift=3, border=3) == math.inf
    assert m.isnr(noisy, noisy, gt, max_shift=3, border=3) == 0.0
    with pytest.raises(ValueError):
        m.psnr(a, np.zeros((8, 9)))
    with pytest.raises(ValueError):
        m.aligned_compare(a, a, max_shift=5, border=3)


# ------------------------------------------------------------------ kernels

def test_pad_kernel_centre():
    k = np.zeros((19, 19))
    k[9, 9] = 2.0
    p = m.pad_kernel(k, 45)
    assert p.shape == (45, 45) and p[22, 22] == 1.0 and p.sum() == 1.0
    with pytest.raises(ValueError):
        m.pad_kernel(np.ones((47, 47)), 45)


@pytest.mark.parametrize("d", [(0, 0), (3, -2), (-10, 10), (7, 4)])
def test_kernel_rmse_shift_recovery(d):
    rng = np.random.default_rng(0)
    kt = rng.random((15, 15))
    kt /= kt.sum()
    est = np.roll(m.pad_kernel(kt, 45), d, axis=(0, 1))  # no wrap: 15 + 2*10 < 45
    rmse, shift = m.kernel_rmse(est, kt)
    assert shift == d and rmse == pytest.approx(0.0, abs=1e-15)
    r0, s0 = m.kernel_rmse(est, kt, max_shift=0)
    assert s0 == (0, 0)
    expect0 = np.sqrt(np.sum((est - m.pad_kernel(kt, 45)) ** 2) / 45 ** 2)
    assert r0 == pytest.approx(expect0, rel=1e-12)


def test_kernel_rmse_sizes():
    kt = np.ones((51, 51))
    assert m.kernel_rmse(np.ones((45, 45)) / 45 ** 2, kt) is None
    # small odd estimate padded centred; larger-than-window estimate widens window
    kt = np.zeros((5, 5)); kt[2, 2] = 1
    r, d = m.kernel_rmse(np.ones((1, 1)), kt)
    assert r == 0.0 and d == (0, 0)
    big = np.zeros((49, 49)); big[26, 24] = 1
    r, d = m.kernel_rmse(big, kt)
    assert r == pytest.approx(0.0) and d == (2, 0)


# ------------------------------------------------------------- non-blind

def test_nonblind_identity_and_error_ratio_of_true_kernel():
    gt = _smooth_image((90, 100))
    y = m.nonblind_wiener(gt, np.ones((1, 1)), w=0.0, pad=5)
    np.testing.assert_allclose(y, gt, atol=1e-12)
    k = np.zeros((9, 9)); k[4, 1:8] = 1; k /= k.sum()
    blurred = convolve(gt, k[::-1, ::-1], mode="nearest")  # true convolution
    nb = m.nonblind_compare(blurred, k, k, gt)
    assert nb["error_ratio"] == 1.0 and nb["nb_pad"] == 45
    assert m.error_ratio(blurred, k, k, gt, circular=True) == 1.0
    # the true kernel beats the delta kernel and the 180-degree rotated kernel
    assert m.error_ratio(blurred, np.ones((1, 1)), k, gt) > 1.5
    rot = np.zeros((9, 9)); rot[4, 0:7] = 1 / 7  # off-centre copy of k
    assert m.nonblind_compare(blurred, rot, k, gt)["nb_est_shift"] != (0, 0)


def test_psf2otf_centre():
    k = np.zeros((3, 3)); k[1, 1] = 1
    np.testing.assert_allclose(m.psf2otf(k, (8, 8)), np.ones((8, 8)))


# ------------------------------------------------------------ evaluate utils

def test_summarize_format_and_report(tmp_path):
    rows = [{"psnr": 20.0, "ssim": 0.5, "psnr_blurred": 19.0, "isnr": 1.0,
             "error_ratio": 1.5, "seconds": 0.1},
            {"psnr": 21.0, "ssim": 0.7, "psnr_blurred": 22.0, "isnr": -1.0,
             "error_ratio": 4.0, "seconds": 0.3, "kernel_rmse": 0.01}]
    s = summarize(rows)
    assert s["count"] == 2 and s["count_isnr_positive"] == 1
    assert s["error_ratio_frac_le_2"] == 0.5 and s["error_ratio_frac_le_3"] == 0.5
    assert s["kernel_rmse_count"] == 1 and s["min_isnr_db"] == -1.0
    t = format_table({"x": s})
    assert t.splitlines()[2].startswith("| x | 2 | 20.50")
    p = tmp_path / "sub" / "r.json"
    write_report(p, rows, s, method="x")
    doc = json.loads(p.read_text())
    assert doc["summary"]["count"] == 2 and doc["method"] == "x"
    assert [q.name for q in p.parent.iterdir()] == ["r.json"]


# ------------------------------------------- reproduction of the reference

needs_shared = pytest.mark.skipif(not (REF.is_file() and (DATA / "levin").is_dir()),
                                  reason="../shared reference data not available")


@pytest.fixture(scope="module")
def ref():
    return json.loads(REF.read_text())


@needs_shared
def test_levin_reproduces_reference(ref):
    per = {r["name"]: r for r in ref["per_image_levin"]}
    for item in load_dataset(DATA, "levin", limit=24):
        if item.name not in ("im1_k1", "im2_k4", "im3_k6"):
            continue
        r = per[item.name]
        assert item.blurred.shape == (r["H"], r["W"]) == (254, 254)
        assert item.kernel.shape == (r["kernel_size"],) * 2
        b = m.aligned_compare(item.blurred, item.sharp)
        assert b["psnr"] == pytest.approx(r["psnr_blurred"], abs=1e-3)
        assert b["ssim"] == pytest.approx(r["ssim_blurred"], abs=1e-5)
        assert b["shift"] == (r["blurred_shift_dy"], r["blurred_shift_dx"])
        nb = m.nonblind_compare(item.blurred, item.kernel, item.kernel, item.sharp)
        assert nb["nb_pad"] == r["nb_pad"] == 45
        assert nb["psnr_nb_true"] == pytest.approx(r["psnr_nb_true"], abs=1e-2)
        assert list(nb["nb_true_shift"]) == r["nb_true_shift"]
        assert nb["ssd_true"] == pytest.approx(r["ssd_true"], rel=1e-4)
        c = m.nonblind_compare(item.blurred, item.kernel, item.kernel, item.sharp,
                               circular=True, compute_ssim=False)
        assert c["psnr_nb_true"] == pytest.approx(r["circ_psnr_nb_true"], abs=1e-2)


@needs_shared
def test_lai_loader_and_blurred_psnr(ref):
    per = {r["name"]: r for r in ref["per_image_lai2016"]}
    items = list(load_dataset(DATA, "lai2016", limit=5))
    assert [i.name for i in items][:2] == ["manmade_01_kernel_01", "manmade_01_kernel_02"]
    it = items[4]  # natural_01: 701x1024 cropped to 700x1024
    r = per[it.name]
    assert it.name == "natural_01_kernel_01" and it.blurred.shape == (r["H"], r["W"]) == (700, 1024)
    b = m.aligned_compare(it.blurred, it.sharp, compute_ssim=False)
    assert b["psnr"] == pytest.approx(r["psnr_blurred"], abs=1e-3)
    assert b["shift"] == (r["blurred_shift_dy"], r["blurred_shift_dx"])


@needs_shared
def test_kernel_padding_and_sign_match_reference_parity():
    par = np.load(SHARED / "reference" / "parity_000_00.npz")
    kt45 = par["kernel_true"].astype(np.float64)
    # the reference placed the 31x31 kernel with (45-31)//2 = 7 zeros before
    assert not kt45[:7].any() and not kt45[:, :7].any()
    np.testing.assert_allclose(m.pad_kernel(kt45[7:38, 7:38], 45), kt45, atol=1e-7)
    # README: estimated kernels of kernel 00 sit (+1, +2) from the truth
    rmse, d = m.kernel_rmse(par["kernel"], kt45[7:38, 7:38], max_shift=5)
    assert d == (1, 2) and rmse < 1.2e-3


@needs_shared
def test_evaluate_runner_on_two_levin_images():
    rows, s = evaluate(lambda y: (y, np.ones((1, 1))), DATA, "levin", limit=2, progress=False)
    assert [r["name"] for r in rows] == ["im1_k1", "im1_k2"]
    assert all(r["isnr"] == 0.0 for r in rows)
    assert s["count"] == 2 and s["mean_isnr_db"] == 0.0
    assert rows[0]["kernel"] == "k1" and rows[0]["kernel_rmse"] > 0
    assert rows[0]["error_ratio"] > 1
