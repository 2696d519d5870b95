#!/usr/bin/env bash
# One prepared run on a machine with an NVIDIA GPU (CuPy installed): the
# CuPy-parametrised tests, a CLI round trip on the GPU, and bench_gpu.py.
# Logs go to $OUT (default ./gpu_out). If a folder .devshared/ holds the
# reference model and parity files, it is put where the tests look for
# ../shared/reference (it is never committed).
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import cupy, numpy, scipy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"
if [ -d .devshared ] && [ ! -d ../shared/reference ]; then
    mkdir -p ../shared/reference && cp .devshared/* ../shared/reference/
fi
$PY -c "import hqsdeblur; print('backends', hqsdeblur.available_backends())"
timeout "${TEST_TIMEOUT:-200}" $PY -m pytest -q -rfEs -p no:cacheprovider -k "cupy" \
    tests/test_steps.py tests/test_fused.py tests/test_nonblind.py tests/test_tv.py tests/test_unrolled.py tests/test_unrolled_batch.py tests/test_train.py \
    2>&1 | tee "$OUT/pytest_cupy.log" | tail -40
# the command line on the GPU, both methods, .npy in and out
$PY - <<'PY'
import numpy as np, scipy.ndimage as nd
rng = np.random.default_rng(0)
x = nd.gaussian_filter(rng.random((200, 240)), 2) > 0.5
k = np.zeros((15, 15)); k[7, 2:13] = 1; k /= k.sum()
np.save("gpu_in.npy", nd.convolve(x.astype(np.float32), k, mode="wrap"))
PY
for m in tv unrolled; do
    timeout 60 $PY -m hqsdeblur deblur gpu_in.npy -o "$OUT/cli_$m.npy" --kernel-out "$OUT/cli_k_$m.npy" \
        --method $m --backend cupy --quiet $([ $m = tv ] && echo --kernel-size 25); echo "cli $m exit $?"
done
timeout "${BENCH_TIMEOUT:-220}" $PY benchmarks/bench_gpu.py --json "$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
