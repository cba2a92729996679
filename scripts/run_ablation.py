"""Train and evaluate every row of an ablation config set; write the results table.

    python scripts/run_ablation.py --configs configs/kitti --data_path kitti_data \
        --test_split eigen --gt_path splits/eigen/gt_depths.npz --log_dir runs/ablation
    python scripts/run_ablation.py --configs configs/synthetic --data_path synthetic_kitti

Each row trains with litemono.engine.train (train.py's code path) and is scored with
litemono.evaluation (evaluate_depth.py's). Resumable per row: a row with
``<log_dir>/<row>/results.json`` is skipped, an interrupted one continues from its last.pt.
Writes ``<log_dir>/ablation.md``, ``.csv`` and ``.json``. Without ``--gt_path`` the data must be a
synthetic scene, whose dense true depth becomes the ground truth.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import ablation  # noqa: E402
from litemono.config import ConfigError  # noqa: E402
from litemono.errors import cli  # noqa: E402


@cli("run_ablation.py")
def main(argv=None) -> list:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", required=True, help="row YAML folder(s) or file(s)")
    p.add_argument("--data_path", help="overrides the configs' --data_path")
    p.add_argument("--log_dir", default="runs/ablation")
    p.add_argument("--gt_path", help="gt_depths.npz of the test split (scripts/export_gt_depth.py)")
    p.add_argument("--test_split", help="split name or folder with test_files.txt "
                   "(default: the training split's folder)")
    p.add_argument("--eval_split", default="eigen", choices=("eigen", "eigen_benchmark"))
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="more options for every row")
    args = p.parse_args(argv)
    try:
        overrides = {**ablation.option_overrides(args.set), "log_dir": args.log_dir}
        if args.data_path:
            overrides["data_path"] = args.data_path
        files = [f for location in args.configs for f in ablation.config_files(location)]
        rows = ablation.load_rows(files, overrides)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        p.error(str(exc))
    gt_path = Path(args.gt_path) if args.gt_path else Path(args.log_dir) / "gt_depths.npz"
    if not gt_path.is_file():
        data = rows[0].cfg.data
        test_file = Path(args.test_split or data.split) / "test_files.txt"
        try:
            ablation.write_true_depth_gt(data.data_path, test_file, gt_path)
        except FileNotFoundError as exc:
            p.error(f"{exc} (for KITTI give --gt_path)")
    if not args.gt_path:  # the synthetic scene: make the stand-in teacher maps if missing
        for row in rows:
            ablation.ensure_teacher(row.cfg)
    results = ablation.run_rows(rows, gt_path, args.eval_split, args.test_split)
    paths = ablation.write_tables(results, Path(args.log_dir), "ablation")
    print(ablation.markdown_table(results))
    print(f"tables: {paths['md']}, {paths['csv']}")
    return results


if __name__ == "__main__":
    main()
