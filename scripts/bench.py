"""Benchmarks of litemono, one subcommand each; the last stdout line is always one JSON object.

    python scripts/bench.py train --model lite-mono --height 192 --width 640 --batch_size 2 --device cpu
    python scripts/bench.py train --config configs/kitti/05_full.yaml --batch_size 12 --amp bf16
    python scripts/bench.py infer --variants lite-mono lite-mono-tiny --batch_sizes 1 8 --device cuda
    python scripts/bench.py data --items 48 --height 192 --width 640
    python scripts/bench.py teacher --random_size small --device cuda --frames 96 --batch_size 8
    python scripts/bench.py vs-upstream --upstream_dir /tmp/upstream_litemono --height 96 --width 320
    python scripts/bench.py learning --num_steps 300 --log_dir runs/bench_learning
    python scripts/bench.py modes --config configs/kitti/01_baseline.yaml --modes fp32 bf16_cl
    python scripts/bench.py gpu OUT            # everything issue 22 measures on a GPU, < 8 min
    python scripts/bench.py cpu UPSTREAM_DIR OUT   # docs/performance.md's CPU numbers

Subcommands (``python scripts/bench.py SUBCOMMAND --help`` lists each one's flags):

* ``train``: seconds per step of :func:`litemono.engine.train_step` on an in-memory synthetic
  batch (``litemono.benchmark.synthetic_batch``), median of ``--repeats`` steps after
  ``--warmup``, a phase split (``depth_forward``, ``pose_forward``, ``loss``, ``backward``,
  ``optimizer``; CUDA events on a GPU; none with ``--compile``, whose forward and loss are one
  graph) and ``--profile``'s operator table. Every config flag of
  train.py applies; the pose ResNet starts from scratch (no download).
* ``infer``: latency and images/s of the depth network per variant and batch size
  (``shared/spec/measurements.md`` section 5's protocol); ``--upstream_dir`` also times
  upstream's network from the same weights, interleaved with ours.
* ``data``: training samples per second of one loader worker (one thread) on a synthetic KITTI
  scene, per augmentation mode and with the resized-frame cache.
* ``teacher``: frames/s and bytes per stored map of the teacher precompute loop
  (``precompute_teacher.py``'s), with local DA-V2 weights or a random network (``tiny``: the
  loop's overhead; ``small``: DA-V2 Small's size, hence its speed).
* ``vs-upstream``: our training step and upstream Lite-Mono's (imported from a checkout, never
  copied) from the same weights and batch, interleaved; first losses compared. Ours may run
  with ``--channels_last``, ``--amp`` and ``--compile`` (upstream: eager float32, NCHW).
* ``learning``: every ``configs/synthetic`` row trained for the same steps and scored.
* ``modes``: one config trained ``--steps`` steps from the same seed in each of ``--modes``
  (fp32 eager, bf16 + channels_last, bf16 + compile, + CUDA graphs): per-step losses, images/s,
  peak memory, and the largest relative loss difference to fp32 over the first steps.
* ``gpu``: every measurement of issue 22 in its own process with a timeout (see
  :func:`gpu_plan`); ``--dry_run`` runs the same code paths at tiny sizes on the CPU.
* ``cpu``: ``train`` vs upstream at two sizes, ``infer`` per variant and ``data``: the CPU
  numbers of docs/performance.md, one JSON file each.
"""
import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from litemono import benchmark as bench  # noqa: E402
from litemono.config import add_config_arguments, config_from_namespace, from_dict  # noqa: E402
from litemono.engine import TRAIN_ITEMS  # noqa: E402
from litemono.model import AMP_DTYPES  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.io import write_text  # noqa: E402
from litemono.models.build import encoder_names  # noqa: E402

VARIANT_NAMES = encoder_names()
from litemono.models.build import build_depth_network  # noqa: E402

TOOL = "bench.py"
SUBCOMMANDS: Dict[str, tuple] = {}  # name -> (help, add_arguments, run)


def subcommand(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None]):
    """Register ``run(args) -> dict`` as subcommand ``name`` with its flags."""
    def register(run):
        SUBCOMMANDS[name] = (help, add_arguments, run)
        return run
    return register


def add_device(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                        help="same as --device cpu")


def add_timing(parser: argparse.ArgumentParser, warmup: int, repeats: int) -> None:
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs first")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs (median reported)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")


def check_timing(args) -> None:
    if args.repeats < 1 or args.warmup < 0:
        raise UserError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, "
                        f"{args.warmup}", todo="pick other counts")


def set_threads(args) -> None:
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)


# --- train ------------------------------------------------------------------------------------

def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--distill", action="store_true",
                        help=f"shortcut for --distill_weight {bench.DISTILL_SHORTCUT_WEIGHT}")
    add_timing(parser, warmup=2, repeats=8)
    parser.add_argument("--phase_repeats", type=int, default=4,
                        help="steps for the phase split (0: skip)")
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table")
    parser.add_argument("--profile_steps", type=int, default=3, help="steps under the profiler")


def prepare_training(args):
    """``(cfg, device, parts, criterion, batch)`` of a train-style command line."""
    check_timing(args)
    cfg = bench.training_config(args)
    device = bench.resolve_device(cfg.train.device)
    parts, criterion = bench.build_training(cfg, device, args.threads)
    return cfg, device, parts, criterion, bench.training_batch(cfg, device)


def step_options(cfg) -> dict:
    m, loss = cfg.model, cfg.loss
    return {"scales": m.scales, "frame_ids": bench.frame_ids_of(cfg),
            "pose_model_type": m.pose_model_type, "spatial_attention": m.spatial_attention,
            "bins": m.bins, "ssim": loss.ssim, "automasking": loss.automasking,
            "distill_weight": loss.distill_weight, "chamfer_weight": loss.chamfer_weight}


