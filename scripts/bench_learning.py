"""Does it learn? Train every ablation row for the same steps from the same seed and score it.

On the synthetic KITTI scene (known depth, no download), rows: the untrained network, then each
``configs/synthetic/*.yaml`` (photometric baseline, + spatial attention, + distillation from the
stand-in teacher, + fixed bins, + adaptive bins and Chamfer). Training is litemono.engine.train
(train.py's code path), scoring is litemono.evaluation (evaluate_depth.py's): per-image median
scaling, Garg crop, 1e-3..80 m, against the scene's dense true depth of the test frames.

    python scripts/bench_learning.py --num_steps 300 --log_dir runs/bench_learning
    python scripts/bench_learning.py --set num_workers=8 device=cuda   # any option, per row

Missing pieces are made first: the scene (scripts/make_synthetic_kitti.py defaults), the
stand-in teacher maps (precompute_teacher.py --teacher synthetic) and the gt file. Finished rows
are kept (<log_dir>/<row>/results.json); rerunning continues. Prints the table in the seed
report's layout (MACs, abs_rel ... a3) and, as the last line, a JSON object.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import ablation  # noqa: E402
from litemono.config import ConfigError  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["configs/synthetic"],
                   help="row YAML folder(s) or file(s)")
    p.add_argument("--data_path", default="synthetic_kitti", help="synthetic scene root")
    p.add_argument("--teacher_dir", help="pseudo-label folder (default: the configs' value)")
    p.add_argument("--log_dir", default="runs/bench_learning", help="runs and tables go here")
    p.add_argument("--num_steps", type=int, default=300, help="optimisation steps per row")
    p.add_argument("--seed", type=int, default=0, help="random seed of every row")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                   help="same as --device cpu")
    p.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="more options for every row")
    return p


def verdict(results):
    """The two claims of the issue, checked on the table."""
    by_row = {r["row"]: r for r in results}
    untrained = by_row.get(ablation.UNTRAINED)
    baseline = next((r for r in results if "baseline" in r["row"]), None)
    distill = next((r for r in results if "pseudo_label" in r["row"]), None)
    out = {}
    if untrained and baseline:
        out["baseline_abs_rel_over_untrained"] = baseline["abs_rel"] / untrained["abs_rel"]
        out["baseline_halves_abs_rel"] = baseline["abs_rel"] <= 0.5 * untrained["abs_rel"]
    if baseline and distill:
        out["distill_beats_baseline"] = distill["abs_rel"] < baseline["abs_rel"]
    return out


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_dir = Path(args.log_dir)
    try:
        overrides = {**ablation.option_overrides(args.set), "log_dir": str(log_dir),
                     "num_steps": args.num_steps, "seed": args.seed, "device": args.device,
                     "data_path": args.data_path,
                     "split": str(Path(args.data_path) / "splits" / "synthetic")}
        if args.teacher_dir:
            overrides["teacher_dir"] = args.teacher_dir
        ablation.ensure_synthetic_scene(args.data_path)
        files = [f for location in args.configs for f in ablation.config_files(location)]
        rows = ablation.load_rows(files, overrides, untrained=True)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    for row in rows:
        ablation.ensure_teacher(row.cfg)
    gt_path = log_dir / "gt_depths.npz"
    if not gt_path.is_file():
        ablation.write_true_depth_gt(args.data_path, Path(rows[0].cfg.data.split) / "test_files.txt",
                                     gt_path)
    results = ablation.run_rows(rows, gt_path)
    paths = ablation.write_tables(results, log_dir, "bench_learning")
    print(f"\nsynthetic scene, {args.num_steps} steps per row, seed {args.seed} "
          f"(tables: {paths['md']}, {paths['csv']})")
    print(ablation.markdown_table(results))
    summary = {"num_steps": args.num_steps, "seed": args.seed, **verdict(results),
               "rows": {r["row"]: {k: r[k] for k in ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1",
                                                     "a2", "a3", "macs", "train_seconds")}
                        for r in results}}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
