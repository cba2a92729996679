"""The training loop of Lite-Mono (Zhang et al., CVPR 2023, section 4.2), free of ablation flags.

Networks come from :mod:`litemono.models.build`, the loss from
:func:`litemono.losses.criterion.build_criterion` and the data from
:func:`litemono.data.build_dataset`; this module only runs them. One step (upstream's
``process_batch``, ``../shared/spec/upstream.md`` section 8): depth on ``("color_aug", 0, 0)``;
every temporal source frame paired with the target in temporal order, each pair through the pose
network on its own (train-mode BatchNorm statistics per pair, as upstream);
``("cam_T_cam", 0, f)`` from the pose (inverted for f < 0) and ``stereo_T`` for ``"s"``; the
criterion; zero_grad, backward, step the depth then the pose AdamW (section 5).

Under ``torchrun --nproc_per_node N`` each process trains on its shard of every epoch with
``--batch_size`` samples (the global batch is N times that), gradients are averaged by
DistributedDataParallel, and rank 0 alone logs and writes checkpoints (which every rank reads
on ``--resume``: the run folder must be on a shared file system). AMP (``--amp``) covers the
networks only: poses, warping, SSIM and the losses run in float32.

Run control: the learning rate is set at the start of every epoch (:mod:`litemono.schedule`).
After every epoch the val files are scored (loss terms; depth metrics where ``depth_gt`` exists)
and written, in this order: ``models/weights_<epoch>`` every ``--save_frequency`` epochs,
``checkpoints/best.pt`` when abs_rel (or the val loss without ground truth) improved, and
``checkpoints/last.pt`` last, so whatever the training state says is done is on disk
(docs/reliability.md). ``--num_steps`` may stop mid-epoch: the epoch's weight folder and
``last.pt`` are written then, and ``--resume`` continues from that exact batch
(:mod:`litemono.checkpoint`).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import checkpoint as ckpt
from . import io
from .config import Config, ConfigError, lr_schedule_params
from .data import build_dataset
from .geometry import transformation_from_parameters
from .logging_utils import RunLogger, Timer, epoch_summary
from .losses.criterion import build_criterion
from .metrics import evaluate_depth_map
from .models.build import build_depth_network, build_pose_network
from .schedule import build_schedules

AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# what a training item needs to hold: :func:`predict` reads the jittered frames at scale 0 only
# and nothing in a training step reads depth_gt (upstream loads both anyway; skipping them
# keeps every tensor the step reads, and the jitter draws, as they were)
TRAIN_ITEMS = dict(augmented_scales=(0,), with_depth_gt=False)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps the last good checkpoint."""


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did: ``losses`` holds the total loss of every step this call ran."""

    run_dir: Path
    epoch: int
    step: int
    losses: List[float]
    best: Optional[float]


@dataclasses.dataclass
class Parts:
    """Raw networks (saving, validation), their training wrappers (DDP / compile), optimisers."""

    depth: nn.Module
    pose: nn.Module
    run_depth: nn.Module
    run_pose: nn.Module
    optimizers: Dict[str, torch.optim.Optimizer]
    schedules: Dict[str, Any]
    scaler: torch.amp.GradScaler


def setup_process(device_name: str) -> tuple:
    """(rank, world size, device); joins the torchrun process group when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device_name}: no CUDA device here; use --device cpu")
    device = torch.device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", local_rank if world > 1 else (device.index or 0))
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


NETWORK_INPUT = "color_aug"  # the images the networks see; the loss reads ("color", f, s)


def predict(depth_net: nn.Module, pose_net: nn.Module, inputs: Mapping[Any, Any],
            sources: List[Any], amp_dtype: Optional[torch.dtype] = None) -> Dict[Any, Any]:
    """Network outputs of a batch: ``("disp", s)`` ... and ``("cam_T_cam", 0, f)`` (B, 4, 4).

    The networks run under autocast with ``amp_dtype`` (None: float32); their outputs are cast to
    float32 and the poses are built outside autocast, so warping and the losses stay in float32.
    """
    target = inputs[(NETWORK_INPUT, 0, 0)]
    temporal = [f for f in sources if f != "s"]
    with torch.autocast(target.device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        outputs = dict(depth_net(target))
        if temporal:
            pairs = [torch.cat([inputs[(NETWORK_INPUT, f, 0)], target] if f < 0
                               else [target, inputs[(NETWORK_INPUT, f, 0)]], dim=1)
                     for f in temporal]
            motion = pose_net(pairs)  # pair by pair: 2 x (len(temporal) * B, 2, 1, 3)
    outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
               for k, v in outputs.items()}
    if temporal:
        axisangle, translation = (m.float().chunk(len(temporal)) for m in motion)
        for f, rot, shift in zip(temporal, axisangle, translation):
            outputs[("axisangle", 0, f)], outputs[("translation", 0, f)] = rot, shift
            outputs[("cam_T_cam", 0, f)] = transformation_from_parameters(
                rot[:, 0], shift[:, 0], invert=f < 0)
    if "s" in sources:
        outputs[("cam_T_cam", 0, "s")] = inputs["stereo_T"]
    return outputs


