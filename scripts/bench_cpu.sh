#!/usr/bin/env bash
# The CPU numbers of docs/performance.md, in one go, side by side with upstream Lite-Mono:
#   bash scripts/bench_cpu.sh UPSTREAM_DIR [OUTDIR]
# UPSTREAM_DIR is a checkout of noahzn/Lite-Mono's training code (see scripts/bench_vs_upstream.py;
# it is imported, never copied). Training step of lite-mono at 320x96 batch 4 and 640x192 batch
# 2, ours (float32, and bf16 autocast) interleaved with upstream's float32 step; inference of
# every variant at 640x192 batch 1 interleaved with upstream's network; the data loader per
# worker at 640x192. Ours runs with --channels_last (NHWC suits oneDNN's CPU convolutions;
# upstream's code runs NCHW). Run it on an otherwise idle machine; each file holds one JSON line.
set -uo pipefail  # one failing row (e.g. a diverging bf16 step) must not stop the others
if [ $# -lt 1 ]; then
  echo "usage: bash scripts/bench_cpu.sh UPSTREAM_DIR [OUTDIR]" >&2
  exit 2
fi
up=$1
out=${2:-bench_cpu_out}
mkdir -p "$out"
for size in "96 320 4" "192 640 2"; do
  read -r height width batch <<< "$size"
  for amp in off bf16; do
    python3 scripts/bench_vs_upstream.py --upstream_dir "$up" --model lite-mono --device cpu \
      --height "$height" --width "$width" --batch_size "$batch" --repeats 10 --amp "$amp" \
      --channels_last \
      2> "$out/train_${width}x${height}_b${batch}_${amp}.err" \
      | tail -n 1 > "$out/train_${width}x${height}_b${batch}_${amp}.json" \
      || echo "train ${width}x${height} --amp $amp failed: see the .err file" >&2
  done
done
python3 scripts/bench_infer.py --upstream_dir "$up" --device cpu --height 192 --width 640 \
  --variants lite-mono lite-mono-small lite-mono-tiny lite-mono-8m --batch_sizes 1 --channels_last \
  | tail -n 1 > "$out/infer_640x192.json"
python3 scripts/bench_data.py --height 192 --width 640 --items 48 | tail -n 1 > "$out/data_640x192.json"
echo "wrote $out"
