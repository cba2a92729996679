"""Checkpoints: upstream-layout weight folders, the full training state, exact resume.

Run folder ``<log_dir>/<model_name>/`` (upstream's layout, ``../shared/spec/upstream.md``
section 9, plus our training state)::

    config.yaml                    the resolved configuration
    models/opt.json                every option, flat (upstream's options dump)
    models/weights_<epoch>/        encoder.pth (+ height, width, use_stereo), depth.pth,
                                   pose_encoder.pth, pose.pth, adam.pth, adam_pose.pth:
                                   loadable by upstream's code
    checkpoints/last.pt            the complete training state (:func:`training_state`)
    checkpoints/best.pt            the same at the best validation metric so far
    train/, val/                   tensorboard events

:func:`upstream_files` / :func:`load_initial_weights` map the networks to and from those files
(``--load_weights_folder``, ``--models_to_load``, ``--mypretrain``), :func:`training_state` /
:func:`restore_state` to and from ``last.pt``.

Every file goes through :mod:`litemono.io` (temporary file + rename); a weight folder is built
under a temporary name and renamed into place as a whole. A save killed half-way therefore
leaves the previous ``last.pt`` and the previous weight folders intact. The training state holds
only tensors, numbers, strings and containers, so it loads with ``weights_only=True``.

Exact resume also needs the data order: :class:`ResumableSampler` draws each epoch's permutation
from (seed, epoch) and can start mid-epoch, and :class:`SeededItems` seeds python / numpy /
torch from (seed, epoch, position, rank) before each item, so augmentation does not depend on the
number of loader workers or on where a run was interrupted.
"""
from __future__ import annotations

import math
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

import numpy as np
import torch

from litemono import io
from litemono.config import Config, from_dict
from litemono.models.build import (CONFIG_ENTRY, UPSTREAM_EXTRAS, depth_state_dicts,
                                   load_imagenet_encoder, load_state_strict)

FORMAT_VERSION = 1
# options that may differ between a run and its resumption without changing the numbers
# (--mypretrain and --load_weights_folder are not applied when resuming)
RESUME_FREE_OPTIONS = ("resume", "num_steps", "num_epochs", "log_frequency", "save_frequency",
                       "num_workers", "device", "mypretrain", "load_weights_folder", "log_dir",
                       "model_name")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or does not fit; the message names the flag and the file."""


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


# ----------------------------------------------------------------------------- weight folders

def save_weights_folder(folder: Path, files: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``<name>.pth`` for every entry of ``files`` into ``folder`` as one atomic unit.

    Args:
        folder: e.g. ``<run>/models/weights_3``; replaced whole if it exists.
        files: file stem -> object to ``torch.save`` (state dicts, optimiser states).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=io.TMP_PREFIX + folder.name + ".", dir=folder.parent))
    try:
        for name, obj in files.items():
            io.save_torch(dict(obj), staging / f"{name}.pth")
        if folder.exists():
            retired = Path(tempfile.mkdtemp(prefix=io.TMP_PREFIX + "old.", dir=folder.parent))
            folder.rename(retired / folder.name)
            staging.rename(folder)
            shutil.rmtree(retired)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_weights_folder(folder: str, names: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """Read ``<folder>/<name>.pth`` for each name (on the CPU).

    Raises:
        CheckpointError: naming ``--load_weights_folder`` when a file is missing.
    """
    out = {}
    for name in names:
        path = Path(folder) / f"{name}.pth"
        if not path.is_file():
            raise CheckpointError(f"--load_weights_folder {folder}: no {name}.pth "
                                  "(see --models_to_load)")
        out[name] = torch.load(path, map_location="cpu", weights_only=True)
    return out


# ----------------------------------------------------------------------------- training state

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


def save_training_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write a training state (with :data:`FORMAT_VERSION`) atomically."""
    io.save_torch({**state, "format": FORMAT_VERSION}, path)


def load_training_state(path: Path) -> Dict[str, Any]:
    """Read a training state on the CPU; raises naming ``--resume`` on a foreign file."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"--resume {path}: not a litemono training state "
                              f"(format {FORMAT_VERSION})")
    return state


def changed_options(saved_config: Mapping[str, Any], cfg: Config) -> List[str]:
    """Options of ``cfg`` that differ from a training state's config and change the numbers
    (``--resume``, ``--num_steps``, ``--num_epochs``, logging, workers ... may differ freely).

    Returns:
        One ``"--name: old -> new"`` line per changed option.
    """
    saved, now = from_dict(saved_config).flat(), cfg.flat()
    return [f"--{name}: {saved[name]!r} -> {value!r}" for name, value in now.items()
            if name not in RESUME_FREE_OPTIONS and saved[name] != value]


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


# ----------------------------------------------------------------------------- networks <-> files

def upstream_files(cfg: Config, parts: Any) -> Dict[str, Mapping[str, Any]]:
    """Contents of a ``weights_<epoch>`` folder in upstream's layout."""
    files: Dict[str, Mapping[str, Any]] = depth_state_dicts(
        parts.depth, cfg.model.height, cfg.model.width, cfg.data.use_stereo)
    if not parts.pose.shared:
        files["pose_encoder"] = parts.pose.encoder.state_dict()
    files["pose"] = parts.pose.decoder.state_dict()
    files["adam"] = parts.optimizers["depth"].state_dict()
    files["adam_pose"] = parts.optimizers["pose"].state_dict()
    return files


