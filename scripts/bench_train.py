"""Seconds per training step of the real engine step, and where the time goes.

    python scripts/bench_train.py --model lite-mono --height 192 --width 640 --batch_size 2 --device cpu
    python scripts/bench_train.py --model lite-mono --height 96 --width 320 --batch_size 4 --profile
    python scripts/bench_train.py --config configs/kitti/05_full.yaml --batch_size 12 --amp bf16

Times :func:`litemono.engine.train_step` -- depth and pose forward, warping, losses, backward,
the depth then the pose AdamW step -- on a synthetic batch that is built once in memory
(``litemono.benchmark.synthetic_batch``), so no file or data loader is involved. The pose
ResNet starts from scratch (``--weights_init`` does not change the cost and needs no download);
with a distillation / Chamfer weight the batch carries an in-memory teacher map.

Reported: the median step over ``--repeats`` steps after ``--warmup`` steps, then a phase split
from ``--phase_repeats`` further steps stamped by hooks (CUDA events on GPU): ``depth_forward``,
``pose_forward`` (pair stacking included), ``loss`` (pose matrices, warping, photometric,
smoothness, extra terms), ``backward`` (plus the finite-loss check and ``zero_grad``) and
``optimizer`` (both steps). ``--profile`` adds torch.profiler's operator table (self time) of
``--profile_steps`` steps. The last stdout line is a JSON object.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from litemono import benchmark as bench  # noqa: E402
from litemono import engine  # noqa: E402
from litemono.config import ConfigError, add_config_arguments, config_from_namespace  # noqa: E402
from litemono.losses.criterion import build_criterion  # noqa: E402

IN_MEMORY_TEACHER = "<in-memory synthetic teacher>"  # satisfies validate(); nothing is read
DISTILL_SHORTCUT_WEIGHT = 0.1  # the weight of the ablation configs (configs/*/03_pseudo_label.yaml)
PHASES = ("depth_forward", "pose_forward", "loss", "backward", "optimizer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--distill", action="store_true",
                        help=f"shortcut for --distill_weight {DISTILL_SHORTCUT_WEIGHT}")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--repeats", type=int, default=8, help="timed steps")
    parser.add_argument("--phase_repeats", type=int, default=4, help="steps for the phase split "
                        "(0: skip)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table")
    parser.add_argument("--profile_steps", type=int, default=3, help="steps under the profiler")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")
    return parser


def resolve_config(args: argparse.Namespace):
    """The run config of the command line, made buildable without files or downloads."""
    if args.distill and not hasattr(args, "distill_weight"):
        args.distill_weight = DISTILL_SHORTCUT_WEIGHT
    wants_teacher = getattr(args, "distill_weight", 0) > 0 or getattr(args, "chamfer_weight", 0) > 0
    if wants_teacher and not getattr(args, "teacher_dir", None):
        args.teacher_dir = IN_MEMORY_TEACHER
    cfg = config_from_namespace(args)
    return cfg.replace(weights_init="scratch", mypretrain=None)


def build_training(cfg, device: torch.device, threads=None):
    """Networks (train mode, seeded by ``--seed``), optimisers and criterion of one process, as
    :func:`litemono.engine.train` builds them; ``threads``: ``torch.set_num_threads`` first."""
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    parts = engine.build_parts(cfg, device, world=1)
    engine.wrap_for_training(parts, cfg, device, world=1)
    parts.depth.train()
    parts.pose.train()
    return parts, build_criterion(cfg)


def stamp_phases(parts: engine.Parts, criterion, timeline: bench.Timeline) -> list:
    """Hooks that stamp the end of each phase on ``timeline``; returns their handles."""
    def stamper(name):
        return lambda *_: timeline.mark(name)

    return [parts.run_depth.register_forward_hook(stamper("depth_forward")),
            parts.run_pose.register_forward_hook(stamper("pose_forward")),
            criterion.register_forward_hook(stamper("loss")),
            parts.optimizers["depth"].register_step_pre_hook(stamper("backward"))]


def phase_split(step, parts, criterion, device, repeats: int) -> dict:
    """Median seconds of each phase over ``repeats`` stamped steps."""
    runs = []
    for _ in range(repeats):
        timeline = bench.Timeline(device)
        handles = stamp_phases(parts, criterion, timeline)
        bench.synchronize(device)
        timeline.mark("start")
        step()
        timeline.mark("optimizer")
        for handle in handles:
            handle.remove()
        durations = timeline.durations()
        if tuple(durations) != PHASES:
            raise RuntimeError(f"unexpected phase order {list(durations)}: the engine step changed")
        runs.append(durations)
    return bench.median_per_key(runs)


def prepare(parser: argparse.ArgumentParser, argv=None):
    """Parse ``argv`` and build one process's training: returns ``(args, cfg, device, parts,
    criterion, frame_ids, channels_last, batch)``, the synthetic batch on the device."""
    args = parser.parse_args(argv)
    try:
        cfg = resolve_config(args)
        device = bench.resolve_device(cfg.train.device)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    parts, criterion = build_training(cfg, device, args.threads)
    frame_ids = list(cfg.data.frame_ids) + (["s"] if cfg.data.use_stereo else [])
    batch = bench.synthetic_batch(cfg.model.height, cfg.model.width, cfg.train.batch_size,
                                  frame_ids, device, teacher=cfg.data.teacher_dir is not None,
                                  seed=cfg.train.seed)
    channels_last = cfg.train.channels_last
    batch = engine.to_device(batch, device, channels_last)
    return args, cfg, device, parts, criterion, frame_ids, channels_last, batch


def main(argv=None) -> dict:
    args, cfg, device, parts, criterion, frame_ids, channels_last, batch = prepare(
        build_parser(), argv)
    amp_dtype = engine.AMP_DTYPES[cfg.train.amp]
    losses = []

    def step():
        losses.append(engine.train_step(parts, criterion, batch, len(losses) + 1, amp_dtype, 1)[0])

    bench.reset_peak_memory(device)
    times = bench.measure(step, device, args.warmup, args.repeats)
    peak_mb = bench.peak_memory_mb(device)
    phases = phase_split(step, parts, criterion, device, args.phase_repeats) if args.phase_repeats else {}
    if args.profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]
                                    + ([torch.profiler.ProfilerActivity.CUDA]
                                       if device.type == "cuda" else [])) as prof:
            for _ in range(args.profile_steps):
                step()
        print(bench.top_operators(prof, device))
    summary = bench.summarise(times)
    m = cfg.model
    result = {
        "benchmark": "train_step", "model": m.model, "height": m.height, "width": m.width,
        "batch_size": cfg.train.batch_size, "amp": cfg.train.amp,
        "channels_last": channels_last, "compile": cfg.train.compile,
        "options": {"scales": m.scales, "frame_ids": frame_ids, "pose_model_type": m.pose_model_type,
                    "spatial_attention": m.spatial_attention, "bins": m.bins,
                    "ssim": cfg.loss.ssim, "automasking": cfg.loss.automasking,
                    "distill_weight": cfg.loss.distill_weight,
                    "chamfer_weight": cfg.loss.chamfer_weight},
        "step_s": summary["median_s"], "step_min_s": summary["min_s"],
        "step_max_s": summary["max_s"], "runs": summary["runs"], "warmup": args.warmup,
        "samples_per_s": cfg.train.batch_size / summary["median_s"],
        "peak_memory_mb": peak_mb, "phases_s": phases, "first_loss": float(losses[0]), "environment": bench.environment(device)}
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
