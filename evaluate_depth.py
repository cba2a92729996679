"""Evaluate a depth model, or saved disparities, on KITTI's eigen / eigen_benchmark test split.

Upstream's protocol (monodepth2 / Lite-Mono ``evaluate_depth.py``, see litemono/evaluation.py):
    python evaluate_depth.py --load_weights_folder W --data_path kitti_data --eval_split eigen
    python evaluate_depth.py --ext_disp_to_eval disps.npy --gt_path gt_depths.npz
    python evaluate_depth.py --load_weights_folder W --eval_stereo   # x5.4, no median scaling
The last line printed is a JSON object with the seven mean metrics. A gt file of the other
split (by its label, or upstream's by its 697 / 652 maps) is refused.
"""
import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from litemono import io
from litemono.config import PROJECT_ROOT
from litemono.data.splits import read_split_lines
from litemono.device import DEVICE_HELP, resolve_device
from litemono.errors import OneLineParser, UserError, cli, one_line
from litemono.evaluation import (EVAL_SPLITS, STEREO_SCALE_FACTOR, check_gt_split, depth_range,
                                 evaluate_predictions, format_metrics_table, gt_split,
                                 load_gt_depths, predict_split, write_metrics_csv)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--load_weights_folder", help="folder with encoder.pth and depth.pth")
    p.add_argument("--ext_disp_to_eval", help="evaluate these saved scaled disparities (.npy)")
    p.add_argument("--eval_split", default="eigen", choices=EVAL_SPLITS,
                   help="eigen: 697 frames, velodyne gt, Garg crop, 1e-3..80 m; "
                   "eigen_benchmark: 652 frames, KITTI's annotated depth (default: eigen)")
    p.add_argument("--data_path", default=str(PROJECT_ROOT / "kitti_data"), help="KITTI raw root")
    p.add_argument("--splits_dir", default=str(PROJECT_ROOT / "splits"),
                   help="folder holding <eval_split>/test_files.txt and gt_depths.npz")
    p.add_argument("--split_folder", help="a folder with test_files.txt to use instead of "
                   "<splits_dir>/<eval_split> (not checksum-verified)")
    p.add_argument("--png", action="store_true", help="read .png frames instead of .jpg")
    p.add_argument("--gt_path",
                   help="ground truth (default <splits_dir>/<eval_split>/gt_depths.npz)")
    p.add_argument("--allow_pickle", action="store_true",
                   help="accept upstream's object-array gt file (unpickling can run code)")
    p.add_argument("--batch_size", type=int, default=16, help="images per forward pass")
    p.add_argument("--num_workers", type=int, default=2, help="data loader worker processes")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
    p.add_argument("--post_process", action="store_true", help="average with the flipped image")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--eval_mono", action="store_true",
                      help="monocular model: per-image median scaling (the default)")
    mode.add_argument("--eval_stereo", action="store_true",
                      help=f"stereo-trained model: depth x {STEREO_SCALE_FACTOR}, no median "
                      "scaling (upstream's flag)")
    p.add_argument("--disable_median_scaling", action="store_true",
                   help="score the depth as predicted (metric models)")
    p.add_argument("--pred_depth_scale_factor", type=float,
                   help=f"multiply predicted depth (default 1; {STEREO_SCALE_FACTOR} with "
                   "--eval_stereo)")
    p.add_argument("--min_depth", type=float, help="disp_to_depth range (default: the weights "
                   "folder's, else <weights>/../opt.json, else 0.1)")
    p.add_argument("--max_depth", type=float, help="disp_to_depth range (default: the training "
                   "run's, else 100)")
    p.add_argument("--save_pred_disps", action="store_true",
                   help="write <load_weights_folder>/disps_<eval_split>_split.npy")
    p.add_argument("--per_image_csv", help="write per-image metrics to this CSV file (one row "
                   "per test image, named by its split line)")
    return p


