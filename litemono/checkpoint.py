"""Weight folders and the training state: upstream's files, exact resume.

``models/weights_<epoch>/`` holds upstream Lite-Mono's files (``encoder.pth`` + our config and
depth range, ``depth.pth``, ``pose_encoder.pth``, ``pose.pth``; ``adam*.pth`` with
``--save_optimizer_in_weights``). ``checkpoints/last.pt`` / ``best.pt`` hold the complete state
(:func:`training_state`). Every file is written atomically; a weight folder is built under a
temporary name and renamed whole, and the engine commits ``last.pt`` last, so whatever it says is
done is on disk (docs/reliability.md). Reads use :func:`litemono.io.read_torch_file`."""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import torch

from litemono import io
from litemono.config import Config, ConfigError, from_dict
from litemono.errors import CheckpointError
from litemono.models.build import (CONFIG_ENTRY, NO_PRETRAIN, UPSTREAM_EXTRAS, depth_state_dicts,
                                   imagenet_file, load_imagenet_encoder, load_state_strict)
from litemono.run import capture_rng

FORMAT_VERSION = 1
# options that may differ between a run and its resumption without changing the numbers
# (--mypretrain and --load_weights_folder are not applied when resuming)
RESUME_FREE_OPTIONS = ("resume", "num_steps", "num_epochs", "log_frequency", "save_frequency",
                       "num_workers", "device", "mypretrain", "load_weights_folder", "log_dir",
                       "model_name", "mypretrain_required", "allow_pickle", "overwrite",
                       "keep_weights", "save_optimizer_in_weights", "check_data", "check_data_only",
                       "cache_dir", "imports")


# ----------------------------------------------------------------------------- weight folders