@subcommand("train", "seconds per training step and its phases", add_train_arguments)
def train(args) -> dict:
    cfg, device, parts, criterion, batch = prepare_training(args)
    if cfg.train.compile:
        eager_random_numbers()  # first_loss comparable with an eager run's
        if args.phase_repeats:  # the phase hooks cannot see inside one compiled graph
            print("bench.py train: --compile runs forward and loss as one graph; no phase split",
                  file=sys.stderr)
            args.phase_repeats = 0
    losses: List[Any] = []

    def step():
        losses.append(bench.train_step(parts, criterion, batch, len(losses) + 1, cfg.train.amp))

    bench.reset_peak_memory(device)
    summary = bench.summarise(bench.measure(step, device, args.warmup, args.repeats))
    peak_mb = bench.peak_memory_mb(device)
    phases = (bench.phase_split(step, parts, criterion, device, args.phase_repeats)
              if args.phase_repeats else {})
    if args.profile:
        print(bench.top_operators(bench.profile_steps(step, device, args.profile_steps), device))
    m, t = cfg.model, cfg.train
    return {"benchmark": "train_step", "model": m.model, "height": m.height, "width": m.width,
            "batch_size": t.batch_size, "amp": t.amp, "channels_last": t.channels_last,
            "compile": t.compile, "options": step_options(cfg),
            "step_s": summary["median_s"], "step_min_s": summary["min_s"],
            "step_max_s": summary["max_s"], "runs": summary["runs"], "warmup": args.warmup,
            "samples_per_s": t.batch_size / summary["median_s"], "peak_memory_mb": peak_mb,
            "phases_s": phases, "first_loss": float(losses[0]),
            "environment": bench.environment(device)}


# --- modes: the same training in fp32, bf16 + channels_last, bf16 + compile (+ CUDA graphs) ------

MODES = {  # train options of each mode; the compiled modes also run bf16 in channels_last
    "fp32": dict(amp="off", channels_last=False, compile=False),
    "bf16_cl": dict(amp="bf16", channels_last=True, compile=False),
    "bf16_compile": dict(amp="bf16", channels_last=True, compile=True),
    "bf16_graphs": dict(amp="bf16", channels_last=True, compile=True,
                        compile_mode="reduce-overhead"),  # inductor's CUDA graphs
}
COMPARE_STEPS = 5  # losses of the first steps are compared with fp32 eager ...
BF16_LOSS_RTOL = 0.05  # ... within this relative difference (bf16 keeps 8 significant bits)
EIGEN_ZHOU_SAMPLES = 39810  # training samples per epoch of the eigen_zhou split
EPOCHS = 30  # Lite-Mono's schedule


def add_modes_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES), default=["fp32", "bf16_cl"],
                        help="training modes, each from the same seed and weights")
    parser.add_argument("--steps", type=int, default=50, help="training steps per mode")
    parser.add_argument("--timed_steps", type=int, default=40,
                        help="the last steps, timed as one block (images/s)")
    parser.add_argument("--profile_mode", choices=tuple(MODES),
                        help="profile this mode after its steps (top kernels, launches per step)")
    parser.add_argument("--profile_steps", type=int, default=3, help="steps under the profiler")
    parser.add_argument("--compile_backend",
                        help="torch.compile backend (default inductor; 'eager' only traces: the "
                             "CPU dry run)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (CPU)")


def compare_losses(losses: List[float], reference: List[float], steps: int = COMPARE_STEPS) -> dict:
    """Relative differences of the first ``steps`` losses to ``reference``'s (fp32 eager)."""
    pairs = list(zip(losses, reference))[:steps]
    diffs = [abs(a - b) / abs(b) if b else float("inf") for a, b in pairs]
    worst = max(diffs) if diffs else None
    return {"steps": len(diffs), "rel_diff": diffs, "max_rel_diff": worst,
            "rtol": BF16_LOSS_RTOL, "within_rtol": worst is not None and worst <= BF16_LOSS_RTOL}


def run_mode(cfg, mode: str, args, device: torch.device) -> dict:
    """Train ``args.steps`` steps of ``cfg`` in ``mode``; losses, speed, peak memory."""
    options = MODES[mode]
    cfg = cfg.replace(**options)
    parts, criterion = bench.build_training(cfg, device)  # seeded: the same weights every mode
    batch = bench.training_batch(cfg, device)
    losses: List[Any] = []

    def step():
        losses.append(bench.train_step(parts, criterion, batch, len(losses) + 1, cfg.train.amp))

    timed = min(args.timed_steps, args.steps - 1)
    bench.reset_peak_memory(device)
    first_step_s = bench.time_once(step, device)  # compilation / CUDA graph capture included
    for _ in range(args.steps - 1 - timed):
        step()
    block_s = bench.time_once(lambda: [step() for _ in range(timed)], device)
    values = [float(loss) for loss in losses]
    images_per_s = cfg.train.batch_size * timed / block_s
    finite = all(map(math.isfinite, values))
    result = {"mode": mode, "ok": finite, **options, "steps": len(values),
              "losses": values, "finite": finite,
              "first_step_s": first_step_s, "timed_steps": timed, "step_s": block_s / timed,
              "images_per_s": images_per_s, "peak_memory_mb": bench.peak_memory_mb(device),
              "epochs_30_h": EPOCHS * EIGEN_ZHOU_SAMPLES / images_per_s / 3600}
    if args.profile_mode == mode:
        profile = bench.profile_steps(step, device, args.profile_steps)
        result["profile"] = {"steps": args.profile_steps,
                             "kernel_launches_per_step": bench.kernel_launches(profile)
                             / args.profile_steps,
                             "top_kernels": bench.top_operators(profile, device, limit=15)}
    return result