def predict_with_model(args):
    """Scaled disparities of the test split, and the model's parameter and MAC counts."""
    from litemono.models.profile import count_macs, count_parameters

    device = resolve_device(args.device, args.no_cuda)
    min_depth, max_depth, note = depth_range(args.load_weights_folder, args.min_depth,
                                             args.max_depth)
    print(f"disp_to_depth range {min_depth:g}..{max_depth:g} m ({note})")
    try:
        pred_disps, depth_net = predict_split(
            args.load_weights_folder, args.data_path, args.split_folder or args.eval_split,
            args.splits_dir, device, args.batch_size, args.num_workers, args.post_process,
            args.png, min_depth, max_depth)
    except ValueError as exc:  # weights or split that do not fit: the message names them
        raise UserError(str(exc)) from exc
    if args.save_pred_disps:
        out = Path(args.load_weights_folder) / f"disps_{args.eval_split}_split.npy"
        io.save_npy(out, pred_disps)
        print(f"saved predicted disparities to {out}")
    macs = count_macs(depth_net, depth_net.height, depth_net.width)["macs"]  # profiled once
    return pred_disps, count_parameters(depth_net), macs


def image_names(args, count: int):
    """The test split's lines (the per-image CSV's names), when its file matches ``count``."""
    path = Path(args.split_folder or Path(args.splits_dir) / args.eval_split) / "test_files.txt"
    if not path.is_file():
        return None
    lines = read_split_lines(path)
    return lines if len(lines) == count else None


def scaling(args):
    """(median scaling on?, depth scale factor) from --eval_stereo and the explicit flags."""
    if not args.eval_stereo:
        return not args.disable_median_scaling, args.pred_depth_scale_factor or 1.0
    if args.pred_depth_scale_factor not in (None, STEREO_SCALE_FACTOR):
        raise UserError(f"--eval_stereo scales depth by {STEREO_SCALE_FACTOR}, "
                        f"--pred_depth_scale_factor {args.pred_depth_scale_factor}, drop one")
    print(f"stereo evaluation: median scaling off, depth x {STEREO_SCALE_FACTOR}")
    return False, STEREO_SCALE_FACTOR


def run(args) -> dict:
    if (args.ext_disp_to_eval is None) == (args.load_weights_folder is None):
        raise UserError("nothing or two things to evaluate, --load_weights_folder / "
                        "--ext_disp_to_eval, give exactly one")
    median_scaling, scale_factor = scaling(args)
    gt_path = args.gt_path or Path(args.splits_dir) / args.eval_split / "gt_depths.npz"
    if not Path(gt_path).is_file():
        raise UserError("no ground-truth file", f"--gt_path {gt_path}",
                        "write it with scripts/export_gt_depth.py")
    try:
        gt_depths = load_gt_depths(gt_path, allow_pickle=args.allow_pickle)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        reason = one_line(exc)
        # some reasons already say what to do; the hint is given once
        todo = (None if "export_gt_depth.py" in reason else
                "write it again with scripts/export_gt_depth.py")
        raise UserError(f"--gt_path {gt_path}: cannot read it ({reason})", None, todo) from exc
    check_gt_split(gt_depths, args.eval_split, gt_split(gt_path), gt_path)
    params = macs = None
    if args.ext_disp_to_eval:
        try:
            pred_disps = np.load(args.ext_disp_to_eval, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"--ext_disp_to_eval {args.ext_disp_to_eval}: cannot read it ({exc})",
                            None, "give a .npy file of N scaled disparities") from exc
    else:
        pred_disps, params, macs = predict_with_model(args)
    try:
        result = evaluate_predictions(pred_disps, gt_depths, args.eval_split,
                                      median_scaling=median_scaling, scale_factor=scale_factor)
    except ValueError as exc:  # predictions and ground truth that do not match
        raise UserError(str(exc)) from exc
    if result.ratios is not None:
        med = float(np.median(result.ratios))
        print(f"scaling ratios | median: {med:.3f} | std: {np.std(result.ratios / med):.3f}")
    print(format_metrics_table(result.mean, params, macs))
    if args.per_image_csv:
        write_metrics_csv(args.per_image_csv, result.per_image,
                          image_names(args, len(result.per_image)))
    print(json.dumps(result.mean))
    return result.mean


@cli("evaluate_depth.py")
def main(argv=None) -> dict:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
