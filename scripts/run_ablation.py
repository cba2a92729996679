"""Train and evaluate every row of an ablation config set, per seed; write the results table.

    python scripts/run_ablation.py --configs configs/kitti --data_path kitti_data \
        --test_split eigen --gt_path splits/eigen/gt_depths.npz --log_dir runs/ablation \
        --set mypretrain=pretrained/lite-mono-pretrain.pth
    python scripts/run_ablation.py --configs configs/synthetic --data_path synthetic_kitti \
        --seeds 0 1 2

One row per YAML file of ``configs/<set>/`` (the report's ablation (README) of Lite-Mono, Zhang et
al., CVPR 2023: baseline, + spatial attention, + distillation, + fixed bins, + adaptive bins and
Chamfer). :func:`run_row` trains a row with :func:`litemono.engine.train` (what ``train.py``
runs) and scores its last weights folder with :func:`litemono.evaluation.predict_split` and
:func:`~litemono.evaluation.evaluate_predictions` (what ``evaluate_depth.py`` runs): median
scaling per image, 1e-3..80 m, the Garg crop. No training or metric code lives here.
``--untrained`` adds a first row: the first config's network as initialised, before any step.

Resumable per row and seed: a finished row leaves ``<log_dir>/<row>/results.json`` (written
atomically; with ``--seeds`` under ``<log_dir>/seed_<s>/<row>/``) holding its resolved config,
and a rerun reads it instead of training again, but only if the config asked for now is the
same (:func:`stale_changes`; operational options such as ``num_workers`` may differ). A row
made with other options is refused by name, or trained again from scratch with ``--rerun``. An
interrupted row continues from its ``checkpoints/last.pt`` (``--resume auto``) under the same
rule.

Seeds and significance (the report and upstream compare single runs whose differences are
~0.001 abs_rel): :func:`summarize` gives each row's mean and sample standard deviation over its
seeds and its paired difference to ``--baseline`` over the seeds both rows have, with a 95%
Student-t interval (mean +- t_{0.975, n-1} * sd / sqrt(n)). Writes ``<log_dir>/ablation.md``,
``.csv`` (the summary) and ``.json`` (every run).

Without ``--gt_path`` the data must be a synthetic scene (:mod:`litemono.data.synthetic`, rendered
with its defaults when ``--data_path`` does not exist yet, and its stand-in teacher maps made): its
dense true depth of camera 2 becomes the ground truth (:func:`write_true_depth_gt`).
scripts/demo.py uses this module's scene, teacher and ground-truth helpers.
"""
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import time
import typing
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import io  # noqa: E402
from litemono.checkpoint import save_weights_folder  # noqa: E402
from litemono.run import seed_everything  # noqa: E402
from litemono.config import FIELDS, Config, from_dict, load_yaml  # noqa: E402
from litemono.data.splits import parse_split_line, read_split_lines  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli, one_line  # noqa: E402
from litemono.metrics import METRIC_NAMES  # noqa: E402

RESULTS_FILE = "results.json"
UNTRAINED = "00_untrained"  # the row of the network as initialised, before any step
TABLE_COLUMNS = ("row", "seeds", "MACs (G)") + METRIC_NAMES
# options that may differ between a finished row and a rerun without changing its numbers
OPERATIONAL_OPTIONS = ("resume", "num_workers", "log_dir", "log_frequency", "cache_dir",
                       "allow_pickle")
# two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (any statistics table)
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
WEIGHTS_FOLDER = re.compile(r"^weights_(\d+)$")


class StaleResults(UserError, ValueError):
    """Rows on disk were made with other options than the ones asked for (a user error: the
    message says which rows and options, and that ``--rerun`` trains them again)."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of the table: a name and its resolved configuration.

    Attributes:
        name: the row label and run folder name (``--model_name``).
        cfg: the configuration to train; for :data:`UNTRAINED` the network is only built.
        trained: False for the untrained row.
    """

    name: str
    cfg: Config
    trained: bool = True


def config_files(location: str) -> List[Path]:
    """The row YAMLs of a config set: every ``*.yaml`` of a folder but ``base.yaml``, sorted;
    or a single file."""
    path = Path(location)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--configs: no such folder or file {location}")
    files = sorted(p for p in path.glob("*.yaml") if p.name != "base.yaml")
    if not files:
        raise FileNotFoundError(f"--configs {location}: no *.yaml row files (besides base.yaml)")
    return files


