"""The training loop of Lite-Mono (CVPR 2023, section 4.2).

:func:`train`: set-up, epochs, validation, saving. A step is upstream's ``process_batch``
(``trainer.py``): model, criterion, zero_grad, backward, depth and pose AdamW. The step never
waits for the host: losses go to a :class:`~litemono.loss_tracker.LossTracker`, read every
``--log_frequency`` steps and before every save, so a NaN/inf stops the run naming its first bad
step and later weights are never saved. Each epoch writes ``models/weights_<epoch>``, ``best.pt``,
then ``last.pt``: the state is committed last (docs/reliability.md). Under ``torchrun`` rank 0
alone logs and writes."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt
from . import distributed, io, run
from .compile import compile_step
from .config import Config, ConfigError, lr_schedule_params
from .data import build_dataset
from .data.sampling import ResumableSampler, SeededItems
from .logging_utils import RunLogger, Timer, epoch_summary
from .loss_tracker import LossTracker, TrainingDiverged, skip_update_if_not_finite
from .losses.criterion import build_criterion
from .metrics import evaluate_depth_map
from .model import DepthPoseModel, build_model, to_device
from .schedule import build_schedules

# a training item holds what a step reads: jittered frames at scale 0, no depth_gt (upstream
# loads both; skipping them keeps every tensor the step reads, and the jitter draws, as they were)
TRAIN_ITEMS = dict(augmented_scales=(0,), with_depth_gt=False)


# a run that would write more weight folders than this (and keeps all) says so at start
MANY_WEIGHT_FOLDERS = 20


def weights_folders_to_write(cfg: Config, epoch: int, step: int, steps_per_epoch: int) -> int:
    """How many ``weights_<e>`` folders a run starting at ``(epoch, step)`` will save."""
    t = cfg.train
    last = t.num_epochs
    if t.num_steps is not None:  # --num_steps may end the run before --num_epochs
        last = min(last, epoch + -(-max(t.num_steps - step, 0) // max(steps_per_epoch, 1)))
    return sum(1 for e in range(epoch, last) if (e + 1) % t.save_frequency == 0)


@dataclasses.dataclass
class Training:
    """What a run optimises: the model, one AdamW per network (weight decay on every parameter,
    as upstream), their learning-rate schedules (:mod:`litemono.schedule`) and the AMP scaler."""

    model: DepthPoseModel
    optimizers: Dict[str, torch.optim.Optimizer]
    schedules: Dict[str, Any]
    scaler: torch.amp.GradScaler

    @property
    def depth(self) -> nn.Module:
        return self.model.depth

    @property
    def pose(self) -> nn.Module:
        return self.model.pose


def build_training(cfg: Config, device: torch.device, world: int) -> Training:
    """The model on ``device`` (channels_last with ``--channels_last``; SyncBatchNorm with
    ``--sync_bn`` under torchrun), its optimisers, schedules and scaler."""
    model = build_model(cfg)
    model.to(device, memory_format=torch.channels_last if cfg.train.channels_last
             else torch.preserve_format)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernels)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lr, decay = lr_schedule_params(cfg.train.lr), cfg.train.weight_decay
    fused = device.type in ("cpu", "cuda")  # one kernel over all tensors, where torch has one
    optimizers = {
        "depth": torch.optim.AdamW(model.depth.parameters(), lr[0], weight_decay=decay,
                                   fused=fused),
        "pose": torch.optim.AdamW(model.pose.parameters(), lr[3], weight_decay=decay,
                                  fused=fused)}
    return Training(model, optimizers, build_schedules(optimizers["depth"], optimizers["pose"], lr),
                    torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16"))


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did: ``losses`` holds the total loss of every step this call ran."""

    run_dir: Path
    epoch: int
    step: int
    losses: List[float]
    best: Optional[float]


