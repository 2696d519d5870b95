#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU: the CuPy tests of the
# network and the trainer, then training steps of the shipped network's
# architecture (v2, `--init hqs --hqs-schedule latent=image`) on the GPU and,
# for comparison on the same machine, on its CPU (NumPy, all cores).
# Training images: $IMAGES (default ../shared/data/train_images, else a
# carried copy in .devdata/train_images). Logs and run folders go to $OUT.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
IMAGES=${IMAGES:-../shared/data/train_images}
[ -d "$IMAGES" ] || IMAGES=.devdata/train_images
if [ -d .devshared ] && [ ! -d ../shared/reference ]; then
    mkdir -p ../shared/reference && cp .devshared/* ../shared/reference/
fi
nvidia-smi -L
timeout "${TEST_TIMEOUT:-150}" $PY -m pytest -q -rfEs -p no:cacheprovider -k "cupy" \
    tests/test_unrolled.py tests/test_train.py 2>&1 | tee "$OUT/pytest_cupy.log" | tail -8
common="--images $IMAGES --init hqs --hqs-schedule latent=image --kernel-size 31 --lr 1e-3 --kappa 100
        --noise 0.005 --coarse-start 1.0 --extension wrap --image-loss wiener --val-every 0 --ckpt-every 1000 --quiet"
TIME=""; [ -x /usr/bin/time ] && TIME="/usr/bin/time -v"
for cfg in "cupy 6 160 6" "cupy 16 256 4" "numpy 6 160 2"; do
    set -- $cfg
    d="$OUT/run_$1_b$2_p$3"
    $TIME timeout "${TRAIN_TIMEOUT:-150}" $PY -m hqsdeblur train $common --backend $1 --batch $2 \
        --patch $3 --steps $4 --threads 16 --out "$d" 2> "$d.time" || echo "train $cfg exit $?"
    $PY - "$d" "$cfg" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1] + "/log.json"))["history"]
s = [r["seconds"] for r in rows if r.get("seconds")]
print(f"{sys.argv[2]} (backend batch patch steps): seconds per step {[round(x, 2) for x in s]}")
PY
    grep -E "Maximum resident|Elapsed" "$d.time" || tail -3 "$d.time"
done
