"""Evaluate every method on the dev sets and write the README result tables.

Runs each named method on Levin et al. (2009, 32 images) and the synthetic
subset of Lai et al. (2016, 20 images) with :func:`hqsdeblur.evaluate.evaluate`
(the protocol of ``dublid_reference_dev_sets.json``), writes one small JSON
summary per (dataset, method) to ``docs/results/`` and, with ``--report``,
regenerates ``docs/results.md`` from all the JSON files present.

Methods (each ``method(blurred_gray) -> (image, kernel)``):

* ``tv``: classical L0/TV blind deconvolution, kernel window 31 (Levin) /
  75 (Lai), settings of ``benchmarks/eval_tv.py``;
* ``published_exact``: the published DUBLID weights, exact reference
  forward pass (zero padding, one scale, 45 window);
* ``published_fast``: the published weights through our fast forward pass
  (smooth border, re-centred kernel);
* ``published_fast_75``: same, kernel window 75 (Lai only: the network runs
  on a downscaled image, the kernel is upsampled, final non-blind step);
* ``ours``, ``ours_75``: the shipped model ``hqsdeblur/models/hqsdeblur_unrolled.npz``
  at one scale, its own window (31) and 75.
* ``ours_c2f``, ``published_c2f``: the shipped / published model as
  ``deblur(method='unrolled')`` runs it: coarse to fine
  (:func:`hqsdeblur.coarse_to_fine.unrolled_coarse_to_fine`), the model's
  window on Levin (31 / 45) and 75 on Lai, the model's final image step
  (the shipped schedule network: the non-blind deconvolution; the
  published network: its own reconstruction).

Usage::

    PYTHONPATH=. python benchmarks/eval_all.py --datasets levin lai2016 \
        --methods published_exact published_fast ours
    PYTHONPATH=. python benchmarks/eval_all.py --report
"""

import argparse
import datetime as _dt
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# The tables are those of scipy.fft (pocketfft), what a default install runs.
# With FFTW (pyFFTW installed) the shipped L0 network's per-image scores move
# by up to +-1.7 dB on Levin (round-off flips hard-threshold decisions over
# 201 layers per level) while the mean moves by 0.02 dB; set
# HQSDEBLUR_FFTW=1 to score that configuration instead.
os.environ.setdefault("HQSDEBLUR_FFTW", "0")
sys.path.insert(0, str(REPO))

from hqsdeblur import _fftw  # noqa: E402
from hqsdeblur.evaluate import evaluate, format_table, summarize  # noqa: E402

SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
PUBLISHED = SHARED / "reference" / "dublid_linear_16c10l.npz"
REFERENCE_JSON = SHARED / "reference" / "dublid_reference_dev_sets.json"
# a candidate model and a scratch output folder can be scored without
# touching the shipped file or the published tables
OURS = Path(os.environ.get("HQSDEBLUR_EVAL_MODEL", REPO / "hqsdeblur" / "models" / "hqsdeblur_unrolled.npz"))
OUT = Path(os.environ.get("HQSDEBLUR_EVAL_OUT", REPO / "docs" / "results"))

TV_KERNEL_SIZE = {"levin": 31, "lai2016": 75}
METHODS = ("tv", "published_exact", "published_fast", "published_fast_75", "published_c2f", "ours", "ours_75",
           "ours_c2f")
C2F_KERNEL_SIZE = {"levin": None, "lai2016": 75}  # None: the model's own window
LABELS = {
    "reference": "published (PyTorch reference, from JSON)",
    "published_exact": "published, our exact forward",
    "published_fast": "published, our fast forward",
    "published_fast_75": "published, fast, window 75 (coarse scale)",
    "ours": "ours (shipped model), fast, one pass",
    "ours_75": "ours (shipped model), fast, window 75 (one pass, coarse scale)",
    "ours_c2f": "ours (shipped model), coarse to fine (deblur's default)",
    "published_c2f": "published, coarse to fine",
    "tv": "tv (classical L0, HQS)",
}


def make_method(name, dataset):
    """``method(blurred_gray) -> (image, kernel)`` for a method name."""
    if name == "tv":
        from hqsdeblur.tv import blind_deconvolve

        ks = TV_KERNEL_SIZE[dataset]
        return lambda y: blind_deconvolve(y, kernel_size=ks)
    from hqsdeblur.deblur import unrolled_deblur

    model = str(PUBLISHED) if name.startswith("published") else str(OURS)
    if name.endswith("_c2f"):
        # what deblur(method='unrolled') does by default: coarse to fine,
        # 'wrap' border, the network's own image
        ks = C2F_KERNEL_SIZE[dataset]
        return lambda y: unrolled_deblur(y, model=model, kernel_size=ks, pyramid=True)
    exact = name == "published_exact"
    ks = 75 if name.endswith("_75") else None
    return lambda y: unrolled_deblur(y, model=model, exact=exact, kernel_size=ks, pyramid=False)