def step_modules(training: Training, criterion: nn.Module, cfg: Config, device: torch.device,
                 world: int, backend: str = "inductor") -> tuple:
    """``(model, criterion)`` as the step calls them: the model in DDP under torchrun, then with
    ``--compile`` both as graphs (:mod:`litemono.compile`); saving reads ``training.model``."""
    model = distributed.wrap_ddp(training.model, device, world)
    if cfg.train.compile:
        mode = cfg.train.compile_mode
        model = compile_step(model, mode, backend=backend)
        criterion = compile_step(criterion, mode, backend=backend, new_step=False)
    return model, criterion


def train_step(training: Training, model: nn.Module, criterion: nn.Module, inputs: Dict,
               world: int) -> tuple:
    """One optimisation step, no host read: ``(total, terms, outputs)``, detached. ``model`` may be
    wrapped (DDP, compile). A non-finite loss skips the update on the device."""
    outputs = model(inputs)
    total, terms = criterion(inputs, outputs)
    for optimizer in training.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    training.scaler.scale(total).backward()
    skip_update_if_not_finite(training.optimizers.values(), total, world, training.scaler)
    for name in ("depth", "pose"):  # upstream's order
        training.scaler.step(training.optimizers[name])
    training.scaler.update()
    return total.detach(), {k: v.detach() for k, v in terms.items()}, outputs


@torch.no_grad()
def validate(training: Training, criterion: nn.Module, loader, device: torch.device,
             channels_last: bool, world: int, logger: RunLogger, step: int) -> Dict[str, float]:
    """Mean loss terms (and depth metrics where ``depth_gt`` exists) over the val files; as
    upstream, only the depth network goes to eval mode."""
    model = training.model
    model.depth.eval()
    sums: Dict[str, float] = {}
    batches = 0
    for inputs in loader:
        inputs = to_device(inputs, device, channels_last)
        outputs = model(inputs)
        total, terms = criterion(inputs, outputs)
        values = {"loss": float(total), **{k: float(v) for k, v in terms.items()}}
        if "depth_gt" in inputs:
            gt = inputs["depth_gt"]
            pred = F.interpolate(outputs[("depth", 0, 0)], size=gt.shape[-2:], mode="bilinear",
                                 align_corners=False)
            values.update(evaluate_depth_map(gt, pred)[0])  # one median ratio per batch
        if batches == 0:
            logger.images("val", inputs, outputs, step)
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        batches += 1
    model.depth.train()
    keys = sorted(sums)
    totals = torch.tensor([sums[k] for k in keys] + [batches], dtype=torch.float64)
    totals = distributed.all_reduce(totals, world)
    # pose BatchNorm statistics moved differently on each shard: take rank 0's
    distributed.broadcast_buffers([model], world)
    return {k: float(totals[i] / max(float(totals[-1]), 1.0)) for i, k in enumerate(keys)}


def _loader(dataset, sampler, cfg: Config, device: torch.device, rank: int, drop_last: bool):
    # own generator: creating an iterator must not draw from the global torch generator (the
    # workers' base seed is irrelevant, SeededItems reseeds every item)
    return torch.utils.data.DataLoader(
        SeededItems(dataset, cfg.train.seed, rank), batch_size=cfg.train.batch_size,
        sampler=sampler, drop_last=drop_last, num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.train.seed))


def _datasets(cfg: Config, world: int, logger: RunLogger) -> tuple:
    """The train and val datasets, checked (``--check_data``) and sized for ``world`` ranks
    (None after ``--check_data_only``)."""
    t, split = cfg.train, cfg.data.split
    train_set = build_dataset(cfg, "train", is_train=True, **TRAIN_ITEMS)
    val_set = build_dataset(cfg, "val", is_train=False)
    if t.check_data or t.check_data_only:
        from .data.check import check_datasets

        check_datasets([train_set, val_set], cfg.data.num_workers, progress=logger.enabled,
                       report=logger.print)
        if t.check_data_only:
            return None
    if len(train_set) == 0:
        raise ConfigError(f"--split {split}: the train list has no lines "
                          f"({train_set.source}); add training frames to it")
    if len(train_set) // world // t.batch_size == 0:
        raise ConfigError(f"--batch_size {t.batch_size} is larger than the {len(train_set)} "
                          f"training samples per process of --split {split}")
    if len(val_set) == 0:
        logger.print(f"note: the val list of --split {split} is empty "
                     f"({val_set.source}): no validation and no best.pt")
    return train_set, val_set


