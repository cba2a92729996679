#!/usr/bin/env bash
# The GPU numbers of the README's performance section, in one go:
#   bash scripts/bench_gpu.sh OUTDIR          (COMPILE=1 adds torch.compile rows)
# Training step per ablation row at 640x192 batch 12 (fp32 eager vs bf16 + channels_last, and
# + torch.compile for the first and last rows), inference latency per variant, and the teacher
# precompute with a randomly initialised network of DA-V2 Small's size (the published weights
# give the same speed; they cannot be downloaded on the benchmark machine).
set -uo pipefail
out=${1:-bench_gpu_out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
common=(--height 192 --width 640 --batch_size 12 --device cuda --weights_init scratch)
for row in configs/kitti/0*.yaml; do
  name=$(basename "$row" .yaml)
  python3 scripts/bench_train.py --config "$row" "${common[@]}" | tail -n 1 > "$out/train_${name}_fp32.json"
  python3 scripts/bench_train.py --config "$row" "${common[@]}" --amp bf16 --channels_last \
    | tail -n 1 > "$out/train_${name}_bf16_cl.json"
done
# torch.compile costs minutes per configuration: set COMPILE=1 to include it
for row in $([ "${COMPILE:-0}" = 1 ] && echo configs/kitti/01_baseline.yaml configs/kitti/05_full.yaml); do
  name=$(basename "$row" .yaml)
  python3 scripts/bench_train.py --config "$row" "${common[@]}" --amp bf16 --channels_last --compile \
    | tail -n 1 > "$out/train_${name}_bf16_cl_compile.json"
done
python3 scripts/bench_infer.py --device cuda --height 192 --width 640 --batch_sizes 1 12 \
  | tail -n 1 > "$out/infer.json"
python3 -c "import sys; sys.path.insert(0, '.')
from litemono.teacher.depth_anything import random_depth_anything
random_depth_anything('small').save_pretrained('$out/da2_small_random')"
python3 scripts/bench_teacher.py --teacher_path "$out/da2_small_random" --device cuda --frames 96 \
  --batch_size 8 | tail -n 1 > "$out/teacher.json"
rm -rf "$out/da2_small_random"