def git_commit():
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def file_info(path):
    """Short sha256 and mtime of a file (which code / model was measured)."""
    p = Path(path)
    if not p.exists():
        return None
    return {"path": str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p),
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest()[:12],
            "mtime_utc": _dt.datetime.fromtimestamp(p.stat().st_mtime, _dt.timezone.utc).isoformat(timespec="seconds")}


def model_step():
    """Training step of the shipped model snapshot (from its header meta)."""
    try:
        from hqsdeblur.model_io import load_model

        tr = (load_model(OURS).meta or {}).get("training", {})
        return {"steps_done": tr.get("steps_done"), "exported_from": tr.get("exported_from")}
    except Exception as exc:  # report, don't fail the run
        return {"error": str(exc)}


_ROW_KEYS = ("name", "kernel_size", "psnr", "ssim", "psnr_blurred", "isnr", "kernel_rmse",
             "error_ratio", "psnr_nb_est", "seconds")


def _compact(row):
    out = {}
    for k in _ROW_KEYS:
        v = row.get(k)
        out[k] = float(f"{v:.6g}") if isinstance(v, float) else v
    return out


def split_summaries(rows, dataset):
    """Summaries of the whole set and, for Lai, the <=45 / >45 px kernel subsets."""
    out = {"all": summarize(rows)}
    if dataset == "lai2016":
        out["kernel_le_45"] = summarize([r for r in rows if r["kernel_fits_45"]])
        out["kernel_gt_45"] = summarize([r for r in rows if not r["kernel_fits_45"]])
    return out


def run_one(name, dataset, *, limit=None, progress=True):
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    commit = git_commit()  # the code the run started on (commits may land while it runs)
    meth = make_method(name, dataset)
    meth(np.random.default_rng(0).random((256, 256)))  # warm-up: JIT compilation, model load
    cpu0 = time.process_time()
    rows, _ = evaluate(meth, str(DATA), dataset, limit=limit, progress=progress)
    cpu = time.process_time() - cpu0
    doc = {
        "method": name,
        "label": LABELS[name],
        "dataset": dataset,
        "started_utc": started,
        "git_commit": commit,
        "command": "PYTHONPATH=. python benchmarks/eval_all.py --datasets {} --methods {}".format(dataset, name)
        + (f" --limit {limit}" if limit else ""),
        "cpu_seconds_per_image_incl_scoring": cpu / max(1, len(rows)),
        "fft": "fftw" if _fftw.enabled() else "pocketfft",
        "code": {"tv.py": file_info(REPO / "hqsdeblur" / "tv.py"),
                 "unrolled.py": file_info(REPO / "hqsdeblur" / "unrolled.py"),
                 "deblur.py": file_info(REPO / "hqsdeblur" / "deblur.py")},
        "summaries": split_summaries(rows, dataset),
        "rows": [_compact(r) for r in rows],
    }
    if name.startswith("ours"):
        doc["model"] = {**file_info(OURS), **model_step()}
    if name == "tv":
        doc["kernel_size"] = TV_KERNEL_SIZE[dataset]
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{dataset}_{name}.json"
    path.write_text(json.dumps(doc, indent=1))
    s = doc["summaries"]["all"]
    print(f"{dataset} {name}: PSNR {s['mean_psnr_aligned_db']:.2f} ISNR {s['mean_isnr_db']:+.2f} "
          f"s/img {s['seconds_mean']:.2f} -> {path}", flush=True)
    return doc


# --------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------

LEVIN_COLS = (
    ("count", "n", "{:d}"),
    ("mean_psnr_aligned_db", "PSNR", "{:.2f}"),
    ("mean_ssim_aligned", "SSIM", "{:.3f}"),
    ("mean_isnr_db", "ISNR", "{:+.2f}"),
    ("count_isnr_positive", "ISNR>0", "{:d}"),
    ("mean_kernel_rmse_min_shift_pm10", "k RMSE", "{:.2e}"),
    ("error_ratio_frac_le_2", "ER<=2", "{:.0%}"),
    ("error_ratio_frac_le_3", "ER<=3", "{:.0%}"),
    ("error_ratio_median", "ER med", "{:.2f}"),
    ("mean_psnr_nonblind_est_kernel_db", "NB est", "{:.2f}"),
    ("seconds_median", "s/img", "{:.2f}"),
)
LAI_COLS = (
    ("count", "n", "{:d}"),
    ("mean_psnr_aligned_db", "PSNR", "{:.2f}"),
    ("mean_ssim_aligned", "SSIM", "{:.3f}"),
    ("mean_isnr_db", "ISNR", "{:+.2f}"),
    ("count_isnr_positive", "ISNR>0", "{:d}"),
    ("mean_kernel_rmse_min_shift_pm10", "k RMSE (<=45)", "{:.2e}"),
    ("error_ratio_frac_le_3", "ER<=3", "{:.0%}"),
    ("error_ratio_median", "ER med", "{:.2f}"),
    ("seconds_median", "s/img", "{:.2f}"),
)