def to_device(batch: Mapping[Any, Any], device: torch.device, channels_last: bool) -> Dict:
    """The tensors of a batch on ``device``; the networks' inputs (``("color_aug", f, s)``)
    channels_last when asked. The images the loss reads stay NCHW: its 3-channel element-wise
    work (warping, SSIM windows) gains nothing from NHWC memory (docs/performance.md)."""
    out = {}
    for key, value in batch.items():
        if torch.is_tensor(value):
            value = value.to(device, non_blocking=True)
            if (channels_last and value.dim() == 4 and isinstance(key, tuple)
                    and key[0] == NETWORK_INPUT):
                value = value.contiguous(memory_format=torch.channels_last)
        out[key] = value
    return out


def _all_reduce(values: torch.Tensor, world: int, op=dist.ReduceOp.SUM) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(values, op=op)
    return values


def train_step(parts: Parts, criterion: nn.Module, inputs: Dict, step: int,
               amp_dtype: Optional[torch.dtype], world: int) -> tuple:
    """One optimisation step; returns (total loss, terms, outputs) or raises TrainingDiverged."""
    outputs = predict(parts.run_depth, parts.run_pose, inputs, criterion.source_frames, amp_dtype)
    total, terms = criterion(inputs, outputs)
    finite = _all_reduce(torch.isfinite(total.detach()).float(), world, dist.ReduceOp.MIN)
    if finite.item() < 1:
        listing = ", ".join(f"{k}={float(v):.6g}" for k, v in terms.items())
        raise TrainingDiverged(f"step {step}: non-finite loss {float(total.detach()):.6g} "
                               f"({listing}); stopping")
    for optimizer in parts.optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    parts.scaler.scale(total).backward()
    for name in ("depth", "pose"):  # upstream's order
        parts.scaler.step(parts.optimizers[name])
    parts.scaler.update()
    return float(total.detach()), {k: float(v) for k, v in terms.items()}, outputs


@torch.no_grad()
def validate(parts: Parts, criterion: nn.Module, loader, device: torch.device, channels_last: bool,
             amp_dtype: Optional[torch.dtype], world: int, logger: RunLogger,
             step: int) -> Dict[str, float]:
    """Mean loss terms (and depth metrics where ``depth_gt`` exists) over the val files.

    As upstream, only the depth network is put in eval mode; the pose network stays in train mode.
    """
    parts.depth.eval()
    sums: Dict[str, float] = {}
    batches = 0
    for inputs in loader:
        inputs = to_device(inputs, device, channels_last)
        outputs = predict(parts.depth, parts.pose, inputs, criterion.source_frames, amp_dtype)
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
    parts.depth.train()
    keys = sorted(sums)
    totals = torch.tensor([sums[k] for k in keys] + [batches], dtype=torch.float64)
    totals = _all_reduce(totals, world)
    if world > 1:  # pose BatchNorm statistics moved differently on each shard: take rank 0's
        for buffer in list(parts.depth.buffers()) + list(parts.pose.buffers()):
            dist.broadcast(buffer, src=0)
    return {k: float(totals[i] / max(float(totals[-1]), 1.0)) for i, k in enumerate(keys)}


