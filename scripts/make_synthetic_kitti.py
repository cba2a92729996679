#!/usr/bin/env python3
"""Render a synthetic KITTI raw recording with known depth (no download needed).

The scene lies in KITTI raw's layout, so training, gt export and evaluation read it unchanged:

    python scripts/make_synthetic_kitti.py --root synthetic_kitti --seed 0
    python train.py --data_path synthetic_kitti --split synthetic_kitti/splits/synthetic ...

A killed run leaves only complete files; running the same command again finishes it.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from litemono.data.synthetic import make_synthetic_kitti  # noqa: E402
from litemono.errors import OneLineParser, cli  # noqa: E402


@cli("make_synthetic_kitti.py")
def main(argv=None) -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="output folder (becomes --data_path)")
    parser.add_argument("--drives", type=int, default=2, help="drives (different streets)")
    parser.add_argument("--frames_per_drive", type=int, default=150, help="frames per drive")
    parser.add_argument("--height", type=int, default=188, help="native image height")
    parser.add_argument("--width", type=int, default=621, help="native image width")
    parser.add_argument("--seed", type=int, default=0, help="everything follows from it")
    parser.add_argument("--png", action=argparse.BooleanOptionalAction, default=False,
                        help="write .png frames instead of .jpg (quality 92)")
    parser.add_argument("--stereo", action=argparse.BooleanOptionalAction, default=True,
                        help="also render the right camera (image_03)")
    parser.add_argument("--supersample", type=int, default=1,
                        help="anti-aliasing samples per pixel and axis (cost grows as its square)")
    parser.add_argument("--lidar_fraction", type=float, default=0.06,
                        help="velodyne points per image pixel")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default 2)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        scene = make_synthetic_kitti(
            args.root, drives=args.drives, frames_per_drive=args.frames_per_drive,
            height=args.height, width=args.width, seed=args.seed, png=args.png, stereo=args.stereo,
            supersample=args.supersample, lidar_fraction=args.lidar_fraction, workers=args.workers)
    except ValueError as exc:
        parser.error(str(exc))
    seconds = time.perf_counter() - start
    frames = len(scene.drives) * scene.frames_per_drive
    print(f"{frames} frames ({scene.height}x{scene.width}, {'stereo' if scene.stereo else 'mono'}) "
          f"in {scene.root} after {seconds:.1f} s; splits in {scene.split_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
