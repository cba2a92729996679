"""The run folder ``<log_dir>/<model_name>/``, seeding and the RNG streams.

Holds ``config.yaml``, ``models/opt.json`` (upstream's flat options dump),
``models/weights_<epoch>/`` and ``checkpoints/`` (:mod:`litemono.checkpoint`), ``train/``,
``val/``. A second ``train.py`` there is refused without ``--resume`` or ``--overwrite``."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch

from litemono import io
from litemono.config import Config
from litemono.errors import CheckpointError


def run_dir(cfg: Config) -> Path:
    """``<log_dir>/<model_name>``."""
    return Path(cfg.train.log_dir) / cfg.train.model_name


def write_run_config(cfg: Config) -> None:
    """Write ``config.yaml`` and upstream's flat ``models/opt.json`` into the run folder."""
    root = run_dir(cfg)
    io.write_text(root / "config.yaml", cfg.dump_yaml())
    options = cfg.flat()
    # upstream spells three switches negatively
    options.update(no_ssim=not cfg.loss.ssim, disable_automasking=not cfg.loss.automasking,
                   no_cuda=cfg.train.device == "cpu")
    io.write_json(root / "models" / "opt.json", options)


def resolve_resume(cfg: Config) -> Optional[Path]:
    """The training state ``--resume`` names: ``auto`` = ``<run>/checkpoints/last.pt`` if present
    (else None: a fresh start), a run folder, or a file."""
    value = cfg.train.resume
    if value is None:
        return None
    if value == "auto":
        last = run_dir(cfg) / "checkpoints" / "last.pt"
        return last if last.is_file() else None
    path = Path(value)
    if path.is_dir():
        path = path / "checkpoints" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"--resume {value}: no training state at {path}")
    return path


def check_fresh_start(cfg: Config) -> None:
    """Refuse to start from step 0 over a run that saved checkpoints (it would replace them).

    Raises:
        CheckpointError: naming the folder, ``--resume auto``, ``--model_name`` and
            ``--overwrite``."""
    if cfg.train.resume is not None or cfg.train.overwrite:
        return
    root = run_dir(cfg)
    saved = [p for p in (root / "checkpoints" / "last.pt", *sorted(root.glob("models/weights_*")))
             if p.exists()]
    if saved:
        raise CheckpointError(
            f"{root} already holds a run ({saved[0].relative_to(root)}), --model_name "
            f"{cfg.train.model_name}: continue it with --resume auto, pick a new --model_name, "
            "or start it again from step 0 with --overwrite")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) with ``--seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng(include_cuda: bool = True) -> Dict[str, Any]:
    """The torch / CUDA / numpy / python generator states as tensors and plain lists."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
             "python": [version, list(internal), gauss_next]}
    if include_cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
