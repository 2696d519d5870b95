"""Shipped model, coarse to fine + non-blind, with the unrolled border vs tv.py's border."""
from common import *
import eval_all
from hqsdeblur.model_io import load_model
from hqsdeblur.coarse_to_fine import unrolled_coarse_to_fine
import border_patch
m = load_model(str(eval_all.OURS))
limit = int(os.environ.get("LIMIT", 8))
if "patch" in sys.argv:
    border_patch.apply()
tag = "patched-border" if "patch" in sys.argv else "own-border"
run(f"shipped c2f45/15 nb {tag}", lambda y: unrolled_coarse_to_fine(m, y, kernel_size=45), limit=limit)
run(f"shipped c2f45/15 net-image {tag}", lambda y: unrolled_coarse_to_fine(m, y, kernel_size=45), limit=limit, nonblind=False)