def save_weights_folder(folder: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``<name>.pth`` for each entry of ``files`` into ``folder`` as one atomic unit.

    Written into ``.tmp-<name>.<random>``, then renamed; an existing ``folder`` is first moved to
    ``.tmp-old.<random>``, so a kill leaves no folder of that name, never a stale one
    (:func:`litemono.io.remove_leftovers` clears the temporaries)."""
    folder = Path(folder)
    staging = io.make_temp_dir(folder.parent, folder.name)
    try:
        for name, obj in files.items():
            try:
                io.save_torch(dict(obj), staging / f"{name}.pth")
            except OSError as exc:  # name the folder being written, not its temporary name
                raise OSError(exc.errno, exc.strerror or str(exc),
                              str(folder / f"{name}.pth")) from exc
        if folder.exists():
            retired = io.make_temp_dir(folder.parent, "old")
            folder.rename(retired / folder.name)
            staging.rename(folder)
            shutil.rmtree(retired)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def weights_folders(models_dir: Path) -> List[Path]:
    """The ``weights_<epoch>`` folders of a run's ``models/``, oldest epoch first."""
    found = [p for p in Path(models_dir).glob("weights_*")
             if p.is_dir() and p.name.split("_", 1)[1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("_", 1)[1]))


def prune_weights_folders(models_dir: Path, keep: Optional[int], done: int) -> List[Path]:
    """Delete all but the newest ``keep`` committed weight folders (``--keep_weights``; None: all).

    Only ``weights_<e>`` with ``e < done`` count (:func:`committed_weights`). Each is renamed to
    ``.tmp-pruned-<name>.<random>`` before deletion, so a kill never leaves a half-deleted folder.
    Idempotent: run after every commit and on resume."""
    if keep is None:
        return []
    committed = [f for f in weights_folders(models_dir) if int(f.name.split("_", 1)[1]) < done]
    stale = committed[:-keep]
    for folder in stale:
        trash = io.make_temp_dir(models_dir, f"pruned-{folder.name}")
        folder.rename(trash / folder.name)
        shutil.rmtree(trash)
    return stale


def committed_weights(epoch: int, position: int) -> int:
    """How many epochs' weight folders a training state at ``(epoch, position)`` has committed:
    the finished epochs, plus the current one when ``--num_steps`` saved it mid-epoch."""
    return epoch + (1 if position > 0 else 0)


def load_weights_folder(folder: str, names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Read ``<folder>/<name>.pth`` for each name (on the CPU).

    Raises:
        CheckpointError: naming ``--load_weights_folder`` when a file is missing."""
    out = {}
    for name in names:
        path = Path(folder) / f"{name}.pth"
        if not path.is_file():
            raise CheckpointError(f"--load_weights_folder {folder}: no {name}.pth "
                                  "(see --models_to_load)")
        out[name] = io.read_torch_file(path, "--load_weights_folder")
    return out


def load_strict(module: torch.nn.Module, state: Mapping[str, Any], what: str) -> None:
    """:func:`load_state_strict`, raising :class:`CheckpointError` (weights of another variant
    or network are the user's file, not a bug)."""
    try:
        load_state_strict(module, state, what)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc


# ----------------------------------------------------------------------------- training state

def save_training_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write a training state (with :data:`FORMAT_VERSION`) atomically."""
    io.save_torch({**state, "format": FORMAT_VERSION}, path)


def load_training_state(path: Path) -> Dict[str, Any]:
    """Read a training state on the CPU; raises naming ``--resume`` on a foreign file."""
    state = io.read_torch_file(path, "--resume")
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"--resume {path}: not a litemono training state "
                              f"(format {FORMAT_VERSION})")
    return state


def changed_options(saved_config: Mapping[str, Any], cfg: Config) -> List[str]:
    """``"--name: old -> new"`` per option of ``cfg`` that differs from a state's config and changes
    the numbers (``--resume``, ``--num_steps``, logging, workers ... may differ)."""
    saved, now = from_dict(saved_config).flat(), cfg.flat()
    return [f"--{name}: {saved[name]!r} -> {value!r}" for name, value in now.items()
            if name not in RESUME_FREE_OPTIONS and saved[name] != value]


# ----------------------------------------------------------------------------- networks <-> files

def upstream_files(cfg: Config, training: Any,
                   with_optimizers: bool) -> Dict[str, Mapping[str, Any]]:
    """A ``weights_<epoch>`` folder's contents in upstream's layout; ``adam*.pth`` (~60% of its
    size, also in ``last.pt``) only when ``with_optimizers``."""
    files: Dict[str, Mapping[str, Any]] = depth_state_dicts(
        training.depth, cfg.model.height, cfg.model.width, cfg.data.use_stereo,
        depth_range=(cfg.loss.min_depth, cfg.loss.max_depth))
    if not training.pose.shared:
        files["pose_encoder"] = training.pose.encoder.state_dict()
    files["pose"] = training.pose.decoder.state_dict()
    if with_optimizers:
        files["adam"] = training.optimizers["depth"].state_dict()
        files["adam_pose"] = training.optimizers["pose"].state_dict()
    return files


def check_initial_weights(cfg: Config) -> None:
    """Refuse a fresh start whose initial weights cannot be had, before anything is built.

    Raises:
        ConfigError: ``--mypretrain_required`` without ``--mypretrain`` (naming the variant's file;
            ``--mypretrain none`` trains from scratch), or a missing ``--mypretrain`` file.
        CheckpointError: a ``--load_weights_folder`` that is not a folder."""
    m, folder = cfg.model, cfg.train.load_weights_folder
    if folder and not Path(folder).is_dir():
        raise CheckpointError(f"--load_weights_folder {folder}: no such folder, "
                              "pass a run's models/weights_<epoch> folder")
    if m.mypretrain_required and not m.mypretrain:
        raise ConfigError(
            f"this recipe starts the encoder from ImageNet weights (--mypretrain_required, "
            f"configs/kitti/base.yaml) but --mypretrain is not set; get {imagenet_file(m.model)} "
            f"(python scripts/imagenet_weights.py) and pass --mypretrain "
            f"pretrained/{imagenet_file(m.model)}, or --mypretrain none to train from scratch")
    if m.mypretrain and m.mypretrain != NO_PRETRAIN and not Path(m.mypretrain).is_file():
        raise ConfigError(f"--mypretrain: no such file {m.mypretrain}; get it with "
                          "python scripts/imagenet_weights.py")


def load_initial_weights(cfg: Config, training: Any, report: Callable[[str], None]) -> None:
    """``--load_weights_folder`` (strict), then ``--mypretrain`` (upstream's order).

    Raises:
        ConfigError / CheckpointError: as :func:`check_initial_weights`, or a file that does not
            fit."""
    check_initial_weights(cfg)
    folder = cfg.train.load_weights_folder
    if folder:
        modules = {"encoder": training.depth.encoder, "depth": training.depth.decoder,
                   "pose_encoder": None if training.pose.shared else training.pose.encoder,
                   "pose": training.pose.decoder}
        names = [n for n in cfg.train.models_to_load if modules[n] is not None]
        for name, state in load_weights_folder(folder, names).items():
            state = {k: v for k, v in state.items() if k not in (*UPSTREAM_EXTRAS, CONFIG_ENTRY)}
            load_strict(modules[name], state, f"--load_weights_folder {folder}/{name}.pth")
        if (Path(folder) / "adam.pth").is_file():  # upstream: optimiser states when present
            states = load_weights_folder(folder, ["adam", "adam_pose"])
            load_optimizer_state(training.optimizers["depth"], states["adam"])
            load_optimizer_state(training.optimizers["pose"], states["adam_pose"])
            names += ["adam", "adam_pose"]
        report(f"loaded {', '.join(names)} from {folder}")
    m = cfg.model
    if m.mypretrain and m.mypretrain != NO_PRETRAIN:
        try:
            load_imagenet_encoder(training.depth.encoder, m.mypretrain, m.allow_pickle)
        except (ValueError, FileNotFoundError) as exc:  # a user's file: one line, no traceback
            raise ConfigError(f"{exc}" if isinstance(exc, ValueError) else
                              f"{exc}; get it with python scripts/imagenet_weights.py") from exc
        report(f"--mypretrain: encoder initialised from {m.mypretrain}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``load_state_dict``, then each moment laid out like its parameter (fused AdamW pairs elements
    in memory order: NCHW ``adam.pth`` in a ``--channels_last`` net would mix them, test_train.py).
    Hyper-parameters come from the saved groups, as upstream."""
    optimizer.load_state_dict(state)
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                moments[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def training_state(cfg: Config, training: Any, epoch: int, step: int, position: int,
                   best: Optional[float]) -> Dict[str, Any]:
    """Everything :func:`restore_state` needs to continue bit-identically."""
    return {"config": cfg.to_dict(), "epoch": epoch, "step": step, "position": position,
            "best": best, "rng": capture_rng(), "threads": torch.get_num_threads(),
            "models": {"depth": training.depth.state_dict(), "pose": training.pose.state_dict()},
            "optimizers": {k: o.state_dict() for k, o in training.optimizers.items()},
            "schedules": {k: s.state_dict() for k, s in training.schedules.items()},
            "scaler": training.scaler.state_dict()}


def restore_state(state: Mapping[str, Any], training: Any, what: str) -> None:
    """Load networks (strictly), optimisers, schedules and the AMP scaler from a training state."""
    load_strict(training.depth, state["models"]["depth"], f"{what} (depth network)")
    load_strict(training.pose, state["models"]["pose"], f"{what} (pose network)")
    for name, optimizer in training.optimizers.items():
        load_optimizer_state(optimizer, state["optimizers"][name])
        training.schedules[name].load_state_dict(state["schedules"][name])
    if state["scaler"]:
        training.scaler.load_state_dict(state["scaler"])


def is_better(value: float, best: Optional[float]) -> bool:
    """Lower is better for every validation metric the engine ranks by; NaN never wins."""
    return not math.isnan(value) and (best is None or value < best)