def eager_random_numbers() -> None:
    """Make compiled code draw its random numbers as eager code does. Inductor draws them its
    own way: drop-path masks and the automasking noise would differ from eager's, and the losses
    of a compiled step could not be compared with an eager one's. Costs a few eager ``rand``
    calls per step."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True


def force_compile_backend(backend: str) -> None:
    """Make every later ``torch.compile`` call of this process (the engine's) use ``backend``;
    a ``mode`` (an inductor setting) is dropped for other backends. The CPU dry run uses
    ``eager``: dynamo traces the step, no kernels are generated."""
    original = torch.compile

    def compile_with(*args, **kwargs):
        kwargs["backend"] = backend
        if backend != "inductor":
            kwargs.pop("mode", None)
        return original(*args, **kwargs)

    torch.compile = compile_with


@subcommand("modes", "one config in several training modes: losses, images/s, memory",
            add_modes_arguments)
def modes(args) -> dict:
    if args.steps < 2 or args.timed_steps < 1:
        raise UserError(f"--steps must be >= 2 and --timed_steps >= 1, got {args.steps}, "
                        f"{args.timed_steps}", todo="pick other counts")
    if args.compile_backend:
        force_compile_backend(args.compile_backend)
    if any(MODES[mode]["compile"] for mode in args.modes):
        eager_random_numbers()
    set_threads(args)
    cfg = bench.training_config(args)
    device = bench.resolve_device(cfg.train.device)
    results = {}
    for mode in args.modes:
        try:
            results[mode] = run_mode(cfg, mode, args, device)
        except Exception as exc:  # noqa: BLE001 -- one failing mode must not hide the others
            results[mode] = {"mode": mode, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    reference = results.get("fp32", {}).get("losses")
    for mode, row in results.items():
        if reference and mode != "fp32" and "losses" in row:
            row["vs_fp32"] = compare_losses(row["losses"], reference)
    m, t = cfg.model, cfg.train
    return {"benchmark": "train_modes", "config": getattr(args, "config", None),
            "model": m.model, "height": m.height, "width": m.width, "batch_size": t.batch_size,
            "options": step_options(cfg), "modes": results,
            "environment": bench.environment(device)}


# --- infer ------------------------------------------------------------------------------------

def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, sections=("model",))
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES,
                        help="variants to time (default: --model)")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1],
                        help="batch sizes to time, one row each")
    add_device(parser)
    parser.add_argument("--amp", choices=tuple(AMP_DTYPES), default="off",
                        help="autocast dtype for the forward pass")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                        help="NHWC network and batch, ours only")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    add_timing(parser, warmup=3, repeats=20)
    parser.add_argument("--upstream_dir",
                        help="checkout of noahzn/Lite-Mono's code: also time its depth network, "
                        "interleaved with ours, from the same weights")


def infer_refusals(args, cfg) -> list:
    """Options that upstream's depth network cannot express (empty: comparable): ``--amp``,
    ``--compile``, and the network options of :func:`litemono.benchmark.depth_network_refusals`
    (each of ``--variants`` checked as ``--model``)."""
    checks = {"--amp " + args.amp: args.amp != "off", "--compile": args.compile}
    return ([name for name, hit in checks.items() if hit]
            + bench.depth_network_refusals(cfg, args.variants or ()))


def memory_format(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


def time_forwards(forwards: Dict[str, Callable[[], Any]], args, device) -> Dict[str, dict]:
    """``--warmup`` untimed, then ``--repeats`` timed rounds of every forward in turn
    (interleaved, so each sees the same machine state); a summary per forward."""
    times: Dict[str, List[float]] = {name: [] for name in forwards}
    for i in range(args.warmup + args.repeats):
        for name, forward in forwards.items():
            seconds = bench.time_once(forward, device)
            if i >= args.warmup:
                times[name].append(seconds)
    return {name: bench.summarise(seconds) for name, seconds in times.items()}


def latency_row(prefix: str, summary: dict) -> dict:
    return {f"{prefix}latency_s": summary["median_s"], f"{prefix}latency_min_s": summary["min_s"],
            f"{prefix}latency_max_s": summary["max_s"]}


def time_variant(cfg, batch_size: int, args, device: torch.device, up) -> dict:
    """Latency of one variant at one batch size (a fresh network from seed 0); beside
    upstream's network from the same weights when ``up`` is given."""
    torch.manual_seed(0)
    net = build_depth_network(cfg).eval()
    image = torch.rand(batch_size, 3, cfg.height, cfg.width)
    forwards = {}
    if up is not None:
        size = bench.upstream_encoder_size(cfg.height, cfg.width)
        up_encoder, up_decoder = bench.build_upstream_depth(up, cfg.model, cfg.drop_path, size,
                                                            cfg.scales)
        bench.check_dilations(up_encoder, net.encoder, size)
        bench.share_depth_weights(up_encoder, up_decoder, net)
        up_encoder.to(device).eval()
        up_decoder.to(device).eval()
        up_image = image.to(device)
        forwards["upstream"] = lambda: up_decoder(up_encoder(up_image))
    fmt = memory_format(args.channels_last)
    net = net.to(device, memory_format=fmt)
    run = torch.compile(net) if args.compile else net
    our_image = image.to(device).contiguous(memory_format=fmt)
    amp_dtype = AMP_DTYPES[args.amp]
    forwards["ours"] = lambda: run(our_image)

    def under_modes(forward):
        def wrapped():
            with torch.inference_mode(), torch.autocast(device.type,
                                                        dtype=amp_dtype or torch.float32,
                                                        enabled=amp_dtype is not None):
                return forward()
        return wrapped

    forwards = {name: under_modes(f) for name, f in forwards.items()}
    row = {"model": cfg.model, "batch_size": batch_size}
    if up is not None:
        reference, ours = forwards["upstream"](), forwards["ours"]()
        row["max_abs_disp_diff"] = max(float((ours[("disp", s)] - reference[("disp", s)])
                                             .abs().max()) for s in cfg.scales)
    summaries = time_forwards(forwards, args, device)
    row.update(latency_row("", summaries["ours"]), runs=summaries["ours"]["runs"],
               fps=batch_size / summaries["ours"]["median_s"])
    if up is not None:
        row.update(latency_row("upstream_", summaries["upstream"]),
                   ratio_upstream_over_ours=summaries["upstream"]["median_s"]
                   / summaries["ours"]["median_s"])
    return row


@subcommand("infer", "latency of the depth network per variant and batch size",
            add_infer_arguments)
def infer(args) -> dict:
    cfg = config_from_namespace(args).model
    device = bench.resolve_device(args.device)
    check_timing(args)
    if any(b < 1 for b in args.batch_sizes):
        raise UserError(f"--batch_sizes must be >= 1, got {args.batch_sizes}",
                        todo="pick positive sizes")
    up = None
    if args.upstream_dir is not None:
        refused = infer_refusals(args, cfg)
        if refused:
            raise UserError(f"--upstream_dir: upstream's depth network has no equivalent of "
                            f"{', '.join(refused)}", todo="drop that flag")
        up = bench.import_upstream(args.upstream_dir)
    set_threads(args)
    results = []
    for variant in args.variants or [cfg.model]:
        variant_cfg = dataclasses.replace(cfg, model=variant, mypretrain=None)
        for batch_size in args.batch_sizes:
            row = time_variant(variant_cfg, batch_size, args, device, up)
            results.append(row)
            line = (f"{variant} batch {batch_size}: {row['latency_s'] * 1000:.1f} ms, "
                    f"{row['fps']:.1f} images/s")
            if up is not None:
                line += (f"; upstream {row['upstream_latency_s'] * 1000:.1f} ms (upstream / ours "
                         f"{row['ratio_upstream_over_ours']:.2f}), max |disp diff| "
                         f"{row['max_abs_disp_diff']:.2e}")
            print(line, flush=True)
    result = {"benchmark": "inference", "height": cfg.height, "width": cfg.width,
              "amp": args.amp, "channels_last": args.channels_last, "compile": args.compile,
              "spatial_attention": cfg.spatial_attention, "bins": cfg.bins, "results": results,
              "environment": bench.environment(device)}
    if up is not None:
        result.update(upstream_dir=str(Path(args.upstream_dir).expanduser().resolve()),
                      upstream_encoder_size=list(bench.upstream_encoder_size(cfg.height,
                                                                             cfg.width)),
                      warmup=args.warmup, interleaved=True, weights_shared=True)
    return result


# --- data ---------------------------------------------------------------------------------------

def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scene", help="existing synthetic scene root (default: render one)")
    parser.add_argument("--native_height", type=int, default=375,
                        help="height of the synthetic source frames (KITTI's 375)")
    parser.add_argument("--native_width", type=int, default=1242,
                        help="width of the synthetic source frames (KITTI's 1242)")
    parser.add_argument("--height", type=int, default=192, help="training height")
    parser.add_argument("--width", type=int, default=640, help="training width")
    parser.add_argument("--items", type=int, default=32, help="items timed per mode")


def samples_per_second(dataset, items: int) -> float:
    random.seed(0)
    torch.manual_seed(0)
    dataset[0]  # warm-up: lazy imports
    start = time.perf_counter()
    for i in range(items):
        dataset[i % len(dataset)]
    return items / (time.perf_counter() - start)


@subcommand("data", "training samples/s of one data-loader worker", add_data_arguments)
def data(args) -> dict:
    from litemono.data import build_dataset
    from litemono.data.synthetic import load_scene, make_synthetic_kitti

    torch.set_num_threads(1)  # as in a DataLoader worker
    with tempfile.TemporaryDirectory() as tmp:
        if args.scene:
            scene = load_scene(args.scene)
        else:
            scene = make_synthetic_kitti(Path(tmp) / "scene", drives=1, frames_per_drive=12,
                                         height=args.native_height, width=args.native_width)
        cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir),
                         "height": args.height, "width": args.width, "png": scene.png})
        modes_ = {  # the training items of train.py (TRAIN_ITEMS), then upstream's full schema
            "no_aug": dict(cfg=cfg, is_train=False, **TRAIN_ITEMS),
            "aug_per_frame": dict(cfg=cfg, is_train=True, **TRAIN_ITEMS),
            "aug_per_item": dict(cfg=cfg.replace(jitter="per_item"), is_train=True, **TRAIN_ITEMS),
            "aug_per_frame_cached": dict(cfg=cfg, is_train=True, cache_dir=str(Path(tmp) / "cache"),
                                         **TRAIN_ITEMS),
            "upstream_items_per_frame": dict(cfg=cfg, is_train=True),
        }
        rates = {}
        for name, options in modes_.items():
            dataset = build_dataset(part="train", **options)
            if "cache_dir" in options:
                samples_per_second(dataset, len(dataset))  # builds the cache
            rates[name] = round(samples_per_second(dataset, args.items), 2)
    for name, rate in rates.items():
        print(f"{name:>24}: {rate:7.2f} samples/s per worker")
    return {"samples_per_s_per_worker": rates, "items": args.items,
            "train_size": [args.height, args.width], "native_size": [scene.height, scene.width],
            "frame_ids": cfg.data.frame_ids}


