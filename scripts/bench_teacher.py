"""Frames per second and bytes per stored frame of the teacher precompute.

    python scripts/bench_teacher.py                       # tiny random DA-V2 on CPU
    python scripts/bench_teacher.py --teacher_path weights/Depth-Anything-V2-Small-hf --device cuda

Runs the real loop of ``precompute_teacher.py`` (:func:`litemono.teacher.precompute.run_precompute`:
teacher forward, float16 conversion, atomic compressed ``.npz`` writes) over ``--frames``
in-memory KITTI-sized frames into a temporary folder, so no dataset is needed. Without
``--teacher_path`` the teacher is a tiny randomly initialised Depth Anything V2 (Dinov2 hidden
32, 4 layers: ``shared/spec/measurements.md`` section 6) that measures the loop's overhead, not
DA-V2 Small's speed; with it, the local weights are loaded offline. Random weights give noisier
maps than a trained teacher, so their ``.npz`` files compress worse: ``bytes_per_frame`` is an
upper bound there. ``predict_fps`` times the teacher alone (median of ``--repeats`` batches).
The last stdout line is a JSON object.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import benchmark as bench  # noqa: E402
from litemono.data.splits import SplitLine  # noqa: E402
from litemono.teacher.depth_anything import (DEFAULT_INPUT_SIZE, DepthAnythingTeacher,
                                         random_depth_anything,  # noqa: E402
                                             load_teacher)
from litemono.teacher.precompute import run_precompute  # noqa: E402

KITTI_SIZE = (375, 1242)  # height, width of most KITTI raw frames


def tiny_teacher(input_size: int) -> DepthAnythingTeacher:
    """A random DA-V2 with the tiny configuration, re-initialised to give varied output."""
    return DepthAnythingTeacher(random_depth_anything("tiny", head_bias=0.0), input_size)


class InMemoryFrames:
    """Predictor over synthetic frames: ``load`` makes a smooth random image per frame index."""

    def __init__(self, teacher: DepthAnythingTeacher, image_size, out_size):
        self.teacher, self.image_size, self.out_size = teacher, tuple(image_size), tuple(out_size)

    def load(self, frame: SplitLine) -> torch.Tensor:
        batch = bench.synthetic_batch(*self.image_size, 1, [0], torch.device("cpu"),
                                      seed=frame.frame_index)
        return batch[("color", 0, 0)][0]  # (3, h, w) in [0, 1]

    def predict(self, loaded):
        return self.teacher.predict_list(loaded, self.out_size)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher_path", help="local DA-V2 weights (default: tiny random model)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                        help="same as --device cpu")
    parser.add_argument("--frames", type=int, default=8, help="frames through the loop")
    parser.add_argument("--batch_size", type=int, default=4, help="images per teacher forward")
    parser.add_argument("--input_size", type=int, default=DEFAULT_INPUT_SIZE,
                        help="teacher input short side")
    parser.add_argument("--image_height", type=int, default=KITTI_SIZE[0],
                        help="source image height (KITTI's)")
    parser.add_argument("--image_width", type=int, default=KITTI_SIZE[1],
                        help="source image width (KITTI's)")
    parser.add_argument("--height", type=int, default=192, help="stored map height")
    parser.add_argument("--width", type=int, default=640, help="stored map width")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    return parser


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        device = bench.resolve_device(args.device)
        if args.frames < 1 or args.batch_size < 1:
            raise ValueError(f"--frames and --batch_size must be >= 1, got {args.frames}, "
                             f"{args.batch_size}")
        if args.teacher_path:
            teacher = load_teacher(teacher_path=args.teacher_path, input_size=args.input_size,
                                   device=str(device), local_files_only=True)
        else:
            teacher = tiny_teacher(args.input_size).to(device)
    except (ValueError, OSError, RuntimeError) as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)
    out_size = (args.height, args.width)
    predictor = InMemoryFrames(teacher, (args.image_height, args.image_width), out_size)
    frames = [SplitLine("bench/drive", i, "l") for i in range(args.frames)]
    images = [predictor.load(f) for f in frames[:args.batch_size]]
    predict_times = bench.measure(lambda: predictor.predict(images), device, args.warmup,
                                  args.repeats)
    with tempfile.TemporaryDirectory(prefix="bench_teacher_") as root:
        start = time.perf_counter()
        run_precompute(predictor, frames, root, {"output_size": list(out_size)},
                       batch_size=args.batch_size, progress=False)
        bench.synchronize(device)
        loop_s = time.perf_counter() - start
        stored = sorted(Path(root).rglob("*.npz"))
        total_bytes = sum(p.stat().st_size for p in stored)
    if len(stored) != args.frames:
        raise RuntimeError(f"expected {args.frames} stored maps, found {len(stored)}")
    predict = bench.summarise(predict_times)
    result = {"benchmark": "teacher_precompute",
              "teacher": args.teacher_path or "tiny random DA-V2 (loop overhead only)",
              "device": str(device), "frames": args.frames, "batch_size": args.batch_size,
              "image_size": [args.image_height, args.image_width], "input_size": args.input_size,
              "output_size": list(out_size), "loop_s": loop_s, "fps": args.frames / loop_s,
              "predict_batch_s": predict["median_s"],
              "predict_fps": args.batch_size / predict["median_s"],
              "bytes_per_frame": total_bytes / args.frames,
              "raw_float16_bytes": 2 * args.height * args.width,
              "environment": bench.environment(device)}
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
