"""Evaluate two trivial calibration methods with the dev-set protocol.

* ``blurred+delta``: returns the blurred input and a 1x1 delta kernel (what a
  method that does nothing scores);
* ``true-kernel``: cheats, returning the protocol's non-blind result with the
  ground-truth kernel and that kernel (upper bound for kernel estimation
  followed by this non-blind step).

The table is printed beside the DUBLID reference figures of
``dublid_reference_dev_sets.json``.  Method-independent fields (aligned PSNR
of the blurred input, true-kernel non-blind PSNR, circular variant) must
match the reference: that is the check that :mod:`hqsdeblur.metrics`
follows the protocol.

Usage::

    PYTHONPATH=. python benchmarks/eval_baselines.py [--root ../shared/data]
        [--datasets levin lai2016] [--limit N] [--out-dir DIR]
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# an installed hqsdeblur (with its compiled extension) wins over the source tree
try:
    import hqsdeblur  # noqa: F401
except ImportError:
    sys.path.insert(0, str(REPO))

from hqsdeblur.evaluate import evaluate, format_table, load_dataset, write_report  # noqa: E402
from hqsdeblur.metrics import nonblind_wiener  # noqa: E402

REF_KEY = {"levin": "levin", "lai2016": "lai2016_all"}

# Summary fields that do not depend on the method: ours must equal the reference.
CHECK_KEYS = (
    "mean_psnr_blurred_aligned_db",
    "mean_ssim_blurred_aligned",
    "mean_psnr_nonblind_true_kernel_db",
    "mean_ssim_nonblind_true_kernel",
    "circ_mean_psnr_nonblind_true_kernel_db",
    "circ_mean_ssim_nonblind_true_kernel",
)


def delta_method(blurred):
    """Do nothing: blurred input and a 1x1 delta kernel."""
    return blurred, np.ones((1, 1))


def true_kernel_method(root, name):
    """Cheating method: look the blurred image up and use its true kernel."""
    table = {}
    for item in load_dataset(root, name):
        table[hashlib.sha1(item.blurred.tobytes()).hexdigest()] = item.kernel

    def method(blurred):
        k = table[hashlib.sha1(np.ascontiguousarray(blurred).tobytes()).hexdigest()]
        return nonblind_wiener(blurred, k, pad=max(45, *k.shape)), k

    return method


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--reference", default=str(
        REPO.parent / "shared" / "reference" / "dublid_reference_dev_sets.json"))
    p.add_argument("--datasets", nargs="+", default=["levin", "lai2016"],
                   choices=["levin", "lai2016"])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--out-dir", default=None, help="write per-method JSON reports here")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)

    ref = json.loads(Path(a.reference).read_text()) if Path(a.reference).is_file() else None
    for name in a.datasets:
        methods = {"blurred+delta": delta_method,
                   "true-kernel (cheat)": true_kernel_method(a.root, name)}
        summaries = {}
        for mname, fn in methods.items():
            rows, summ = evaluate(fn, a.root, name, limit=a.limit, progress=not a.no_progress)
            summaries[mname] = summ
            if a.out_dir:
                slug = mname.split()[0].replace("+", "_")
                write_report(Path(a.out_dir) / f"{name}_{slug}.json", rows, summ,
                             method=mname, dataset=name)
        if ref is not None and a.limit is None:
            summaries["DUBLID reference"] = ref[REF_KEY[name]]
        print(f"\n### {name}" + (f" (first {a.limit})" if a.limit else "") + "\n")
        print(format_table(summaries))
        if ref is not None and a.limit is None:
            r = ref[REF_KEY[name]]
            ours = summaries["blurred+delta"]
            print("\nprotocol check (method-independent fields, ours vs reference):\n")
            print("| field | ours | reference | diff |\n| --- | --- | --- | --- |")
            for k in CHECK_KEYS:
                print(f"| {k} | {ours[k]:.6f} | {r[k]:.6f} | {ours[k] - r[k]:+.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