# --- teacher ------------------------------------------------------------------------------------

KITTI_SIZE = (375, 1242)  # height, width of most KITTI raw frames


def add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    from litemono.teacher.depth_anything import DEFAULT_INPUT_SIZE

    parser.add_argument("--teacher_path", help="local DA-V2 weights (default: a random network)")
    parser.add_argument("--random_size", choices=("tiny", "small"), default="tiny",
                        help="random network without --teacher_path: 'tiny' (Dinov2 hidden 32, "
                             "4 layers: the loop's overhead) or 'small' (DA-V2 Small's size)")
    add_device(parser, default="cpu")
    parser.add_argument("--frames", type=int, default=8, help="frames through the loop")
    parser.add_argument("--batch_size", type=int, default=4, help="images per teacher forward")
    parser.add_argument("--input_size", type=int, default=DEFAULT_INPUT_SIZE,
                        help="teacher input short side")
    parser.add_argument("--image_height", type=int, default=KITTI_SIZE[0],
                        help="source image height (KITTI's)")
    parser.add_argument("--image_width", type=int, default=KITTI_SIZE[1],
                        help="source image width (KITTI's)")
    parser.add_argument("--height", type=int, default=192, help="stored map height")
    parser.add_argument("--width", type=int, default=640, help="stored map width")
    add_timing(parser, warmup=1, repeats=3)


class InMemoryFrames:
    """Predictor over synthetic frames: ``load`` makes a smooth random image per frame index."""

    def __init__(self, teacher, image_size, out_size):
        self.teacher, self.image_size, self.out_size = teacher, tuple(image_size), tuple(out_size)

    def load(self, frame) -> torch.Tensor:
        batch = bench.synthetic_batch(*self.image_size, 1, [0], torch.device("cpu"),
                                      seed=frame.frame_index)
        return batch[("color", 0, 0)][0]  # (3, h, w) in [0, 1]

    def predict(self, loaded):
        return self.teacher.predict_list(loaded, self.out_size)


@subcommand("teacher", "frames/s and bytes per frame of the teacher precompute",
            add_teacher_arguments)
