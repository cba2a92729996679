#!/usr/bin/env bash
# The GPU numbers of the README's performance section, in one go:
#   bash scripts/bench_gpu.sh OUTDIR
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
for row in configs/kitti/01_baseline.yaml configs/kitti/05_full.yaml; do
  name=$(basename "$row" .yaml)
  python3 scripts/bench_train.py --config "$row" "${common[@]}" --amp bf16 --channels_last --compile \
    | tail -n 1 > "$out/train_${name}_bf16_cl_compile.json"
done
python3 scripts/bench_infer.py --device cuda --height 192 --width 640 --batch_sizes 1 12 \
  | tail -n 1 > "$out/infer.json"
python3 - "$out/da2_small_random" <<'PY'
import sys
from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config
backbone = Dinov2Config(hidden_size=384, num_attention_heads=6, num_hidden_layers=12, patch_size=14,
                        image_size=518, out_indices=[3, 6, 9, 12], reshape_hidden_states=False)
cfg = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384,
                          reassemble_factors=[4, 2, 1, 0.5], neck_hidden_sizes=[48, 96, 192, 384],
                          fusion_hidden_size=64, head_hidden_size=32, depth_estimation_type="relative")
net = DepthAnythingForDepthEstimation(cfg)
print("DA-V2 Small-sized params", sum(p.numel() for p in net.parameters()))
net.save_pretrained(sys.argv[1])
PY
python3 scripts/bench_teacher.py --teacher_path "$out/da2_small_random" --device cuda --frames 96 \
  --batch_size 8 | tail -n 1 > "$out/teacher.json"
rm -rf "$out/da2_small_random"