def _load_results():
    res = {}
    for p in sorted(OUT.glob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if "summaries" in d and "dataset" in d:
            res[(d["dataset"], d["method"])] = d
        elif "summary" in d and d.get("rows") and d["rows"][0].get("dataset") in ("levin", "lai2016"):
            # written by benchmarks/eval_tv.py: same rows, its own layout
            ds = d["rows"][0]["dataset"]
            res[(ds, "tv")] = {
                "dataset": ds, "method": "tv", "rows": d["rows"], "summaries": split_summaries(d["rows"], ds),
                "command": d.get("command", "PYTHONPATH=. python benchmarks/eval_tv.py"),
                "started_utc": d.get("started_utc", "-"), "git_commit": d.get("git_commit", "-"),
                "code": {"tv.py": (d.get("code") or {}).get("tv.py")},  # unknown unless eval_tv recorded it
            }
    return res


def _reference():
    ref = json.loads(REFERENCE_JSON.read_text())
    out = {"levin": {"all": dict(ref["levin"])},
           "lai2016": {"all": dict(ref["lai2016_all"]), "kernel_le_45": dict(ref["lai2016_kernel_le_45"]),
                       "kernel_gt_45": dict(ref["lai2016_kernel_gt_45"])}}
    for d in out.values():
        for s in d.values():
            s["seconds_median"] = s.get("forward_time_s_median")
    return out


def _table(res, ref, dataset, subset, cols, order):
    rows = {LABELS["reference"] + " ¹": ref[dataset][subset]}
    for m in order:
        d = res.get((dataset, m))
        if d is not None and subset in d["summaries"]:
            tag = ""
            if m.startswith("ours") and d.get("model"):
                tag = f" (step {d['model'].get('steps_done')})"
            summ = d["summaries"][subset]
            if m.endswith("_75"):
                # a 75x75 estimate is scored over a 75x75 window: not comparable
                summ = {**summ, "mean_kernel_rmse_min_shift_pm10": None}
                tag += " ²"
            rows[LABELS[m] + tag] = summ
    return format_table(rows, columns=cols)


def _commands(res, dataset, order):
    lines = []
    for m in order:
        d = res.get((dataset, m))
        if d is not None:
            extra = f", model sha256 {d['model']['sha256']}" if d.get("model") else ""
            tv_file = (d.get("code") or {}).get("tv.py") if m == "tv" else None
            if tv_file:
                extra += f", tv.py sha256 {tv_file['sha256']}"
            lines.append(f"    {d['command']}   # {d['started_utc']}, commit {d['git_commit']}{extra}")
    return "\n".join(lines)


def _parity_notes(res):
    """How closely our exact forward pass reproduces the reference JSON, per image."""
    ref = json.loads(REFERENCE_JSON.read_text())
    lines = []
    for ds in ("levin", "lai2016"):
        d = res.get((ds, "published_exact"))
        if d is None:
            continue
        want = {r["name"]: r for r in ref[f"per_image_{ds}"]}
        dp = [abs(r["psnr"] - want[r["name"]]["psnr"]) for r in d["rows"] if r["name"] in want]
        dk = [abs(r["kernel_rmse"] - want[r["name"]]["kernel_rmse"]) for r in d["rows"]
              if r["name"] in want and r["kernel_rmse"] is not None and want[r["name"]]["kernel_rmse"] is not None]
        if dp:
            lines.append(f"* {ds}: {len(dp)} images, max |PSNR ours - reference| = {max(dp):.4f} dB"
                         + (f", max |kernel RMSE difference| = {max(dk):.1e}" if dk else ""))
    if not lines:
        return []
    return ["## Parity of the exact forward pass with the reference", "",
            "Per-image difference between `published_exact` (our NumPy forward, exact mode) and the",
            "PyTorch reference numbers in `dublid_reference_dev_sets.json`:", ""] + lines + [""]


def write_report(path=REPO / "docs" / "results.md"):
    res = _load_results()
    ref = _reference()
    order = ("published_exact", "published_fast", "published_fast_75", "published_c2f", "ours", "ours_75", "ours_c2f", "tv")
    parts = [
        "# Measured results",
        "",
        "Generated by `PYTHONPATH=. python benchmarks/eval_all.py --report` from the JSON",
        "summaries in `docs/results/` (one per dataset and method; per-image rows included).",
        "Protocol: that of `../shared/reference/dublid_reference_dev_sets.json`, reproduced by",
        "`hqsdeblur.evaluate`: gray input (8-bit -> float, rgb2gray, even crop, float32), PSNR/SSIM",
        "on the interior (15 px border) at the best integer shift within +-15 px, ISNR = PSNR(out) -",
        "PSNR(blurred) under the same alignment, kernel RMSE over a 45x45 window at the best shift",
        "within +-10 px, error ratio (ER) = SSD of a non-blind deconvolution with the estimated",
        "kernel / SSD with the true kernel (Levin et al.). NB est = PSNR of that non-blind result.",
        "`s/img` is the median wall time of the method call on the shared 2-core CPU machine (other jobs",
        "were running, so times are noisy upper bounds). All runs use the source tree (the scripts",
        "put the repository first on `sys.path`) with its default backend, plain NumPy (no compiled",
        "extension built there) and scipy.fft's pocketfft transforms (the script sets `HQSDEBLUR_FFTW=0`",
        "unless it is set: with FFTW the shipped network's Levin mean moved by +0.02 dB, single images",
        "by up to +-1.7 dB, as round-off flips its hard-threshold decisions).",
        "",
        "¹ Reference row: the published PyTorch code and weights as measured in the JSON",
        "(its `s/img` is the forward time on another machine).",
        "",
        "## Levin et al. 2009 (32 images, kernels 13-27 px)",
        "",
        _table(res, ref, "levin", "all", LEVIN_COLS, order),
        "",
        "Commands:",
        "",
        _commands(res, "levin", order),
        "",
        "## Lai et al. 2016, synthetic uniform subset (20 images, kernels 31/51/55/75 px)",
        "",
        "The published network has a 45 px kernel window; only `kernel_01` (31 px) fits it.",
        "Rows marked 'window 75' run the network on an image downscaled by 45/75 and",
        "deconvolve the full image with the upsampled kernel. Kernel RMSE is only defined",
        "for the 5 images whose true kernel fits 45x45 (and estimates of at most 45 px).",
        "² k RMSE not shown: a 75x75 estimate is scored over a 75x75 window (normalised by 75²),",
        "which is not comparable with the 45x45 figures.",
        "",
        "### All 20",
        "",
        _table(res, ref, "lai2016", "all", LAI_COLS, order),
        "",
        "### Kernel > 45 px (15 images)",
        "",
        _table(res, ref, "lai2016", "kernel_gt_45", LAI_COLS, order),
        "",
        "### Kernel <= 45 px (5 images, kernel_01)",
        "",
        _table(res, ref, "lai2016", "kernel_le_45", LAI_COLS, order),
        "",
        "Commands:",
        "",
        _commands(res, "lai2016", order),
        "",
    ]
    for lin in sorted(OUT.glob("linear_heldout*.json")):
        d = json.loads(lin.read_text())
        noise = d.get("noise", 0.01)
        parts += [
            "## Straight-line motion on held-out images (Kodak24, not used in training), "
            + (f"noise sigma {noise:g}" if noise else "no noise (8-bit only)"),
            "",
            d.get("description", ""),
            "",
            d["table"],
            "",
            "Commands:",
            "",
        ] + [f"    {c}" for c in d["commands"]] + [""]
        if d.get("verdict"):
            parts += [d["verdict"], ""]
    figs = [p.name for p in sorted((REPO / "docs").glob("contact_*.png"))]
    if figs:
        parts += ["## Figures", "", "Made by `PYTHONPATH=. python benchmarks/make_figures.py`.", ""]
        parts += [f"![{f}]({f})" for f in figs] + [""]
    parts += _parity_notes(res)
    Path(path).write_text("\n".join(parts))
    print(f"wrote {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="*", default=[], choices=("levin", "lai2016"))
    ap.add_argument("--methods", nargs="*", default=[], choices=METHODS)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--report", action="store_true", help="regenerate docs/results.md")
    args = ap.parse_args(argv)
    for ds in args.datasets:
        for m in args.methods:
            if m.endswith("_75") and ds == "levin":
                continue  # Levin kernels all fit 45 px
            run_one(m, ds, limit=args.limit, progress=not args.quiet)
    if args.report:
        write_report()


if __name__ == "__main__":
    main()