def teacher(args) -> dict:
    from litemono.data.splits import SplitLine
    from litemono.teacher.depth_anything import (DepthAnythingTeacher, load_teacher,
                                                 random_depth_anything)
    from litemono.teacher.precompute import run_precompute

    device = bench.resolve_device(args.device)
    check_timing(args)
    if args.frames < 1 or args.batch_size < 1:
        raise UserError(f"--frames and --batch_size must be >= 1, got {args.frames}, "
                        f"{args.batch_size}", todo="pick positive counts")
    if args.teacher_path:
        try:
            net = load_teacher(teacher_path=args.teacher_path, input_size=args.input_size,
                               device=str(device), local_files_only=True)
        except (ValueError, RuntimeError) as exc:  # a metric model, no transformers, ...
            raise UserError(str(exc), "--teacher_path", "give a relative DA-V2 model") from None
        name = args.teacher_path
    else:  # the tiny one re-initialised to give varied output (measurements.md section 6)
        extra = {"head_bias": 0.0} if args.random_size == "tiny" else {}
        net = DepthAnythingTeacher(random_depth_anything(args.random_size, **extra),
                                   args.input_size).to(device)
        name = (f"random DA-V2 {args.random_size}" +
                (" (loop overhead only)" if args.random_size == "tiny" else ""))
    set_threads(args)
    out_size = (args.height, args.width)
    predictor = InMemoryFrames(net, (args.image_height, args.image_width), out_size)
    frames = [SplitLine("bench/drive", i, "l") for i in range(args.frames)]
    images = [predictor.load(f) for f in frames[:args.batch_size]]
    predict = bench.summarise(bench.measure(lambda: predictor.predict(images), device,
                                            args.warmup, args.repeats))
    with tempfile.TemporaryDirectory(prefix="bench_teacher_") as root:
        start = time.perf_counter()
        run_precompute(predictor, frames, root, {"output_size": list(out_size)},
                       batch_size=args.batch_size, progress=False)
        bench.synchronize(device)
        loop_s = time.perf_counter() - start
        stored = sorted(Path(root).rglob("*.npz"))
        total_bytes = sum(p.stat().st_size for p in stored)
    if len(stored) != args.frames:
        raise RuntimeError(f"expected {args.frames} stored maps, found {len(stored)}")
    return {"benchmark": "teacher_precompute", "teacher": name, "device": str(device),
            "frames": args.frames, "batch_size": args.batch_size,
            "image_size": [args.image_height, args.image_width], "input_size": args.input_size,
            "output_size": list(out_size), "loop_s": loop_s, "fps": args.frames / loop_s,
            "predict_batch_s": predict["median_s"],
            "predict_fps": args.batch_size / predict["median_s"],
            "bytes_per_frame": total_bytes / args.frames,
            "raw_float16_bytes": 2 * args.height * args.width,
            "environment": bench.environment(device)}


# --- vs-upstream --------------------------------------------------------------------------------

def add_vs_upstream_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)
    parser.add_argument("--upstream_dir", help="checkout of noahzn/Lite-Mono's training code")
    parser.set_defaults(phase_repeats=0)


@subcommand("vs-upstream", "our training step beside upstream Lite-Mono's, same weights",
            add_vs_upstream_arguments)
def vs_upstream(args) -> dict:
    if args.phase_repeats or args.profile or args.distill:
        raise UserError("--phase_repeats, --profile and --distill belong to 'bench.py train'",
                        todo="drop them")
    check_timing(args)
    cfg = bench.training_config(args)
    refused = bench.upstream_refusals(cfg)
    if refused:  # before the checkout is looked at
        raise UserError(f"upstream's trainer has no equivalent of {', '.join(refused)}",
                        todo="drop that flag")
    up = bench.import_upstream(args.upstream_dir)
    if cfg.train.compile:  # ours compiled (an execution option, like --channels_last)
        eager_random_numbers()  # the same drop-path masks and noise as upstream's eager step
    device = bench.resolve_device(cfg.train.device)
    parts, criterion = bench.build_training(cfg, device, args.threads)
    m = cfg.model
    opt = up.options.LiteMonoOptions().parser.parse_args(bench.upstream_argv(cfg, device))
    encoder_size = bench.upstream_encoder_size(m.height, m.width)
    trainer = bench.build_upstream(up, opt, device, encoder_size)
    upstream_rates = bench.check_dilations(trainer.models["encoder"], parts.depth.encoder,
                                           encoder_size)
    bench.share_weights(trainer, parts)
    batch = bench.synthetic_batch(m.height, m.width, cfg.train.batch_size,
                                  bench.frame_ids_of(cfg), device, seed=cfg.train.seed)
    up_batch = {k: v for k, v in batch.items() if k != "index"}  # upstream's dataset keys
    batch = bench.training_batch(cfg, device)
    same_step = bench.same_step_losses(trainer, up_batch, parts, criterion, batch, cfg.train.seed)

    losses: Dict[str, list] = {"upstream": [], "ours": []}
    steps = {
        "upstream": lambda: losses["upstream"].append(bench.upstream_step(trainer, up_batch)),
        "ours": lambda: losses["ours"].append(float(bench.train_step(
            parts, criterion, batch, len(losses["ours"]) + 1, cfg.train.amp))),
    }
    times: Dict[str, list] = {"upstream": [], "ours": []}
    for i in range(args.warmup + args.repeats):
        for side, step in steps.items():
            if i == 0:
                torch.manual_seed(cfg.train.seed)  # the same drop-path masks and noise
            seconds = bench.time_once(step, device)
            if i >= args.warmup:
                times[side].append(seconds)
    sides = {}
    for side in steps:
        summary = bench.summarise(times[side])
        sides[side] = {"step_s": summary["median_s"], "step_min_s": summary["min_s"],
                       "step_max_s": summary["max_s"], "times_s": times[side],
                       "samples_per_s": cfg.train.batch_size / summary["median_s"],
                       "first_loss": losses[side][0]}
    return {
        "benchmark": "train_step_vs_upstream", "model": m.model, "height": m.height,
        "width": m.width, "batch_size": cfg.train.batch_size,
        "channels_last": cfg.train.channels_last, "amp": cfg.train.amp,
        "compile": cfg.train.compile,
        "options": {"scales": m.scales, "frame_ids": bench.frame_ids_of(cfg),
                    "ssim": cfg.loss.ssim, "automasking": cfg.loss.automasking,
                    "drop_path": m.drop_path},
        "upstream_dir": str(Path(args.upstream_dir).expanduser().resolve()),
        "upstream_encoder_size": list(encoder_size), "dilations": upstream_rates,
        "weights_shared": True, "runs": args.repeats, "warmup": args.warmup,
        "upstream": sides["upstream"], "ours": sides["ours"],
        "ratio_upstream_over_ours": sides["upstream"]["step_s"] / sides["ours"]["step_s"],
        "first_loss_rel_diff": abs(losses["ours"][0] - losses["upstream"][0])
        / abs(losses["upstream"][0]),
        "same_step": same_step, "environment": bench.environment(device)}