def build_parts(cfg: Config, device: torch.device, world: int) -> Parts:
    """Networks on ``device``, optimisers (AdamW, weight decay on every parameter), schedules."""
    model_cfg = dataclasses.replace(cfg.model, mypretrain=None)  # applied by load_initial_weights
    depth = build_depth_network(model_cfg)
    pose = build_pose_network(model_cfg, depth)
    memory = torch.channels_last if cfg.train.channels_last else torch.preserve_format
    depth.to(device, memory_format=memory)
    pose.to(device, memory_format=memory)
    if world > 1 and cfg.train.sync_bn:
        if device.type != "cuda":
            raise ConfigError("--sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernels)")
        depth = nn.SyncBatchNorm.convert_sync_batchnorm(depth)
        pose = nn.SyncBatchNorm.convert_sync_batchnorm(pose)
    lr = lr_schedule_params(cfg.train.lr)
    decay = cfg.train.weight_decay
    # fused: the same AdamW update in one kernel over all tensors, where torch has one
    fused = device.type in ("cpu", "cuda")
    optimizers = {
        "depth": torch.optim.AdamW(depth.parameters(), lr[0], weight_decay=decay, fused=fused),
        "pose": torch.optim.AdamW(pose.parameters(), lr[3], weight_decay=decay, fused=fused)}
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
    return Parts(depth, pose, depth, pose, optimizers,
                 build_schedules(optimizers["depth"], optimizers["pose"], lr), scaler)


def wrap_for_training(parts: Parts, cfg: Config, device: torch.device, world: int) -> None:
    """DistributedDataParallel under torchrun (the pose ResNet's ``fc`` is unused), compile."""
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        parts.run_depth = nn.parallel.DistributedDataParallel(
            parts.depth, device_ids=ids, find_unused_parameters=True)
        parts.run_pose = nn.parallel.DistributedDataParallel(
            parts.pose, device_ids=ids, find_unused_parameters=True)
    if cfg.train.compile:
        parts.run_depth = torch.compile(parts.run_depth)
        parts.run_pose = torch.compile(parts.run_pose)


def _loader(dataset, sampler, cfg: Config, device: torch.device, rank: int, drop_last: bool):
    # own generator: creating an iterator must not draw from the global torch generator (the
    # workers' base seed is irrelevant, SeededItems reseeds every item)
    return torch.utils.data.DataLoader(
        ckpt.SeededItems(dataset, cfg.train.seed, rank), batch_size=cfg.train.batch_size,
        sampler=sampler, drop_last=drop_last, num_workers=cfg.data.num_workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.data.num_workers > 0,
        generator=torch.Generator().manual_seed(cfg.train.seed))


