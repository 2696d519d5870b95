#!/bin/sh
# Main training run: fine-tune of the published DUBLID weights on mixed kernels.
# Continue after an interruption with:  runs/main/command.sh --resume
cd /work/main
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 HQSDEBLUR_FFT_WORKERS=1 PYTHONPATH=/work/main \
exec python -m hqsdeblur.train --images /work/shared/data/train_images --out runs/main \
  --init published --kernels mixed --steps 1200 --batch 8 --patch 128 --noise 0.005 --kernel-size 45 \
  --lr 1e-4 --warmup 50 --kappa 100 --kernel-shift 3 --image-shift 3 \
  --val-every 50 --val-patches 24 --val-patch 160 --ckpt-every 20 --seed 0 --threads 1 "$@"
