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
# the schedule network (hqsdeblur.schedule, 167 layers per level, 2 channels):
# one 290x450 image coarse to fine with deblur(), and 16 at one level with
# forward_batch, on the GPU
timeout "${SCHED_TIMEOUT:-120}" $PY - <<'PY' 2>&1 | tee "$OUT/schedule_gpu.log"
import time, numpy as np, cupy as cp, scipy.ndimage as nd
from hqsdeblur import deblur
from hqsdeblur.backend import use_backend
from hqsdeblur.schedule import hqs_schedule
rng = np.random.default_rng(0)
ys = np.stack([nd.gaussian_filter(rng.random((290, 450)), 3).astype(np.float32) for _ in range(16)])
ys = (ys - ys.min()) / np.ptp(ys)
m = hqs_schedule(kernel_size=45)
with use_backend("cupy"):
    for rep in range(3):
        t = time.perf_counter(); x, k = deblur(ys[rep], method="unrolled", model=m); cp.cuda.Device().synchronize()
        print(f"schedule deblur() c2f 290x450 gray: {1e3 * (time.perf_counter() - t):.0f} ms (run {rep})")
    d = cp.asarray(ys)
    for rep in range(3):
        t = time.perf_counter(); xb, kb = m.forward_batch(d); cp.cuda.Device().synchronize()
        print(f"schedule forward_batch 16x290x450, one level: {1e3 * (time.perf_counter() - t) / 16:.1f} ms/img (run {rep})")
PY
