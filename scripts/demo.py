"""The whole pipeline on the built-in synthetic KITTI scene: precompute -> train -> evaluate.

    pip install -e ".[test]" && python scripts/demo.py
    python scripts/demo.py --figure docs/demo.png    # also refresh the README's picture

No download; about 5 minutes on 2 CPU cores. Renders the scene (if absent), makes pseudo-labels
for it, trains lite-mono-tiny at 96x320 with distillation (configs/synthetic/03_pseudo_label.yaml)
through train.py for ``--num_steps``, evaluates it with evaluate_depth.py against the scene's true
depth, prints the metrics and writes ``<run>/demo.png`` (input | predicted disparity | true
disparity; ``--figure PATH`` writes the same picture to PATH too). ``tensorboard --logdir <run>``
shows the training curves.

Pseudo-labels come from Depth Anything V2 Small when its weights are here (``--teacher_path``,
or the Hugging Face cache), else from the scene's true disparity under a random affine map and
noise (``precompute_teacher.py --teacher synthetic``, a documented stand-in: not a real teacher).
"""
import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # run_ablation.py's helpers
import evaluate_depth  # noqa: E402
import train  # noqa: E402
import run_ablation as ablation  # noqa: E402
from litemono import io  # noqa: E402
from litemono.errors import OneLineParser, cli  # noqa: E402
from litemono.config import ConfigError, from_dict, load_yaml  # noqa: E402
from litemono.data.splits import parse_split_line, read_split_lines  # noqa: E402
from litemono.data.synthetic import SPLIT_FOLDER  # noqa: E402
from litemono.teacher.depth_anything import HUB_IDS  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "synthetic" / "03_pseudo_label.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_path", default="synthetic_kitti", help="synthetic scene root")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training YAML")
    p.add_argument("--log_dir", default="runs", help="the run folder is <log_dir>/<model_name>")
    p.add_argument("--model_name", default="demo", help="run name (resumed when it exists)")
    p.add_argument("--num_steps", type=int, default=300, help="training steps (~1 s each on CPU)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                   help="same as --device cpu")
    p.add_argument("--teacher_path", help="local Depth Anything V2 folder (config.json + weights)")
    p.add_argument("--figure", metavar="PATH",
                   help="also write the picture here (the README's is docs/demo.png)")
    return p


def choose_teacher(args, height: int, width: int):
    """(precompute_teacher.py arguments, teacher folder): DA-V2 Small if available, else the
    synthetic stand-in."""
    if args.teacher_path:
        return (["--teacher_path", args.teacher_path, "--offline"],
                f"{args.data_path}/teacher_da2_{height}x{width}")
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(HUB_IDS["small"], "config.json"), str):
        return ["--teacher", "small", "--offline"], f"{args.data_path}/teacher_da2_{height}x{width}"
    return ["--teacher", "synthetic"], f"{args.data_path}/teacher_{height}x{width}"


def write_panel(run: Path, weights: Path, data_path: str, split: str, height: int,
                width: int, figure: Optional[Path] = None) -> Path:
    """``<run>/demo.png`` (and ``figure`` when given): the first test frame, its predicted and
    its true disparity, side by side; each disparity coloured over its own range (sky, with no
    depth, is black). Returns ``<run>/demo.png``."""
    from PIL import Image

    from compare import colour_cell, draw_grid, true_disparity
    from litemono.teacher.synthetic import true_depth_path

    line = parse_split_line(read_split_lines(Path(split) / "test_files.txt")[0])
    image_path = Path(data_path) / line.folder / "image_02" / "data" / f"{line.frame_index:010d}.jpg"
    rgb = Image.open(image_path).convert("RGB").resize((width, height), Image.LANCZOS)
    pred = np.load(weights / "disps_eigen_split.npy")[0]  # (h, w) scaled disparity
    true_disp = true_disparity(np.load(true_depth_path(data_path, line)), height, width)
    strip = draw_grid([[np.asarray(rgb), colour_cell(pred), colour_cell(true_disp)]])
    out = run / "demo.png"
    for path in [out] + ([Path(figure)] if figure else []):
        with io.atomic_write(path) as handle:
            Image.fromarray(strip).save(handle, format="PNG", optimize=True)
    return out


@cli("demo.py")
def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    split = str(Path(args.data_path) / SPLIT_FOLDER)
    try:
        size = load_yaml(args.config)
        teacher_args, teacher_dir = choose_teacher(args, size["height"], size["width"])
        overrides = dict(data_path=args.data_path, split=split, log_dir=args.log_dir,
                         model_name=args.model_name, num_steps=args.num_steps,
                         device=args.device, resume="auto")
        if size.get("distill_weight") or size.get("chamfer_weight"):
            overrides["teacher_dir"] = teacher_dir
        cfg = from_dict({**size, **overrides})
    except (ConfigError, KeyError) as exc:
        parser.error(f"--config {args.config}: {exc}")
    print("== 1/4 synthetic scene")
    ablation.ensure_synthetic_scene(args.data_path)
    print(f"== 2/4 pseudo-labels: {' '.join(teacher_args)}")
    ablation.ensure_teacher(cfg, teacher_args)
    print(f"== 3/4 training {args.num_steps} steps (train.py --config {args.config})")
    code = train.main([f"--{k}={v}" for k, v in overrides.items()] + ["--config", args.config])
    if code != 0:
        raise SystemExit(code)
    run = Path(args.log_dir) / args.model_name
    weights = ablation.last_weights_folder(run)
    gt_path = ablation.write_true_depth_gt(args.data_path, Path(split) / "test_files.txt",
                                           run / "gt_depths.npz")
    print(f"== 4/4 evaluating {weights} (evaluate_depth.py)")
    metrics = evaluate_depth.main([
        "--load_weights_folder", str(weights), "--data_path", args.data_path,
        "--split_folder", split, "--gt_path", str(gt_path), "--save_pred_disps",
        "--num_workers", "0", "--device", args.device])
    panel = write_panel(run, weights, args.data_path, split, cfg.model.height, cfg.model.width,
                        args.figure)
    print(f"\nimage (input | predicted disparity | true disparity): {panel}")
    if args.figure:
        print(f"the same image: {args.figure}")
    print(f"tensorboard --logdir {run}")
    return metrics


if __name__ == "__main__":
    main()
