"""Write the ground-truth depth maps that evaluate_depth.py reads (monodepth2's export_gt_depth).

    python scripts/export_gt_depth.py --data_path kitti_data --split eigen
    python scripts/export_gt_depth.py --data_path kitti_data --split eigen_benchmark

eigen: the velodyne scan of each test frame projected into camera 2 at the native image size,
depth = the forward (velodyne x) distance, the nearest point kept where several land on one
pixel. eigen_benchmark: KITTI's annotated depth PNGs (uint16) divided by 256. The output is a
pickle-free .npz (litemono.evaluation.save_gt_depths), written atomically.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono.config import PROJECT_ROOT  # noqa: E402
from litemono.data.splits import read_split, split_file  # noqa: E402
from litemono.errors import OneLineParser, DataError, cli  # noqa: E402
from litemono.evaluation import EVAL_SPLITS, save_gt_depths  # noqa: E402
from litemono.io import remove_leftovers  # noqa: E402

# KITTI depth-benchmark PNGs store depth in metres times this factor (0 = no measurement)
BENCHMARK_PNG_SCALE = 256.0


def velodyne_gt(data_path: Path, folder: str, frame: int) -> np.ndarray:
    """(H, W) float32 depth from the frame's velodyne scan, 0 where no point lands."""
    from litemono.data.kitti_utils import generate_depth_map

    calib_dir = data_path / folder.split("/")[0]
    velo_path = data_path / folder / "velodyne_points" / "data" / f"{frame:010d}.bin"
    if not velo_path.is_file():
        raise FileNotFoundError(f"--data_path {data_path}: missing velodyne scan {velo_path}")
    return generate_depth_map(calib_dir, velo_path, cam=2, vel_depth=True).astype(np.float32)


def benchmark_gt(data_path: Path, folder: str, frame: int) -> np.ndarray:
    """(H, W) float32 depth from KITTI's annotated depth map of camera 2."""
    png = data_path / folder / "proj_depth" / "groundtruth" / "image_02" / f"{frame:010d}.png"
    if not png.is_file():
        raise FileNotFoundError(f"--data_path {data_path}: missing annotated depth {png} "
                                "(unpack KITTI's data_depth_annotated into the raw folders)")
    with Image.open(png) as image:
        return np.asarray(image, dtype=np.float32) / BENCHMARK_PNG_SCALE


@cli("export_gt_depth.py")
def main(argv=None) -> Path:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_path", required=True, help="KITTI raw root")
    parser.add_argument("--split", required=True, choices=EVAL_SPLITS,
                        help="eigen (velodyne scans) or eigen_benchmark (annotated depth PNGs)")
    parser.add_argument("--splits_dir", default=str(PROJECT_ROOT / "splits"),
                        help="folder holding the named splits")
    parser.add_argument("--split_file",
                        help="test list (default <splits_dir>/<split>/test_files.txt, verified)")
    parser.add_argument("--output", help="default <splits_dir>/<split>/gt_depths.npz")
    args = parser.parse_args(argv)
    source = args.split_file or split_file(args.split, args.splits_dir, "test")
    entries = read_split(source)  # a malformed line is named <file>:<line number>
    if not entries:
        raise DataError(f"the test split has no lines, {source}, list the test frames there "
                        "(or pass another --split_file)")
    read_gt = velodyne_gt if args.split == "eigen" else benchmark_gt
    maps = [read_gt(Path(args.data_path), entry.folder, entry.frame_index) for entry in entries]
    output = Path(args.output or Path(args.splits_dir) / args.split / "gt_depths.npz")
    remove_leftovers(output.parent, [output.name])  # temporary files of an earlier, killed run
    save_gt_depths(output, maps, split=args.split)
    print(f"wrote {len(maps)} {args.split} ground-truth maps to {output}")
    return output


if __name__ == "__main__":
    main()