def load_initial_weights(cfg: Config, parts: Any, report: Callable[[str], None]) -> None:
    """``--load_weights_folder`` (``--models_to_load``, strict), then ``--mypretrain`` (upstream's
    order: the ImageNet encoder replaces a loaded one)."""
    folder = cfg.train.load_weights_folder
    if folder:
        modules = {"encoder": parts.depth.encoder, "depth": parts.depth.decoder,
                   "pose_encoder": None if parts.pose.shared else parts.pose.encoder,
                   "pose": parts.pose.decoder}
        names = [n for n in cfg.train.models_to_load if modules[n] is not None]
        for name, state in load_weights_folder(folder, names).items():
            state = {k: v for k, v in state.items() if k not in (*UPSTREAM_EXTRAS, CONFIG_ENTRY)}
            load_state_strict(modules[name], state, f"--load_weights_folder {folder}/{name}.pth")
        if (Path(folder) / "adam.pth").is_file():  # upstream: optimiser states when present
            states = load_weights_folder(folder, ["adam", "adam_pose"])
            load_optimizer_state(parts.optimizers["depth"], states["adam"])
            load_optimizer_state(parts.optimizers["pose"], states["adam_pose"])
            names += ["adam", "adam_pose"]
        report(f"loaded {', '.join(names)} from {folder}")
    if cfg.model.mypretrain:
        load_imagenet_encoder(parts.depth.encoder, cfg.model.mypretrain)
        report(f"--mypretrain: encoder initialised from {cfg.model.mypretrain}")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict``, then each moment tensor laid out like its parameter.

    A state saved from a network in another memory format (upstream's NCHW ``adam.pth`` into a
    ``--channels_last`` network) keeps its strides through ``load_state_dict``, and torch's
    fused AdamW pairs parameter, gradient and moment elements in memory order: mismatched
    strides would silently mix elements up (tests/test_train.py shows it). Hyper-parameters
    come from the saved groups, as upstream.
    """
    optimizer.load_state_dict(state)
    for param, moments in optimizer.state.items():
        for key, value in moments.items():
            if (torch.is_tensor(value) and value.shape == param.shape
                    and value.stride() != param.stride()):
                moments[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def training_state(cfg: Config, parts: Any, epoch: int, step: int, position: int,
                   best: Optional[float]) -> Dict[str, Any]:
    """Everything :func:`restore_state` needs to continue bit-identically."""
    return {"config": cfg.to_dict(), "epoch": epoch, "step": step, "position": position,
            "best": best, "rng": capture_rng(),
            "models": {"depth": parts.depth.state_dict(), "pose": parts.pose.state_dict()},
            "optimizers": {k: o.state_dict() for k, o in parts.optimizers.items()},
            "schedules": {k: s.state_dict() for k, s in parts.schedules.items()},
            "scaler": parts.scaler.state_dict()}


def restore_state(state: Mapping[str, Any], parts: Any, what: str) -> None:
    """Load networks (strictly), optimisers, schedules and the AMP scaler from a training state."""
    load_state_strict(parts.depth, state["models"]["depth"], f"{what} (depth network)")
    load_state_strict(parts.pose, state["models"]["pose"], f"{what} (pose network)")
    for name, optimizer in parts.optimizers.items():
        load_optimizer_state(optimizer, state["optimizers"][name])
        parts.schedules[name].load_state_dict(state["schedules"][name])
    if state["scaler"]:
        parts.scaler.load_state_dict(state["scaler"])


# ----------------------------------------------------------------------------- data order

def derive_seed(*parts: int) -> int:
    """A 32-bit seed that depends on every part (numpy's SeedSequence hashing)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


class ResumableSampler(torch.utils.data.Sampler):
    """Each epoch's shuffled order from (seed, epoch), sharded over ranks, optionally resumed.

    Yields ``(epoch, position, index)`` keys for :class:`SeededItems`; ``position`` counts this
    rank's items within the epoch. Like a drop-last ``DistributedSampler``, every rank gets
    ``len(dataset) // world_size`` items.

    Args:
        size: dataset length.
        seed: ``--seed``.
        shuffle: False for validation (dataset order).
        rank, world_size: the process and the number of processes.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from this rank's item ``start`` on."""
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.size // self.world_size - self.start

    def __iter__(self) -> Iterator[tuple]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        per_rank = self.size // self.world_size
        mine: List[int] = order[self.rank::self.world_size][:per_rank]
        for position in range(self.start, per_rank):
            yield self.epoch, position, mine[position]


class SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset: item ``(epoch, position, index)`` is ``dataset[index]`` drawn with all
    global generators seeded from (seed, epoch, position, rank); the caller's generator states are
    restored afterwards, so fetching never disturbs the training randomness."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int, rank: int = 0) -> None:
        self.dataset, self.seed, self.rank = dataset, seed, rank

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple) -> Any:
        epoch, position, index = key
        saved = capture_rng(include_cuda=False)  # datasets draw on the CPU generators only
        item_seed = derive_seed(self.seed, epoch, position, self.rank)
        random.seed(item_seed)
        np.random.seed(item_seed)
        torch.default_generator.manual_seed(item_seed)
        try:
            return self.dataset[index]
        finally:
            restore_rng(saved)


def is_better(value: float, best: Optional[float]) -> bool:
    """Lower is better for every validation metric the engine ranks by; NaN never wins."""
    return not math.isnan(value) and (best is None or value < best)