def load_rows(files: Sequence[Path], overrides: Mapping[str, Any], untrained: bool = False,
              seeds: Optional[Sequence[int]] = None) -> List[Row]:
    """Rows for config files, each with ``overrides`` (flat option names) applied on top.

    ``model_name`` comes from the file (or its stem); ``resume`` is set to ``auto`` so that an
    interrupted row continues. With ``untrained`` a first row builds the first file's network
    without training it. With ``seeds`` every row is repeated per seed (seed-major, so a whole
    table is done before the next seed starts), each in ``<log_dir>/seed_<s>/``.
    """
    rows = []
    for seed in [None] if seeds is None else seeds:
        seed_rows = []
        for path in files:
            options = {**load_yaml(str(path)), **overrides, "resume": "auto"}
            options.setdefault("model_name", path.stem)
            if seed is not None:
                options["seed"] = seed
                options["log_dir"] = str(Path(options.get("log_dir", "./tmp")) / f"seed_{seed}")
            seed_rows.append(Row(str(options["model_name"]), from_dict(options)))
        if untrained and seed_rows:
            first = seed_rows[0].cfg
            seed_rows.insert(0, Row(UNTRAINED, first.replace(model_name=UNTRAINED),
                                    trained=False))
        rows += seed_rows
    return rows


def row_dir(row: Row) -> Path:
    """``<log_dir>/<row>``: the run folder of one row and seed."""
    return Path(row.cfg.train.log_dir) / row.name


def stale_changes(row: Row) -> List[str]:
    """How the config recorded in the row's folder differs from the one asked for.

    The record is ``results.json``'s ``config`` (a finished row) or the run's ``config.yaml``
    (a started one); no record: nothing to compare, an empty list. Options in
    :data:`OPERATIONAL_OPTIONS` are not compared; one the record lacks (added to the code since)
    counts as its default.

    Returns:
        One ``"--name: recorded -> asked"`` line per differing option.
    """
    import yaml

    run = row_dir(row)
    if (run / RESULTS_FILE).is_file():
        recorded = json.loads((run / RESULTS_FILE).read_text()).get("config")
        if recorded is None:
            return [f"{run / RESULTS_FILE} records no config (an older runner's row)"]
    elif (run / "config.yaml").is_file():
        recorded = yaml.safe_load((run / "config.yaml").read_text())
    else:
        return []
    before = {k: v for section in recorded.values() for k, v in section.items()}
    before.update(before.pop("extra", None) or {})  # registered terms' options, as flat() has
    now = row.cfg.flat()
    # an option added to the code after the row was made counts as its default there
    before = {**{k: v for k, v in from_dict({}).flat().items() if k not in before}, **before}
    missing = object()
    return [f"--{name}: {before.get(name, '(unset)')!r} -> {now.get(name, '(unset)')!r}"
            for name in sorted(set(before) | set(now)) if name not in OPERATIONAL_OPTIONS
            and before.get(name, missing) != now.get(name, missing)]


def last_weights_folder(run: Path) -> Path:
    """``<run>/models/weights_<N>`` with the largest N."""
    found = [(int(m.group(1)), p) for p in (run / "models").glob("weights_*")
             if p.is_dir() and (m := WEIGHTS_FOLDER.match(p.name))]
    if not found:
        raise FileNotFoundError(f"{run}/models holds no weights_<epoch> folder: training "
                                "wrote no checkpoint")
    return max(found)[1]


def write_true_depth_gt(data_path: str, test_file: Path, output: Path) -> Path:
    """Ground truth of a synthetic scene's test lines: its dense true depth (metres, 0 = sky).

    Args:
        data_path: the scene root (``<folder>/image_02/true_depth/<frame>.npy`` per line).
        test_file: the split's ``test_files.txt``.
        output: the ``.npz`` to write (:func:`litemono.evaluation.save_gt_depths`).
    """
    from litemono.evaluation import save_gt_depths
    from litemono.teacher.synthetic import true_depth_path

    maps = []
    for line in read_split_lines(test_file):
        path = true_depth_path(data_path, parse_split_line(line))
        if not path.is_file():
            raise FileNotFoundError(f"--data_path {data_path}: no true depth {path}; is it a "
                                    "synthetic scene (scripts/make_synthetic_kitti.py)?")
        maps.append(np.load(path, allow_pickle=False).astype(np.float32))
    save_gt_depths(output, maps)
    return output