def start(cfg: Config, training: Training, state: Optional[Dict[str, Any]], path: Optional[Path],
          report: Callable[[str], None]) -> tuple:
    """Load a ``--resume`` training state, or the initial weights of a fresh start
    (``--load_weights_folder``, ``--mypretrain``); return ``(epoch, step, position, best)``."""
    if state is None:
        ckpt.load_initial_weights(cfg, training, report)
        return 0, 0, 0, None
    ckpt.restore_state(state, training, f"--resume {path}")
    note = " (--mypretrain ignored: resumed weights win)" if cfg.model.mypretrain else ""
    report(f"resumed {path}: epoch {state['epoch']}, step {state['step']}{note}")
    changes = ckpt.changed_options(state["config"], cfg)
    if changes:
        report("warning: resuming with changed options, so the run will not match an "
               "uninterrupted one: " + "; ".join(changes))
    threads = state.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        report(f"warning: the run started with {threads} CPU threads and resumes with "
               f"{torch.get_num_threads()}: CPU results will not be bit-identical to "
               f"an uninterrupted run (set OMP_NUM_THREADS={threads})")
    return state["epoch"], state["step"], state["position"], state["best"]


def train(cfg: Config) -> TrainResult:
    """Train (or resume, ``--resume``) the run of ``cfg``; see the module docstring."""
    # ---- set-up: run folder and resume, networks and optimisers, data
    t = cfg.train
    rank, world, device = distributed.setup_process(t.device)
    root = run.run_dir(cfg)
    resume_path = run.resolve_resume(cfg)  # fail fast on a wrong --resume
    run.check_fresh_start(cfg)
    state = ckpt.load_training_state(resume_path) if resume_path is not None else None
    if state is None:
        ckpt.check_initial_weights(cfg)  # before building: pose ImageNet weights may download
    if rank == 0:  # temporaries of an earlier, killed run of this folder
        for folder in (root / "checkpoints", root / "models"):
            io.remove_leftovers(folder)
        if state is not None:  # a run killed between its last commit and its pruning
            ckpt.prune_weights_folders(root / "models", t.keep_weights,
                                       ckpt.committed_weights(state["epoch"], state["position"]))
    # a resumed run replays nothing that was logged: drop the events after the resumed step
    logger = RunLogger(root, enabled=rank == 0,
                       purge_step=state["step"] + 1 if state is not None else None)
    run.seed_everything(t.seed)
    training = build_training(cfg, device, world)
    criterion = build_criterion(cfg)
    datasets = _datasets(cfg, world, logger)
    if datasets is None:
        logger.close()
        return TrainResult(root, 0, 0, [], None)
    train_set, val_set = datasets
    epoch_size = len(train_set) // world // t.batch_size * t.batch_size  # per process
    sampler = ResumableSampler(len(train_set), t.seed, True, rank, world)
    train_loader = _loader(train_set, sampler, cfg, device, rank, drop_last=True)
    val_loader = _loader(val_set, ResumableSampler(len(val_set), t.seed, False, rank, world),
                         cfg, device, rank, drop_last=False)
    epoch, step, position, best = start(cfg, training, state, resume_path, logger.print)
    folders = weights_folders_to_write(cfg, epoch, step, epoch_size // t.batch_size)
    if t.keep_weights is None and folders > MANY_WEIGHT_FOLDERS:
        logger.print(f"note: this run will write {folders} weights folders under "
                     f"{root / 'models'} (one every --save_frequency {t.save_frequency} epochs, "
                     "all kept); --keep_weights N keeps the newest N, --save_frequency saves "
                     "less often")
    model, step_criterion = step_modules(training, criterion, cfg, device, world)
    if rank == 0:
        run.write_run_config(cfg)
    if state is not None:
        run.restore_rng(state["rng"])  # last: building and loading must not shift the streams
    tracker = LossTracker(world)

    def save(next_epoch: int, next_position: int, weights_epoch: int, improved: bool) -> None:
        # the training state is committed last: whatever last.pt says is done is on disk, and
        # a kill anywhere in here makes --resume auto redo this save (docs/reliability.md)
        if rank == 0:
            snapshot = ckpt.training_state(cfg, training, next_epoch, step, next_position, best)
            if weights_epoch >= 0:
                files = ckpt.upstream_files(cfg, training, t.save_optimizer_in_weights)
                ckpt.save_weights_folder(root / "models" / f"weights_{weights_epoch}", files)
            if improved:
                ckpt.save_training_state(root / "checkpoints" / "best.pt", snapshot)
            ckpt.save_training_state(root / "checkpoints" / "last.pt", snapshot)
            ckpt.prune_weights_folders(root / "models", t.keep_weights,
                                       ckpt.committed_weights(next_epoch, next_position))
        distributed.barrier(world)

    # ---- the epoch loop
    training.model.train()
    try:
        while epoch < t.num_epochs and (t.num_steps is None or step < t.num_steps):
            lrs = {name: s.set_epoch(epoch) for name, s in training.schedules.items()}
            sampler.set_epoch(epoch, position)
            timer, first_of_epoch = Timer(), len(tracker.losses)  # all read at the last save
            bar = logger.progress(train_loader, len(train_loader), f"epoch {epoch}")
            for inputs in bar:
                inputs = to_device(inputs, device, t.channels_last)
                total, terms, outputs = train_step(training, model, step_criterion, inputs,
                                                   world)
                step, position = step + 1, position + t.batch_size
                tracker.update(step, total, terms)
                if step % t.log_frequency == 0:  # the only host reads of the loop
                    means = tracker.read()  # raises TrainingDiverged
                    logger.postfix(bar, means["loss"])
                    logger.scalars("train", {**means, **{f"lr/{k}": v for k, v in lrs.items()}},
                                   step)
                    logger.images("train", inputs, outputs, step)
                    logger.bins("train", outputs, step)
                if t.num_steps is not None and step >= t.num_steps:
                    break
            tracker.check()  # before any save: the weights of a diverged run are never written
            if position < epoch_size:
                save(epoch, position, epoch, improved=False)  # --num_steps stopped mid-epoch
                break
            # ---- validation and saving
            val = validate(training, criterion, val_loader, device, t.channels_last, world,
                           logger, step)
            metric = val.get("abs_rel", val.get("loss", float("nan")))  # lower is better
            improved = ckpt.is_better(metric, best)
            best = metric if improved else best
            logger.scalars("val", val, step)
            epoch_losses = tracker.losses[first_of_epoch:]
            logger.print(epoch_summary(epoch, step, sum(epoch_losses) / max(len(epoch_losses), 1),
                                       val, lrs, timer.restart(),
                                       len(epoch_losses) * t.batch_size * world, best))
            save(epoch + 1, 0, epoch if (epoch + 1) % t.save_frequency == 0 else -1, improved)
            epoch, position = epoch + 1, 0
    except TrainingDiverged as exc:
        last = root / "checkpoints" / "last.pt"
        kept = (f"the last saved checkpoint {last} is kept" if last.is_file()
                else "no checkpoint was saved yet")
        raise TrainingDiverged(f"{exc}; {kept}") from None
    finally:
        logger.close()
    return TrainResult(root, epoch, step, tracker.losses, best)
