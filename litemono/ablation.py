"""Ablation rows: train a configuration, score it on the test split, tabulate the rows.

The seed report's ablation of Lite-Mono (Zhang et al., CVPR 2023) has one row per YAML file in
``configs/<set>/`` (baseline, + spatial attention, + distillation, + fixed bins, + adaptive bins
and Chamfer). :func:`run_row` trains a row through the trainer's own code path
(:func:`litemono.engine.train`, what ``train.py`` runs) and scores its last weights folder with
the evaluation's own functions (:func:`litemono.evaluation.predict_split` and
:func:`~litemono.evaluation.evaluate_predictions`, what ``evaluate_depth.py`` runs): median
scaling per image, 1e-3..80 m, the Garg crop. No training or metric code lives here.

Resumable per row: a finished row leaves ``<log_dir>/<row>/results.json`` (written atomically)
and a rerun reads it instead of training again; an interrupted row continues from its
``checkpoints/last.pt`` (``--resume auto``).

On the synthetic scene (:mod:`litemono.data.synthetic`) the ground truth is the scene's dense
true depth of camera 2 (:func:`write_true_depth_gt`), not a sparse velodyne projection.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch

from . import io
from .checkpoint import save_weights_folder, seed_everything
from .config import Config, from_dict, load_yaml
from .data.splits import parse_split_line, read_split_lines
from .metrics import METRIC_NAMES

RESULTS_FILE = "results.json"
UNTRAINED = "00_untrained"  # the row of the network as initialised, before any step
TABLE_COLUMNS = ("row", "MACs (G)") + METRIC_NAMES
_WEIGHTS_FOLDER = re.compile(r"^weights_(\d+)$")


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


def load_rows(files: Sequence[Path], overrides: Mapping[str, Any],
              untrained: bool = False) -> List[Row]:
    """Rows for config files, each with ``overrides`` (flat option names) applied on top.

    ``model_name`` comes from the file (or its stem); ``resume`` is set to ``auto`` so that an
    interrupted row continues. With ``untrained`` a first row builds the first file's network
    without training it.
    """
    rows = []
    for path in files:
        options = {**load_yaml(str(path)), **overrides, "resume": "auto"}
        options.setdefault("model_name", path.stem)
        rows.append(Row(str(options["model_name"]), from_dict(options)))
    if untrained and rows:
        first = rows[0].cfg
        rows.insert(0, Row(UNTRAINED, first.replace(model_name=UNTRAINED), trained=False))
    return rows


def last_weights_folder(run: Path) -> Path:
    """``<run>/models/weights_<N>`` with the largest N."""
    found = [(int(m.group(1)), p) for p in (run / "models").glob("weights_*")
             if p.is_dir() and (m := _WEIGHTS_FOLDER.match(p.name))]
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
    from .evaluation import save_gt_depths
    from .teacher.synthetic import true_depth_path

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
    from .evaluation import evaluate_predictions, predict_split
    from .models.profile import count_macs, count_parameters

    device = torch.device("cuda" if cfg.train.device in ("auto", "cuda") and
                          torch.cuda.is_available() else "cpu")
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
    from .models.build import build_depth_network, depth_state_dicts

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
        the metrics of :func:`evaluate_weights` plus ``row``, ``steps``, ``train_seconds``,
        ``final_loss`` (mean of the last 10 step losses) and ``weights``.
    """
    from .engine import train

    run = Path(row.cfg.train.log_dir) / row.name
    done = run / RESULTS_FILE
    if done.is_file():
        report(f"[{row.name}] done before: reading {done}")
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
    results = {"row": row.name, "steps": steps, "train_seconds": round(train_seconds, 1),
               "final_loss": final_loss, "weights": str(weights), **metrics}
    io.write_json(done, results)
    report(f"[{row.name}] {steps} steps in {train_seconds:.0f} s: abs_rel "
           f"{metrics['abs_rel']:.4f}")
    return results


def markdown_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The seed report's layout: row, MACs (G), then the seven metrics (3 decimals)."""
    lines = ["| " + " | ".join(TABLE_COLUMNS) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(TABLE_COLUMNS) - 1)) + "|"]
    for r in results:
        values = [r["row"], f"{r['macs'] / 1e9:.3f}"] + [f"{r[n]:.3f}" for n in METRIC_NAMES]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def csv_table(results: Sequence[Mapping[str, Any]]) -> str:
    """The same table as CSV, full precision, plus steps and training seconds."""
    header = ("row", "macs", *METRIC_NAMES, "steps", "train_seconds")
    lines = [",".join(header)]
    for r in results:
        lines.append(",".join([r["row"], f"{r['macs']:.0f}"] + [f"{r[n]:.6f}" for n in METRIC_NAMES]
                              + [str(r["steps"]), str(r["train_seconds"])]))
    return "\n".join(lines) + "\n"


def write_tables(results: Sequence[Mapping[str, Any]], folder: Path,
                 stem: str = "results") -> Dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.json`` into ``folder`` (atomically)."""
    folder = Path(folder)
    paths = {"md": folder / f"{stem}.md", "csv": folder / f"{stem}.csv",
             "json": folder / f"{stem}.json"}
    io.write_text(paths["md"], markdown_table(results) + "\n")
    io.write_text(paths["csv"], csv_table(results))
    io.write_json(paths["json"], list(results))
    return paths


def run_rows(rows: Sequence[Row], gt_path: Path, eval_split: str = "eigen",
             test_split: Optional[str] = None, report=print) -> List[Dict[str, Any]]:
    """:func:`run_row` for every row, in order, against the ground truth in ``gt_path``."""
    from .evaluation import load_gt_depths

    gt_depths = load_gt_depths(gt_path)
    return [run_row(row, gt_depths, eval_split, test_split, report) for row in rows]


def option_overrides(pairs: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``KEY=VALUE`` strings -> option dict. VALUE is read as JSON when it is JSON (so
    ``lr=[1e-4]`` gives a float, which YAML would read as text), else as YAML (``device=cuda``)."""
    import yaml

    out: Dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = yaml.safe_load(value)
    return out


def ensure_synthetic_scene(data_path: str, report=print) -> None:
    """Render the default synthetic scene into ``data_path`` unless a complete one is there."""
    from .data.synthetic import MANIFEST, make_synthetic_kitti

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
    import subprocess
    import sys

    from .config import PROJECT_ROOT

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