def evaluate_weights(weights: Path, cfg: Config, gt_depths: Sequence[np.ndarray],
                     eval_split: str = "eigen", test_split: Optional[str] = None
                     ) -> Dict[str, float]:
    """Score a weights folder on ``test_split`` (default: the test part of ``cfg``'s split).

    Args:
        weights: a ``weights_<N>`` folder. cfg: the row's configuration (data, depth range).
        gt_depths: one ground-truth map per test line. eval_split: ``eigen`` (Garg crop,
            1e-3..80 m) or ``eigen_benchmark``. test_split: a split name or folder with
            ``test_files.txt`` (KITTI rows train on eigen_zhou and test on eigen).

    Returns:
        the seven mean metrics, ``macs`` (thop convention), ``params`` and ``median_ratio``.
    """
    from litemono.device import resolve_device
    from litemono.evaluation import evaluate_predictions, predict_split
    from litemono.models.profile import count_macs, count_parameters

    device = resolve_device(cfg.train.device)
    disps, net = predict_split(str(weights), cfg.data.data_path, test_split or cfg.data.split,
                               cfg.data.splits_dir, device, batch_size=16, num_workers=0,
                               png=cfg.data.png, min_depth=cfg.loss.min_depth,
                               max_depth=cfg.loss.max_depth)
    result = evaluate_predictions(disps, gt_depths, eval_split)
    return {**result.mean, "median_ratio": float(np.median(result.ratios)),
            "macs": count_macs(net, net.height, net.width)["macs"],
            "params": count_parameters(net)}


def save_untrained(row: Row) -> Path:
    """Write the depth network exactly as the trainer initialises it (seeded, built first) to
    ``<run>/models/weights_0``."""
    from litemono.models.build import build_depth_network, depth_state_dicts

    seed_everything(row.cfg.train.seed)
    net = build_depth_network(dataclasses.replace(row.cfg.model, mypretrain=None))
    folder = Path(row.cfg.train.log_dir) / row.name / "models" / "weights_0"
    m = row.cfg.model
    save_weights_folder(folder, depth_state_dicts(net, m.height, m.width, row.cfg.data.use_stereo))
    return folder


def run_row(row: Row, gt_depths: Sequence[np.ndarray], eval_split: str = "eigen",
            test_split: Optional[str] = None, report=print) -> Dict[str, Any]:
    """Train (unless done) and evaluate one row; its results JSON is the resume marker.

    Returns:
        the metrics of :func:`evaluate_weights` plus ``row``, ``seed``, ``steps``,
        ``train_seconds``, ``final_loss`` (mean of the last 10 step losses), ``weights`` and
        ``config`` (the resolved config, :meth:`Config.to_dict`).
    """
    from litemono.engine import train

    run = row_dir(row)
    done = run / RESULTS_FILE
    if done.is_file():
        report(f"[{row.name}, seed {row.cfg.train.seed}] done before: reading {done}")
        return json.loads(done.read_text())
    start = time.perf_counter()
    steps, final_loss = 0, None
    if row.trained:
        result = train(row.cfg)
        steps = result.step
        tail = result.losses[-10:]
        final_loss = float(np.mean(tail)) if tail else None
        weights = last_weights_folder(run)
    else:
        weights = save_untrained(row)
    train_seconds = time.perf_counter() - start
    metrics = evaluate_weights(weights, row.cfg, gt_depths, eval_split, test_split)
    results = {"row": row.name, "seed": row.cfg.train.seed, "steps": steps,
               "train_seconds": round(train_seconds, 1), "final_loss": final_loss,
               "weights": str(weights), **metrics, "config": row.cfg.to_dict()}
    io.write_json(done, results)
    report(f"[{row.name}, seed {row.cfg.train.seed}] {steps} steps in {train_seconds:.0f} s: "
           f"abs_rel {metrics['abs_rel']:.4f}")
    return results


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: :data:`T_975` up to 30 degrees of freedom, beyond it the Cornish-Fisher
    expansion around the normal quantile (error < 1e-4 for df > 30)."""
    if df < 1:
        raise ValueError(f"a t-interval needs at least 1 degree of freedom, got {df}")
    if df <= len(T_975):
        return T_975[df - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def mean_interval(values: Sequence[float]) -> tuple:
    """(mean, sample std, 95% t half-width) of ``values``; std and half-width are None for
    fewer than two values."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None, None
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, t_quantile_975(n - 1) * std / math.sqrt(n)