def train(cfg: Config) -> TrainResult:
    """Train (or resume, ``--resume``) the run of ``cfg``; see the module docstring."""
    t = cfg.train
    rank, world, device = setup_process(t.device)
    root = ckpt.run_dir(cfg)
    resume_path = ckpt.resolve_resume(cfg)  # fail fast on a wrong --resume
    ckpt.check_fresh_start(cfg)
    state = ckpt.load_training_state(resume_path) if resume_path is not None else None
    if rank == 0:  # temporaries of an earlier, killed run of this folder
        for folder in (root / "checkpoints", root / "models"):
            io.remove_leftovers(folder)
    # a resumed run replays nothing that was logged: drop the events after the resumed step
    logger = RunLogger(root, enabled=rank == 0,
                       purge_step=state["step"] + 1 if state is not None else None)
    ckpt.seed_everything(t.seed)
    parts = build_parts(cfg, device, world)
    criterion = build_criterion(cfg)
    train_set = build_dataset(cfg, "train", is_train=True, **TRAIN_ITEMS)
    val_set = build_dataset(cfg, "val", is_train=False)
    if t.check_data or t.check_data_only:
        from .data.check import check_datasets

        check_datasets([train_set, val_set], cfg.data.num_workers, progress=rank == 0,
                       report=logger.print)
        if t.check_data_only:
            logger.close()
            return TrainResult(root, 0, 0, [], None)
    steps_per_epoch = len(train_set) // world // t.batch_size
    if len(train_set) == 0:
        raise ConfigError(f"--split {cfg.data.split}: the train list has no lines "
                          f"({train_set.source}); add training frames to it")
    if steps_per_epoch == 0:
        raise ConfigError(f"--batch_size {t.batch_size} is larger than the {len(train_set)} "
                          f"training samples per process of --split {cfg.data.split}")
    if len(val_set) == 0:
        logger.print(f"note: the val list of --split {cfg.data.split} is empty "
                     f"({val_set.source}): no validation and no best.pt")
    sampler = ckpt.ResumableSampler(len(train_set), t.seed, True, rank, world)
    train_loader = _loader(train_set, sampler, cfg, device, rank, drop_last=True)
    val_loader = _loader(val_set, ckpt.ResumableSampler(len(val_set), t.seed, False, rank, world),
                         cfg, device, rank, drop_last=False)

    epoch, step, position, best = 0, 0, 0, None
    if state is not None:
        ckpt.restore_state(state, parts, f"--resume {resume_path}")
        epoch, step, position = state["epoch"], state["step"], state["position"]
        best = state["best"]
        note = " (--mypretrain ignored: resumed weights win)" if cfg.model.mypretrain else ""
        logger.print(f"resumed {resume_path}: epoch {epoch}, step {step}{note}")
        changes = ckpt.changed_options(state["config"], cfg)
        if changes:
            logger.print("warning: resuming with changed options, so the run will not match an "
                         "uninterrupted one: " + "; ".join(changes))
        threads = state.get("threads")
        if threads is not None and threads != torch.get_num_threads():
            logger.print(f"warning: the run started with {threads} CPU threads and resumes with "
                         f"{torch.get_num_threads()}: CPU results will not be bit-identical to "
                         f"an uninterrupted run (set OMP_NUM_THREADS={threads})")
    else:
        ckpt.load_initial_weights(cfg, parts, logger.print)
    wrap_for_training(parts, cfg, device, world)
    if rank == 0:
        ckpt.write_run_config(cfg)
    if state is not None:
        ckpt.restore_rng(state["rng"])  # last: building and loading must not shift the streams

    def save(next_epoch: int, next_position: int, weights_epoch: int, improved: bool) -> None:
        # the training state is committed last: whatever last.pt says is done is on disk, and
        # a kill anywhere in here makes --resume auto redo this save (docs/reliability.md)
        if rank == 0:
            snapshot = ckpt.training_state(cfg, parts, next_epoch, step, next_position, best)
            if weights_epoch >= 0:
                files = ckpt.upstream_files(cfg, parts, t.save_optimizer_in_weights)
                ckpt.save_weights_folder(root / "models" / f"weights_{weights_epoch}", files)
            if improved:
                ckpt.save_training_state(root / "checkpoints" / "best.pt", snapshot)
            ckpt.save_training_state(root / "checkpoints" / "last.pt", snapshot)
            ckpt.prune_weights_folders(root / "models", t.keep_weights)
        if world > 1:
            dist.barrier()

    losses: List[float] = []
    amp_dtype = AMP_DTYPES[t.amp]
    channels_last = cfg.train.channels_last
    parts.depth.train()
    parts.pose.train()
    while epoch < t.num_epochs and (t.num_steps is None or step < t.num_steps):
        lrs = {name: s.set_epoch(epoch) for name, s in parts.schedules.items()}
        sampler.set_epoch(epoch, position)
        timer, epoch_losses = Timer(), []
        bar = logger.progress(train_loader, len(train_loader), f"epoch {epoch}")
        for inputs in bar:
            inputs = to_device(inputs, device, channels_last)
            try:
                loss, terms, outputs = train_step(parts, criterion, inputs, step + 1, amp_dtype,
                                                  world)
            except TrainingDiverged as exc:
                last = root / "checkpoints" / "last.pt"
                kept = (f"the last saved checkpoint {last} is kept" if last.is_file()
                        else "no checkpoint was saved yet")
                raise TrainingDiverged(f"{exc}; {kept}") from None
            step, position = step + 1, position + t.batch_size
            losses.append(loss)
            epoch_losses.append(loss)
            logger.postfix(bar, loss)
            if step % t.log_frequency == 0:
                lr_values = {f"lr/{k}": v for k, v in lrs.items()}
                logger.scalars("train", {"loss": loss, **terms, **lr_values}, step)
                logger.images("train", inputs, outputs, step)
            if t.num_steps is not None and step >= t.num_steps:
                break
        if position < steps_per_epoch * t.batch_size:  # --num_steps stopped mid-epoch
            save(epoch, position, epoch, improved=False)
            break
        val = validate(parts, criterion, val_loader, device, channels_last, amp_dtype, world,
                       logger, step)
        metric = val.get("abs_rel", val.get("loss", float("nan")))  # lower is better
        improved = ckpt.is_better(metric, best)
        best = metric if improved else best
        logger.scalars("val", val, step)
        samples = len(epoch_losses) * t.batch_size * world
        mean_loss = sum(epoch_losses) / max(len(epoch_losses), 1)
        logger.print(epoch_summary(epoch, step, mean_loss, val, lrs, timer.restart(), samples,
                                   best))
        save(epoch + 1, 0, epoch if (epoch + 1) % t.save_frequency == 0 else -1, improved)
        epoch, position = epoch + 1, 0
    logger.close()
    return TrainResult(root, epoch, step, losses, best)