# --- learning -----------------------------------------------------------------------------------

def add_learning_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", default=["configs/synthetic"],
                        help="row YAML folder(s) or file(s)")
    parser.add_argument("--data_path", default="synthetic_kitti", help="synthetic scene root")
    parser.add_argument("--teacher_dir", help="pseudo-label folder (default: the configs' value)")
    parser.add_argument("--log_dir", default="runs/bench_learning", help="runs and tables go here")
    parser.add_argument("--num_steps", type=int, default=300, help="optimisation steps per row")
    parser.add_argument("--seed", type=int, default=0, help="random seed of every row")
    add_device(parser)
    parser.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="more options for every row")


def learning_verdict(results) -> dict:
    """The two claims of the synthetic ablation, checked on the table."""
    from litemono import ablation

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


@subcommand("learning", "does it learn? every synthetic row trained and scored",
            add_learning_arguments)
def learning(args) -> dict:
    """Rows: the untrained network, then each ``configs/synthetic`` row, trained with
    litemono.engine.train and scored as evaluate_depth.py scores (per-image median scaling)
    against the scene's true depth; finished rows (``<log_dir>/<row>/results.json``) are kept."""
    from litemono import ablation
    from litemono.data.synthetic import SPLIT_FOLDER

    log_dir = Path(args.log_dir)
    overrides = {**ablation.option_overrides(args.set), "log_dir": str(log_dir),
                 "num_steps": args.num_steps, "seed": args.seed, "device": args.device,
                 "data_path": args.data_path, "split": str(Path(args.data_path) / SPLIT_FOLDER)}
    if args.teacher_dir:
        overrides["teacher_dir"] = args.teacher_dir
    ablation.ensure_synthetic_scene(args.data_path)
    files = [f for location in args.configs for f in ablation.config_files(location)]
    rows = ablation.load_rows(files, overrides, untrained=True)
    for row in rows:
        ablation.ensure_teacher(row.cfg)
    gt_path = log_dir / "gt_depths.npz"
    if not gt_path.is_file():
        ablation.write_true_depth_gt(args.data_path,
                                     Path(rows[0].cfg.data.split) / "test_files.txt", gt_path)
    results = ablation.run_rows(rows, gt_path)
    paths = ablation.write_tables(results, log_dir, "bench_learning")
    print(f"\nsynthetic scene, {args.num_steps} steps per row, seed {args.seed} "
          f"(tables: {paths['md']}, {paths['csv']})")
    print(ablation.markdown_table(results))
    keys = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3", "macs", "train_seconds")
    return {"num_steps": args.num_steps, "seed": args.seed, **learning_verdict(results),
            "rows": {r["row"]: {k: r[k] for k in keys} for r in results}}


# --- pipeline: torchrun, checkpoint, resume, evaluation, prediction on one device ---------------

def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    add_device(parser, default="cuda")
    parser.add_argument("--work_dir", help="scene and runs go here (default: a temporary folder)")
    parser.add_argument("--height", type=int, default=64, help="training height")
    parser.add_argument("--width", type=int, default=192, help="training width")
    parser.add_argument("--batch_size", type=int, default=2, help="training batch size")
    parser.add_argument("--steps", type=int, default=4, help="steps before the resume (then 2x)")
    parser.add_argument("--model", default="lite-mono-tiny", choices=VARIANT_NAMES,
                        help="encoder variant trained")
    parser.add_argument("--timeout_s", type=float, default=120, help="per tool run")


def run_tool(argv: List[str], timeout_s: float, env: Optional[dict] = None,
             keep_output: bool = False) -> dict:
    """Run one command in its own process group; its return code, seconds and output's tail
    (and the whole output under ``"output"`` with ``keep_output``)."""
    start = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True, env=env)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        code = process.returncode
    except subprocess.TimeoutExpired:  # torchrun's workers too: the whole group goes
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        code = None
    run = {"command": " ".join(argv[1:]) if argv[0] == sys.executable else " ".join(argv),
           "returncode": code, "seconds": time.perf_counter() - start,
           "timed_out": code is None, "ok": code == 0, "tail": (output or "")[-1500:]}
    return {**run, "output": output or ""} if keep_output else run


@subcommand("pipeline", "torchrun training, resume, evaluation and prediction on a tiny scene",
            add_pipeline_arguments)
def pipeline(args) -> dict:
    from litemono import ablation
    from litemono import checkpoint as ckpt
    from litemono.data.synthetic import load_scene

    device = bench.resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as tmp:
        work = Path(args.work_dir or tmp)
        scene_root, runs = work / "scene", work / "runs"
        py = sys.executable
        steps: Dict[str, dict] = {}

        def tool(name, argv):
            steps[name] = run_tool([py, *argv], args.timeout_s)
            return steps[name]["ok"]

        ok = tool("render_scene", ["scripts/make_synthetic_kitti.py", "--root", str(scene_root),
                                   "--drives", "1", "--frames_per_drive", "10", "--height", "96",
                                   "--width", "320", "--no-stereo", "--workers", "2"])
        if ok:
            scene = load_scene(scene_root)
            train_argv = ["-m", "torch.distributed.run", "--nproc_per_node", "1", "train.py",
                          "--data_path", str(scene.root), "--split", str(scene.split_dir),
                          "--png" if scene.png else "--no-png",
                          "--height", str(args.height), "--width", str(args.width),
                          "--batch_size", str(args.batch_size), "--num_workers", "0",
                          "--model", args.model, "--weights_init", "scratch",
                          "--mypretrain", "none", "--log_dir", str(runs), "--model_name", "ddp",
                          "--device", str(device), "--log_frequency", "1"]
            ok = tool("torchrun_train", [*train_argv, "--num_steps", str(args.steps)])
        if ok:
            ok = tool("torchrun_resume", [*train_argv, "--num_steps", str(2 * args.steps),
                                          "--resume", "auto"])
        if ok:
            state = ckpt.load_training_state(runs / "ddp" / "checkpoints" / "last.pt")
            steps["resume_check"] = {"ok": state["step"] == 2 * args.steps,
                                     "step_after_resume": state["step"]}
            weights = sorted((runs / "ddp" / "models").glob("weights_*"),
                             key=lambda p: int(p.name.split("_")[-1]))[-1]
            gt = work / "gt.npz"
            ablation.write_true_depth_gt(str(scene.root), scene.split_dir / "test_files.txt", gt)
            tool("evaluate", ["evaluate_depth.py", "--load_weights_folder", str(weights),
                              "--data_path", str(scene.root), "--split_folder",
                              str(scene.split_dir), "--gt_path", str(gt), "--eval_split",
                              "eigen", "--device", str(device), "--num_workers", "0",
                              "--batch_size", "2"])
            image = sorted(scene.root.rglob("image_02/data/*.*"))[0]
            tool("predict", ["scripts/predict.py", "--load_weights_folder", str(weights),
                             "--image_path", str(image), "--output_dir", str(work / "pred"),
                             "--device", str(device)])
    return {"benchmark": "pipeline", "device": str(device), "ok": all(s["ok"] for s in
                                                                       steps.values()),
            "steps": steps, "environment": bench.environment(device)}


