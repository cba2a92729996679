"""Train and evaluate every row of an ablation config set, per seed; write the results table.

    python scripts/run_ablation.py --configs configs/kitti --data_path kitti_data \
        --test_split eigen --gt_path splits/eigen/gt_depths.npz --log_dir runs/ablation \
        --set mypretrain=pretrained/lite-mono-pretrain.pth
    python scripts/run_ablation.py --configs configs/synthetic --data_path synthetic_kitti \
        --seeds 0 1 2

Each row trains with litemono.engine.train (train.py's code path) and is scored with
litemono.evaluation (evaluate_depth.py's). Resumable per row and seed: a row whose
``results.json`` records the same resolved config is read, not trained; an interrupted one
continues from its last.pt; one made with other options is refused by name (``--rerun`` trains
it again). With ``--seeds`` every row runs once per seed (``<log_dir>/seed_<s>/<row>``) and the
table gives mean +- std over seeds and each row's paired difference to ``--baseline`` with a
95% t-interval. Writes ``<log_dir>/ablation.md``, ``.csv`` (summary) and ``.json`` (every run).
Without ``--gt_path`` the data must be a synthetic scene, whose dense true depth becomes the
ground truth.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import ablation  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli, one_line  # noqa: E402


@cli("run_ablation.py")
def main(argv=None) -> list:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", required=True, help="row YAML folder(s) or file(s)")
    p.add_argument("--data_path", help="overrides the configs' --data_path")
    p.add_argument("--log_dir", default="runs/ablation", help="runs and tables go here")
    p.add_argument("--gt_path", help="gt_depths.npz of the test split (scripts/export_gt_depth.py)")
    p.add_argument("--test_split", help="split name or folder with test_files.txt "
                   "(default: the training split's folder)")
    p.add_argument("--eval_split", default="eigen", choices=("eigen", "eigen_benchmark"),
                   help="evaluation protocol of --gt_path (eigen: Garg crop, 1e-3..80 m; eigen_benchmark: the improved gt)")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                   help="more options for every row, spelt as train.py's flags (lr=0.0001)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                   help="run every row once per seed (default: once, with the configs' seed)")
    p.add_argument("--baseline", help="row the paired differences compare with "
                   "(default: the first row)")
    p.add_argument("--rerun", action="store_true", help="train rows again whose results were "
                   "made with other options (deletes their run folders)")
    args = p.parse_args(argv)
    overrides = {**ablation.option_overrides(args.set), "log_dir": args.log_dir}
    if args.data_path:
        overrides["data_path"] = args.data_path
    files = [f for location in args.configs for f in ablation.config_files(location)]
    rows = ablation.load_rows(files, overrides, seeds=args.seeds)
    names = list(dict.fromkeys(row.name for row in rows))
    if args.baseline and args.baseline not in names:
        raise UserError(f"--baseline {args.baseline}: no such row",
                        todo=f"choose one of {', '.join(names)}")
    gt_path = Path(args.gt_path) if args.gt_path else Path(args.log_dir) / "gt_depths.npz"
    if not gt_path.is_file():
        data = rows[0].cfg.data
        test_file = Path(args.test_split or data.split) / "test_files.txt"
        try:
            ablation.write_true_depth_gt(data.data_path, test_file, gt_path)
        except FileNotFoundError as exc:
            raise UserError(one_line(exc), todo="for KITTI give --gt_path") from None
    if not args.gt_path:  # the synthetic scene: make the stand-in teacher maps if missing
        for row in rows:
            ablation.ensure_teacher(row.cfg)
    results = ablation.run_rows(rows, gt_path, args.eval_split, args.test_split,
                                rerun=args.rerun)
    paths = ablation.write_tables(results, Path(args.log_dir), "ablation", args.baseline)
    print(ablation.markdown_table(results, args.baseline))
    print(f"tables: {paths['md']}, {paths['csv']}")
    return results


if __name__ == "__main__":
    main()
