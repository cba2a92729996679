"""Evaluate a depth model, or saved disparities, on KITTI's eigen / eigen_benchmark test split.

Upstream's protocol (monodepth2 / Lite-Mono ``evaluate_depth.py``, see litemono/evaluation.py):
    python evaluate_depth.py --load_weights_folder W --data_path kitti_data --eval_split eigen
    python evaluate_depth.py --ext_disp_to_eval disps.npy --gt_path gt_depths.npz
The last line printed is a JSON object with the seven mean metrics.
"""
import argparse
import json
import zipfile
from pathlib import Path

import numpy as np

from litemono import io
from litemono.config import PROJECT_ROOT
from litemono.errors import UserError, cli
from litemono.evaluation import (EVAL_SPLITS, depth_range, evaluate_predictions,
                                 format_metrics_table, load_gt_depths, predict_split,
                                 write_metrics_csv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--load_weights_folder", help="folder with encoder.pth and depth.pth")
    p.add_argument("--ext_disp_to_eval", help="evaluate these saved scaled disparities (.npy)")
    p.add_argument("--eval_split", default="eigen", choices=EVAL_SPLITS)
    p.add_argument("--data_path", default=str(PROJECT_ROOT / "kitti_data"), help="KITTI raw root")
    p.add_argument("--splits_dir", default=str(PROJECT_ROOT / "splits"))
    p.add_argument("--split_folder", help="a folder with test_files.txt to use instead of "
                   "<splits_dir>/<eval_split> (not checksum-verified)")
    p.add_argument("--png", action="store_true", help="read .png frames instead of .jpg")
    p.add_argument("--gt_path",
                   help="ground truth (default <splits_dir>/<eval_split>/gt_depths.npz)")
    p.add_argument("--allow_pickle", action="store_true",
                   help="accept upstream's object-array gt file (unpickling can run code)")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--num_workers", type=int, default=2)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--post_process", action="store_true", help="average with the flipped image")
    p.add_argument("--disable_median_scaling", action="store_true")
    p.add_argument("--pred_depth_scale_factor", type=float, default=1.0,
                   help="multiply predicted depth (5.4 for stereo-trained models)")
    p.add_argument("--min_depth", type=float, help="disp_to_depth range (default: the training "
                   "run's, from <weights>/../opt.json, else 0.1)")
    p.add_argument("--max_depth", type=float, help="disp_to_depth range (default: the training "
                   "run's, else 100)")
    p.add_argument("--save_pred_disps", action="store_true",
                   help="write <load_weights_folder>/disps_<eval_split>_split.npy")
    p.add_argument("--per_image_csv", help="write per-image metrics to this CSV file")
    return p


def predict_with_model(args, parser):
    """Scaled disparities of the test split, and the model's parameter and MAC counts."""
    import torch

    from litemono.models.profile import count_macs, count_parameters

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu")
                          if args.device == "auto" else args.device)
    min_depth, max_depth, note = depth_range(args.load_weights_folder, args.min_depth,
                                             args.max_depth)
    print(f"disp_to_depth range {min_depth:g}..{max_depth:g} m ({note})")
    try:
        pred_disps, depth_net = predict_split(
            args.load_weights_folder, args.data_path, args.split_folder or args.eval_split,
            args.splits_dir, device, args.batch_size, args.num_workers, args.post_process,
            args.png, min_depth, max_depth)
    except (OSError, ValueError) as exc:
        parser.error(str(exc))
    if args.save_pred_disps:
        out = Path(args.load_weights_folder) / f"disps_{args.eval_split}_split.npy"
        io.save_npy(out, pred_disps)
        print(f"saved predicted disparities to {out}")
    macs = count_macs(depth_net, depth_net.height, depth_net.width)["macs"]  # profiled once
    return pred_disps, count_parameters(depth_net), macs


@cli("evaluate_depth.py")
def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.ext_disp_to_eval is None) == (args.load_weights_folder is None):
        parser.error("give exactly one of --load_weights_folder and --ext_disp_to_eval")
    gt_path = args.gt_path or Path(args.splits_dir) / args.eval_split / "gt_depths.npz"
    try:
        gt_depths = load_gt_depths(gt_path, allow_pickle=args.allow_pickle)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"--gt_path {gt_path}: cannot read it ({exc})", None,
                        "write it again with scripts/export_gt_depth.py") from exc
    params = macs = None
    if args.ext_disp_to_eval:
        try:
            pred_disps = np.load(args.ext_disp_to_eval, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UserError(f"--ext_disp_to_eval {args.ext_disp_to_eval}: cannot read it ({exc})",
                            None, "give a .npy file of N scaled disparities") from exc
    else:
        pred_disps, params, macs = predict_with_model(args, parser)
    try:
        result = evaluate_predictions(pred_disps, gt_depths, args.eval_split,
                                      median_scaling=not args.disable_median_scaling,
                                      scale_factor=args.pred_depth_scale_factor)
    except ValueError as exc:
        parser.error(str(exc))
    if result.ratios is not None:
        med = float(np.median(result.ratios))
        print(f"scaling ratios | median: {med:.3f} | std: {np.std(result.ratios / med):.3f}")
    print(format_metrics_table(result.mean, params, macs))
    if args.per_image_csv:
        write_metrics_csv(args.per_image_csv, result.per_image)
    print(json.dumps(result.mean))
    return result.mean


if __name__ == "__main__":
    main()