def default_baseline(results: Sequence[Mapping[str, Any]]) -> Optional[str]:
    """The first trained row (the untrained row is no baseline)."""
    return next((r["row"] for r in results if r["row"] != UNTRAINED), None)


def summarize(results: Sequence[Mapping[str, Any]], baseline: Optional[str] = None
              ) -> List[Dict[str, Any]]:
    """Per row (in first-seen order): mean and spread over its seeds, and the paired
    difference to ``baseline`` (default :func:`default_baseline`).

    Args:
        results: one :func:`run_row` result per row and seed (``seed`` absent = one run).
        baseline: the row the others are compared with; it must be among ``results``.

    Returns:
        per row ``row``, ``seeds`` (sorted), ``macs``, ``steps``, ``train_seconds`` (means),
        ``mean`` / ``std`` (metric -> value; std None for one seed), and ``diff`` (metric ->
        (mean of row - baseline over the shared seeds, 95% t half-width or None)) with
        ``paired_seeds``; ``diff`` is empty for the baseline itself.
    """
    baseline = baseline or default_baseline(results)
    runs: Dict[str, Dict[Any, Mapping[str, Any]]] = {}
    for r in results:
        runs.setdefault(r["row"], {})[r.get("seed")] = r
    if baseline is not None and baseline not in runs:
        raise UserError(f"--baseline {baseline}: no such row (rows: {', '.join(runs)})")
    out = []
    for name, by_seed in runs.items():
        seeds = sorted(by_seed, key=lambda s: (s is None, s))
        row: Dict[str, Any] = {"row": name, "seeds": seeds, "mean": {}, "std": {}, "diff": {}}
        for key in ("macs", "steps", "train_seconds"):
            row[key] = mean_interval([float(by_seed[s][key]) for s in seeds])[0]
        for metric in METRIC_NAMES:
            row["mean"][metric], row["std"][metric], _ = mean_interval(
                [by_seed[s][metric] for s in seeds])
        shared = [s for s in seeds if baseline is not None and s in runs[baseline]]
        row["paired_seeds"] = shared if name != baseline else []
        if name != baseline and shared:
            for metric in METRIC_NAMES:
                mean, _, half = mean_interval([by_seed[s][metric] - runs[baseline][s][metric]
                                               for s in shared])
                row["diff"][metric] = (mean, half)
        out.append(row)
    return out


def markdown_table(results: Sequence[Mapping[str, Any]], baseline: Optional[str] = None) -> str:
    """The report's layout (README) (row, MACs (G), the seven metrics, 3 decimals) with a seeds
    column and ``mean ± std`` cells, then the paired differences to the baseline row."""
    summary = summarize(results, baseline)
    baseline = baseline or default_baseline(results)
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"]
    for r in summary:
        cells = [f"{r['mean'][n]:.3f}" + ("" if r["std"][n] is None else f" ± {r['std'][n]:.4f}")
                 for n in METRIC_NAMES]
        lines.append("| " + " | ".join([r["row"], str(len(r["seeds"])),
                                        f"{r['macs'] / 1e9:.3f}"] + cells) + " |")
    compared = [r for r in summary if r["diff"]]
    if not compared:
        return "\n".join(lines)
    lines += ["", f"Paired difference to {baseline} (row - baseline, mean over the seeds both "
              "rows have ± the half-width of its 95% t-interval; * marks an interval that "
              "excludes 0):", "",
              "| row | seeds | " + " | ".join(f"Δ {n}" for n in METRIC_NAMES) + " |",
              "|---|---:|" + "---:|" * len(METRIC_NAMES)]
    for r in compared:
        cells = []
        for n in METRIC_NAMES:
            mean, half = r["diff"][n]
            cells.append(f"{mean:+.4f}" if half is None else
                         f"{mean:+.4f} ± {half:.4f}" + ("*" if abs(mean) > half else ""))
        lines.append("| " + " | ".join([r["row"], str(len(r["paired_seeds"]))] + cells) + " |")
    return "\n".join(lines)


