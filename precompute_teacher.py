"""Precompute teacher disparities for distillation (run once before training with --teacher_dir).

Depth Anything V2 (Yang et al., NeurIPS 2024) via transformers, or ``--teacher synthetic``: a
documented stand-in built from the synthetic scene's true depth. Resumable; ``--shard K/N`` or
torchrun splits the frames. Licences: DA-V2 Small weights are Apache-2.0, Base and Large are
CC-BY-NC-4.0 (non-commercial).

  python precompute_teacher.py --split eigen_zhou --height 192 --width 640 --teacher_dir teacher/
"""
import argparse
import os
import shlex
from pathlib import Path

from litemono.config import ConfigError, DataConfig, ModelConfig
from litemono.data.splits import split_identity
from litemono.device import resolve_device
from litemono.errors import OneLineParser, UserError, cli
from litemono.teacher.depth_anything import (DEFAULT_INPUT_SIZE, HUB_IDS,
                                             TeacherUnavailableError, load_teacher)
from litemono.teacher.precompute import ImageTeacher, parse_shard, run_precompute, target_frames
from litemono.teacher.synthetic import DEFAULT_NOISE, SyntheticTeacher


def build_parser() -> argparse.ArgumentParser:
    data, net = DataConfig(), ModelConfig()
    parser = OneLineParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher_dir", required=True, help="output folder")
    parser.add_argument("--teacher", default="small",
                        help=f"{', '.join(HUB_IDS)}, a hub id, or 'synthetic' (stand-in)")
    parser.add_argument("--teacher_path", help="local folder with the DA-V2 weights (offline)")
    parser.add_argument("--offline", action="store_true", help="never try to download")
    parser.add_argument("--input_size", type=int, default=DEFAULT_INPUT_SIZE,
                        help="teacher input short side (multiple of 14)")
    parser.add_argument("--data_path", default=data.data_path, help="KITTI raw root, as train.py")
    parser.add_argument("--split", default=data.split, help="training split whose train and val "
                        "frames get maps, as train.py")
    parser.add_argument("--splits_dir", default=data.splits_dir, help="as train.py")
    parser.add_argument("--png", action=argparse.BooleanOptionalAction, default=data.png,
                        help="read .png instead of .jpg frames, as train.py")
    parser.add_argument("--height", type=int, default=net.height,
                        help="height of the stored maps: train.py's --height")
    parser.add_argument("--width", type=int, default=net.width,
                        help="width of the stored maps: train.py's --width")
    parser.add_argument("--batch_size", type=int, default=4, help="images per teacher forward")
    parser.add_argument("--num_workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="image loading workers (default: 4, at most the machine's cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                        help="same as --device cpu")
    parser.add_argument("--shard", help="K/N: this process takes frames K, K+N, ... (K from 0)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic teacher draws")
    parser.add_argument("--noise", type=float, default=DEFAULT_NOISE, help="synthetic noise")
    parser.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    return parser


@cli("precompute_teacher.py")
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    for name in ("height", "width"):  # as train.py, before any map is computed
        if getattr(args, name) <= 0 or getattr(args, name) % 32:
            raise ConfigError(f"--{name} must be a positive multiple of 32 (as train.py "
                              f"needs), got {getattr(args, name)}")
    out_size = (args.height, args.width)
    shard = parse_shard(args.shard)
    frames = target_frames(args.split, args.splits_dir)
    manifest = {"output_size": list(out_size), "split": split_identity(args.split, args.splits_dir),
                "source": ["train", "val"]}
    if args.teacher == "synthetic":
        # the folder itself, as the split above: 'scene', './scene' and its absolute path agree
        data_path = shlex.quote(str(Path(args.data_path).resolve()))
        predictor = SyntheticTeacher(args.data_path, out_size, args.seed, args.noise)
        manifest.update(teacher="synthetic (true depth, random affine + noise)", input_size=None,
                        teacher_args=f"--teacher synthetic --seed {args.seed} "
                                     f"--noise {args.noise} --data_path {data_path}")
    else:
        device = str(resolve_device(args.device))  # one clear line when CUDA is missing
        if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
            device = f"cuda:{os.environ['LOCAL_RANK']}"
        try:
            teacher = load_teacher(args.teacher, args.teacher_path, args.input_size, device,
                                   local_files_only=args.offline)
        except (ValueError, TeacherUnavailableError) as exc:  # a bad --teacher / no weights
            raise UserError(str(exc)) from exc
        predictor = ImageTeacher(teacher, args.data_path, args.png, out_size)
        source = args.teacher_path or HUB_IDS.get(args.teacher, args.teacher)
        flags = f"--teacher_path {source}" if args.teacher_path else f"--teacher {args.teacher}"
        manifest.update(teacher=source, input_size=args.input_size,
                        teacher_args=f"{flags} --input_size {args.input_size}")
    summary = run_precompute(predictor, frames, args.teacher_dir, manifest, shard,
                             args.batch_size, args.num_workers, progress=not args.no_progress)
    print(f"teacher maps in {args.teacher_dir}: {summary}")
    return summary


if __name__ == "__main__":
    main()
