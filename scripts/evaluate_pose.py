"""Evaluate a pose network on KITTI odometry sequence 09 or 10 (monodepth2's evaluate_pose.py).

    python scripts/evaluate_pose.py --load_weights_folder W --data_path kitti_odom \
        --eval_split odom_9

Reads ``<splits_dir>/odom/test_files_09.txt`` (one line per frame pair i, i+1: as many lines
as the sequence has frames minus one), the images under
``<data_path>/sequences/09/image_2`` and the ground truth ``<data_path>/poses/09.txt``, and
prints the mean and std of the scale-aligned ATE over 5-frame snippets (litemono/pose_eval.py);
the last line is a JSON object. Pose weights: ``pose_encoder.pth`` + ``pose.pth``
(separate_resnet), or ``pose.pth`` alone with the depth encoder in ``encoder.pth`` (shared).
"""
import json
import sys
from pathlib import Path

from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import io  # noqa: E402
from litemono.config import PROJECT_ROOT  # noqa: E402
from litemono.data.kitti import KITTIOdomDataset  # noqa: E402
from litemono.data.splits import read_split_lines  # noqa: E402
from litemono.device import DEVICE_HELP, resolve_device  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.models.build import load_pose_network  # noqa: E402
from litemono.pose_eval import (evaluate_ate, predict_relative_poses,  # noqa: E402
                                read_odometry_poses, relative_poses)

SEQUENCES = {"odom_9": 9, "odom_10": 10}


@cli("evaluate_pose.py")
def main(argv=None) -> dict:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load_weights_folder", required=True,
                        help="folder with pose.pth (+ pose_encoder.pth, or encoder.pth if shared)")
    parser.add_argument("--data_path", required=True, help="KITTI odometry root")
    parser.add_argument("--eval_split", default="odom_9", choices=sorted(SEQUENCES),
                        help="odometry sequence to evaluate (default: odom_9)")
    parser.add_argument("--splits_dir", default=str(PROJECT_ROOT / "splits"),
                        help="folder holding odom/test_files_NN.txt")
    parser.add_argument("--split_file", help="default <splits_dir>/odom/test_files_NN.txt")
    parser.add_argument("--height", type=int, default=192, help="network input height")
    parser.add_argument("--width", type=int, default=640, help="network input width")
    parser.add_argument("--num_layers", type=int, default=18, help="pose ResNet depth")
    parser.add_argument("--png", action="store_true", help="read .png instead of .jpg frames")
    parser.add_argument("--batch_size", type=int, default=16, help="frame pairs per forward")
    parser.add_argument("--num_workers", type=int, default=2, help="data loader workers")
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--no_cuda", action="store_true", help="same as --device cpu")
    parser.add_argument("--save_pred_poses", help="write the predicted (N, 4, 4) motions (.npy)")
    args = parser.parse_args(argv)
    sequence = SEQUENCES[args.eval_split]
    split = args.split_file or Path(args.splits_dir) / "odom" / f"test_files_{sequence:02d}.txt"
    gt_path = Path(args.data_path) / "poses" / f"{sequence:02d}.txt"
    try:
        device = resolve_device(args.device, args.no_cuda)
        gt_motions = relative_poses(read_odometry_poses(gt_path))
        dataset = KITTIOdomDataset(args.data_path, read_split_lines(split), args.height,
                                   args.width, frame_ids=[0, 1], num_scales=1,
                                   img_ext=".png" if args.png else ".jpg", source=str(split))
        pose_net = load_pose_network(args.load_weights_folder, device, args.num_layers)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from exc
    loader = DataLoader(dataset, args.batch_size, shuffle=False, num_workers=args.num_workers)
    pred_motions = predict_relative_poses(pose_net, loader, device)
    if args.save_pred_poses:
        io.save_npy(args.save_pred_poses, pred_motions)
    try:
        mean, std, _ = evaluate_ate(pred_motions, gt_motions)
    except ValueError as exc:
        raise UserError(f"{exc} ({gt_path}, {split})") from exc
    print(f"Trajectory error: {mean:.3f}, std: {std:.3f}")
    result = {"ate_mean": mean, "ate_std": std}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