def csv_table(results: Sequence[Mapping[str, Any]], baseline: Optional[str] = None) -> str:
    """The summary as CSV, full precision: per row its seed count, MACs, per metric the mean
    (column named as the metric), ``_std``, ``_diff`` and ``_diff_ci95`` (half-width), the
    paired seed count, and mean steps and training seconds. Empty cells: not defined (one
    seed, or the baseline row)."""
    def cell(value):
        return "" if value is None else f"{value:.6f}"

    header = ["row", "seeds", "macs"]
    for n in METRIC_NAMES:
        header += [n, f"{n}_std", f"{n}_diff", f"{n}_diff_ci95"]
    header += ["paired_seeds", "steps", "train_seconds"]
    lines = [",".join(header)]
    for r in summarize(results, baseline):
        values = [r["row"], str(len(r["seeds"])), f"{r['macs']:.0f}"]
        for n in METRIC_NAMES:
            mean, half = r["diff"].get(n, (None, None))
            values += [cell(r["mean"][n]), cell(r["std"][n]), cell(mean), cell(half)]
        values += [str(len(r["paired_seeds"])), f"{r['steps']:g}", f"{r['train_seconds']:g}"]
        lines.append(",".join(values))
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[Mapping[str, Any]], folder: Path, stem: str = "results",
                 baseline: Optional[str] = None) -> Dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` (the summary) and ``<stem>.json`` (every run) into
    ``folder`` (atomically)."""
    folder = Path(folder)
    paths = {"md": folder / f"{stem}.md", "csv": folder / f"{stem}.csv",
             "json": folder / f"{stem}.json"}
    io.write_text(paths["md"], markdown_table(results, baseline) + "\n")
    io.write_text(paths["csv"], csv_table(results, baseline))
    io.write_json(paths["json"], list(results))
    return paths


def run_rows(rows: Sequence[Row], gt_path: Path, eval_split: str = "eigen",
             test_split: Optional[str] = None, report=print, rerun: bool = False
             ) -> List[Dict[str, Any]]:
    """:func:`run_row` for every row, in order, against the ground truth in ``gt_path``.

    Every row's recorded config is checked first (:func:`stale_changes`).

    Raises:
        StaleResults: rows made with other options, unless ``rerun``, which deletes their run
            folders and trains them again (rows that match stay done).
    """
    from litemono.evaluation import load_gt_depths

    stale = [(row, changes) for row in rows if (changes := stale_changes(row))]
    if stale and not rerun:
        row, changes = stale[0]
        more = f" (and {len(stale) - 1} more rows)" if len(stale) > 1 else ""
        raise StaleResults(f"{row_dir(row)} was made with other options{more}: "
                           f"{'; '.join(changes)}; train again with --rerun (deletes those "
                           "rows' run folders) or use another --log_dir")
    for row, changes in stale:
        report(f"[{row.name}, seed {row.cfg.train.seed}] --rerun: deleting {row_dir(row)} "
               f"({'; '.join(changes)})")
        shutil.rmtree(row_dir(row))
    gt_depths = load_gt_depths(gt_path)
    return [run_row(row, gt_depths, eval_split, test_split, report) for row in rows]


def _is_flat_list(name: str) -> bool:
    """Whether option ``name`` is a list of numbers or words (train.py's ``nargs='+'``)."""
    if name not in FIELDS:
        return False
    tp = FIELDS[name][2]
    if typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return typing.get_origin(tp) is list and typing.get_origin(typing.get_args(tp)[0]) is not list


def _scalar(text: str) -> Any:
    """JSON when it is JSON (``5e-6`` is a number there, text for YAML), else YAML."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        import yaml

        return yaml.safe_load(text)


def option_overrides(pairs: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings -> option dict, read as train.py reads the flag: VALUE is JSON
    when it is JSON, else YAML (``device=cuda``); a list option takes one value or several
    separated by spaces as on train.py's command line (``lr=0.0001``, ``lr="1e-4 5e-6 31 1e-4
    1e-5 31"``) or a JSON list (``lr=[1e-4]``)."""
    out: Dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}",
                            todo="write each option as KEY=VALUE")
        parsed = _scalar(value)
        if _is_flat_list(key) and not isinstance(parsed, list) and parsed is not None:
            parsed = [_scalar(word) for word in value.split()] or [parsed]
        out[key] = parsed
    return out


def ensure_synthetic_scene(data_path: str, report=print) -> None:
    """Render the default synthetic scene into ``data_path`` unless a complete one is there."""
    from litemono.data.synthetic import MANIFEST, make_synthetic_kitti

    if not (Path(data_path) / MANIFEST).is_file():
        report(f"rendering the synthetic scene into {data_path} (about a minute) ...")
    # also on a complete scene: it raises when the scene on disk was made with other settings
    # or by an older renderer (FORMAT_VERSION), instead of training on stale images
    make_synthetic_kitti(data_path)


def ensure_teacher(cfg: Config, teacher_args: Sequence[str] = ("--teacher", "synthetic"),
                   report=print) -> None:
    """Run ``precompute_teacher.py`` for ``cfg``'s ``--teacher_dir`` unless its manifest exists.

    Args:
        cfg: gives ``--teacher_dir``, ``--data_path``, ``--split`` and the size.
        teacher_args: which teacher (default the synthetic stand-in; e.g.
            ``["--teacher_path", folder]`` for local Depth Anything V2 weights).
    """
    from litemono.config import PROJECT_ROOT

    folder = cfg.data.teacher_dir
    if folder is None or (Path(folder) / "manifest.json").is_file():
        return
    report(f"precomputing pseudo-labels into {folder} ({' '.join(teacher_args)}) ...")
    command = [sys.executable, str(PROJECT_ROOT / "precompute_teacher.py"), *teacher_args,
               "--teacher_dir", folder, "--data_path", cfg.data.data_path,
               "--split", cfg.data.split, "--splits_dir", cfg.data.splits_dir,
               "--height", str(cfg.model.height), "--width", str(cfg.model.width),
               "--num_workers", "0", "--no_progress"]
    subprocess.run(command, check=True)


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
    p.add_argument("--untrained", action="store_true", help=f"also score the first row's "
                   f"network as initialised, row {UNTRAINED}: what training gained")
    args = p.parse_args(argv)
    overrides = {**option_overrides(args.set), "log_dir": args.log_dir}
    if args.data_path:
        overrides["data_path"] = args.data_path
    files = [f for location in args.configs for f in config_files(location)]
    rows = load_rows(files, overrides, untrained=args.untrained, seeds=args.seeds)
    names = list(dict.fromkeys(row.name for row in rows))
    if args.baseline and args.baseline not in names:
        raise UserError(f"--baseline {args.baseline}: no such row",
                        todo=f"choose one of {', '.join(names)}")
    data = rows[0].cfg.data
    if not args.gt_path and not Path(data.data_path).exists():  # the synthetic scene, not made yet
        ensure_synthetic_scene(data.data_path)
    gt_path = Path(args.gt_path) if args.gt_path else Path(args.log_dir) / "gt_depths.npz"
    if not gt_path.is_file():
        test_file = Path(args.test_split or data.split) / "test_files.txt"
        try:
            write_true_depth_gt(data.data_path, test_file, gt_path)
        except FileNotFoundError as exc:
            raise UserError(one_line(exc), todo="for KITTI give --gt_path") from None
    if not args.gt_path:  # the synthetic scene: make the stand-in teacher maps if missing
        for row in rows:
            ensure_teacher(row.cfg)
    results = run_rows(rows, gt_path, args.eval_split, args.test_split, rerun=args.rerun)
    paths = write_tables(results, Path(args.log_dir), "ablation", args.baseline)
    print(markdown_table(results, args.baseline))
    print(f"tables: {paths['md']}, {paths['csv']}")
    return results


if __name__ == "__main__":
    main()