# --- gpu: issue 22's measurements, each in its own process --------------------------------------

GPU_BUDGET_S = 450  # the whole run; the device tool allows 600 s per command
ROW_CONFIGS = "configs/kitti/0*.yaml"
BASELINE, FULL = "01_baseline", "05_full"
COMPILED_ROWS = (BASELINE, FULL)  # ~1 min of compilation each: the two speed targets
COMPILED_MODE = "bf16_graphs"  # how COMPILED_ROWS run compiled: bf16, reduce-overhead


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", nargs="?", default=os.environ.get("OUT", "bench_gpu_out"),
                        help="folder for the JSON files (default: $OUT, else bench_gpu_out)")
    parser.add_argument("--dry_run", action="store_true",
                        help="every measurement's code path on the CPU at tiny sizes, 2 steps "
                             "(compile only traced: backend 'eager')")
    parser.add_argument("--rows", nargs="+", help=f"row configs (default: {ROW_CONFIGS})")
    parser.add_argument("--budget_s", type=float, default=GPU_BUDGET_S,
                        help="measurements that would start later are recorded as skipped")


def gpu_plan(args) -> List[tuple]:
    """``(name, argv, timeout_s)`` of every measurement, the most important first.

    Budget on an H200 (estimates; the summary records each one's seconds): five eager rows,
    fp32 and bf16 + channels_last, 50 steps each, ~25 s a row (~2 min); the baseline row
    compiled in ``COMPILED_MODE`` (bf16 + channels_last + ``--compile_mode reduce-overhead``,
    i.e. CUDA graphs) with its profile, ~1.5 min;
    torchrun + resume + evaluation + prediction on a tiny scene, ~1 min; the teacher, ~0.5 min;
    the full row compiled, ~1.5 min. Rows 02-04 are not compiled: compilation costs about a
    minute per row and they sit between the two rows the issue sets targets for.
    """
    rows = args.rows or sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(ROW_CONFIGS))
    if args.dry_run:
        device, size = "cpu", ["--height", "32", "--width", "64", "--batch_size", "2"]
        steps = ["--steps", "2", "--timed_steps", "1", "--profile_steps", "1", "--threads", "2"]
        compiled = ["--compile_backend", "eager"]
        teacher = ["--random_size", "tiny", "--frames", "2", "--batch_size", "2", "--input_size",
                   "28", "--image_height", "40", "--image_width", "120", "--height", "32",
                   "--width", "64", "--warmup", "0", "--repeats", "1"]
        pipeline_args = ["--height", "32", "--width", "64", "--steps", "1"]
        timeouts = {"row": 300, "compiled": 600, "pipeline": 600, "teacher": 300}
    else:
        device, size = "cuda", ["--height", "192", "--width", "640", "--batch_size", "12"]
        steps = ["--steps", "50", "--timed_steps", "40", "--profile_steps", "3"]
        compiled = []
        teacher = ["--random_size", "small", "--frames", "96", "--batch_size", "8"]
        pipeline_args = ["--model", "lite-mono"]
        timeouts = {"row": 120, "compiled": 180, "pipeline": 150, "teacher": 90}
    common = [*size, "--device", device, "--weights_init", "scratch", "--mypretrain", "none",
              *steps]
    plan, soon, later = [], [], []
    for row in rows:
        name = Path(row).stem
        profile = ["--profile_mode", "bf16_cl"] if name == BASELINE else []
        plan.append((f"row_{name}", ["modes", "--config", row, *common, "--modes", "fp32",
                                     "bf16_cl", *profile], timeouts["row"]))
        if name in COMPILED_ROWS:  # the baseline's right after the eager rows, the full row last
            profile = ["--profile_mode", COMPILED_MODE] if name == BASELINE else []
            (soon if name == BASELINE else later).append(
                (f"compiled_{name}", ["modes", "--config", row, *common, *compiled, "--modes",
                                      COMPILED_MODE, *profile], timeouts["compiled"]))
    plan += soon
    plan.append(("pipeline", ["pipeline", "--device", device, *pipeline_args],
                 timeouts["pipeline"]))
    plan.append(("teacher", ["teacher", "--device", device, *teacher], timeouts["teacher"]))
    return plan + later


def measure_in_process(argv: List[str], timeout_s: float) -> dict:
    """Run ``bench.py ARGV`` in its own process; its JSON result, or the failure as JSON."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = run_tool([sys.executable, str(Path(__file__).resolve()), *argv], timeout_s, env,
                   keep_output=True)
    lines = run["output"].strip().splitlines()
    if run["ok"] and lines:
        try:
            return {"ok": True, "seconds": run["seconds"], "result": json.loads(lines[-1])}
        except json.JSONDecodeError:
            pass
    failure = ("timed out" if run["timed_out"] else f"exit status {run['returncode']}"
               if not run["ok"] else "no JSON on the last line")
    return {"ok": False, "seconds": run["seconds"], "error": failure, "tail": run["tail"]}


def gpu_summary(measurements: Dict[str, dict]) -> dict:
    """Correctness checks, the speed table (images/s, peak memory, 30-epoch hours per row and
    mode, speed-up over the row's fp32 eager) and the baseline's profile in its fastest mode."""
    rows: Dict[str, Dict[str, dict]] = {}
    for name, measurement in measurements.items():
        if name.startswith(("row_", "compiled_")) and measurement.get("ok"):
            row = name.split("_", 1)[1]
            rows.setdefault(row, {}).update(measurement["result"]["modes"])
    table, checks, profiles = [], {}, {}
    for row, modes_ in sorted(rows.items()):
        reference = modes_.get("fp32", {})
        for mode, result in modes_.items():
            if "losses" in result and reference.get("losses") and mode != "fp32":
                result["vs_fp32"] = compare_losses(result["losses"], reference["losses"])
            checks[f"{row}/{mode}"] = {"ok": result.get("ok", False),
                                       "finite": result.get("finite"),
                                       "vs_fp32": result.get("vs_fp32"),
                                       "error": result.get("error")}
            if "images_per_s" in result:
                table.append({"row": row, "mode": mode, "images_per_s": result["images_per_s"],
                              "step_s": result["step_s"],
                              "peak_memory_mb": result["peak_memory_mb"],
                              "epochs_30_h": result["epochs_30_h"],
                              "speedup_over_fp32": result["images_per_s"]
                              / reference["images_per_s"] if "images_per_s" in reference else None})
            if "profile" in result:
                profiles[f"{row}/{mode}"] = result
    fastest = max(profiles.values(), key=lambda r: r["images_per_s"], default=None)
    return {"correctness": checks, "speed": table,
            "profile": None if fastest is None else {"mode": fastest["mode"],
                                                     **fastest["profile"]},
            "all_ok": all(m.get("ok") for m in measurements.values())
            and all(c["ok"] for c in checks.values())}


@subcommand("gpu", "issue 22's GPU run: correctness, torchrun/resume/eval/predict, teacher, speed",
            add_gpu_arguments)
def gpu(args) -> dict:
    out = Path(args.out)
    (out / "measurements").mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    environment = {"torch": torch.__version__, "dry_run": args.dry_run,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                   "nvidia_smi": run_tool(["nvidia-smi", "--query-gpu=name,memory.total,"
                                           "driver_version", "--format=csv,noheader"], 30)["tail"]
                   .strip() if shutil.which("nvidia-smi") else None}
    measurements: Dict[str, dict] = {}
    for name, argv, timeout_s in gpu_plan(args):
        left = deadline - time.monotonic()
        if left < 10:
            measurement = {"ok": False, "error": f"skipped: the {args.budget_s:.0f} s budget "
                                                  "is spent", "argv": argv}
        else:
            print(f"[bench gpu] {name}: bench.py {' '.join(argv)}", flush=True)
            measurement = {**measure_in_process(argv, min(timeout_s, left)), "argv": argv}
            print(f"[bench gpu] {name}: {'ok' if measurement['ok'] else measurement['error']} "
                  f"in {measurement['seconds']:.0f} s", flush=True)
        measurements[name] = measurement
        write_text(out / "measurements" / f"{name}.json",
                          json.dumps(measurement, indent=1, sort_keys=True))
        summary = {"benchmark": "gpu", "environment": environment,
                   **gpu_summary(measurements), "measurements": sorted(measurements)}
        write_text(out / "summary.json", json.dumps(summary, indent=1, sort_keys=True))
    for entry in summary["speed"]:
        print(f"{entry['row']:>22} {entry['mode']:>13}: {entry['images_per_s']:8.1f} images/s, "
              f"{entry['peak_memory_mb']:8.0f} MiB, 30 epochs {entry['epochs_30_h']:.1f} h")
    return {"benchmark": "gpu", "out": str(out), "all_ok": summary["all_ok"],
            "measurements": {name: m["ok"] for name, m in measurements.items()}}


# --- cpu: docs/performance.md's CPU numbers -----------------------------------------------------

def add_cpu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("upstream_dir", help="checkout of noahzn/Lite-Mono's training code")
    parser.add_argument("out", nargs="?", default="bench_cpu_out", help="folder for the JSON files")


def cpu_plan(upstream_dir: str) -> List[tuple]:
    """Training step of lite-mono at 320x96 batch 4 and 640x192 batch 2 beside upstream's
    (eager float32), ours in float32, float32 with ``--compile`` and bf16 (ours channels_last:
    NHWC suits oneDNN; upstream runs NCHW); inference of every variant at 640x192 batch 1 beside
    upstream's network; the data loader per worker."""
    plan = []
    for height, width, batch in ((96, 320, 4), (192, 640, 2)):
        modes = (("off", ["--amp", "off"]), ("off_compile", ["--amp", "off", "--compile"]),
                 ("bf16", ["--amp", "bf16"]))
        for mode, flags in modes:
            plan.append((f"train_{width}x{height}_b{batch}_{mode}", [
                "vs-upstream", "--upstream_dir", upstream_dir, "--model", "lite-mono",
                "--device", "cpu", "--height", str(height), "--width", str(width),
                "--batch_size", str(batch), "--repeats", "10", *flags, "--channels_last"]))
    plan.append(("infer_640x192", ["infer", "--upstream_dir", upstream_dir, "--device", "cpu",
                                   "--height", "192", "--width", "640",
                                   "--variants", *VARIANT_NAMES,
                                   "--batch_sizes", "1", "--channels_last"]))
    plan.append(("data_640x192", ["data", "--height", "192", "--width", "640", "--items", "48"]))
    return plan


@subcommand("cpu", "docs/performance.md's CPU numbers beside upstream, one JSON file each",
            add_cpu_arguments)
def cpu(args) -> dict:
    bench.import_upstream(args.upstream_dir)  # a wrong checkout fails before an hour of work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = {}
    for name, argv in cpu_plan(args.upstream_dir):
        measurement = measure_in_process(argv, timeout_s=3600)
        done[name] = measurement["ok"]
        write_text(out / f"{name}.json", json.dumps(measurement.get("result", measurement),
                                                          sort_keys=True))
    return {"benchmark": "cpu", "out": str(out), "measurements": done}


# --- the command line ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog=TOOL, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, (help, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(sub.add_parser(name, help=help, description=help))
    return parser


@cli(TOOL)
def main(argv=None) -> dict:
    """Run one subcommand; print its result as the last stdout line (JSON) and return it."""
    args = build_parser().parse_args(argv)
    result = SUBCOMMANDS[args.command][2](args)
    bench.print_json(result)
    return result


if __name__ == "__main__":
    main()
