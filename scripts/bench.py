"""Benchmarks: training step, inference, data loader, teacher precompute, one planned GPU run.

    python scripts/bench.py train --config configs/kitti/05_full.yaml --modes fp32 bf16_cl
    python scripts/bench.py infer --variants lite-mono lite-mono-tiny --batch_sizes 1 8
    python scripts/bench.py teacher --device cuda --batch_size 8 --repeats 12
    python scripts/bench.py gpu OUT [--dry_run]

Each prints one JSON object last. ``--warmup`` untimed calls, then ``--repeats`` timed between
device synchronisations (median, min, max). Peak memory: CUDA's most allocated, on a CPU the
largest resident set. ``train`` steps on a synthetic batch on the device (every train.py flag
applies). ``gpu`` runs gpu_plan (under 8 minutes on one GPU) into OUT/gpu.json.
"""
import argparse
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from litemono import engine  # noqa: E402
from litemono.config import add_config_arguments, config_from_namespace, from_dict  # noqa: E402
from litemono.device import resolve_device  # noqa: E402
from litemono.errors import OneLineParser, UserError, cli  # noqa: E402
from litemono.io import write_json  # noqa: E402
from litemono.losses.criterion import build_criterion  # noqa: E402
from litemono.model import to_device  # noqa: E402
from litemono.models.build import build_depth_network, encoder_names  # noqa: E402

TOOL, VARIANT_NAMES = "bench.py", encoder_names()
MINIMUMS = dict(warmup=0, repeats=1, items=1, batch_size=1, batch_sizes=1, input_size=14)
MODES = {  # the train options of each mode
    "fp32": dict(amp="off", channels_last=False, compile=False),
    "bf16_cl": dict(amp="bf16", channels_last=True, compile=False),
    "bf16_graphs": dict(amp="bf16", channels_last=True, compile=True,
                        compile_mode="reduce-overhead")}  # replayed as CUDA graphs
COMPARE_STEPS, LOSS_RTOL = 5, 0.05  # a mode's first losses within 5% of fp32's (bf16: 8 bits)
EIGEN_ZHOU_SAMPLES, EIGEN_ZHOU_TARGETS = 39810, 44234  # training items; teacher maps


def timings(fns, device, warmup: int, repeats: int, name="step"):
    """``warmup`` untimed rounds, then ``repeats`` timed; a round calls each of ``fns`` (a dict:
    interleaved, so every side meets the same machine state; or one callable) once. Per side:
    ``<name>_s`` (the median), ``<name>_min_s``, ``<name>_max_s``, ``runs``, ``times_s``."""
    sides, times = fns if isinstance(fns, dict) else {"": fns}, {}
    for i in range(warmup + repeats):
        for side, fn in sides.items():
            start = sync(device)
            fn()
            if i >= warmup:
                times.setdefault(side, []).append(sync(device) - start)
    rows = {side: {f"{name}_s": statistics.median(t), f"{name}_min_s": min(t),
                   f"{name}_max_s": max(t), "runs": len(t), "times_s": t}
            for side, t in times.items()}
    return rows if isinstance(fns, dict) else rows[""]


def sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def peak_memory_mb(device, reset=False) -> float:
    if device.type != "cuda":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux counts KiB
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def environment(device) -> dict:
    return {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def check_counts(args):
    for name, low in MINIMUMS.items():
        value = getattr(args, name, low)
        if min(value if isinstance(value, list) else [value]) < low:
            raise UserError(f"{value} is below {low}", f"--{name}", f"give at least {low}")


KITTI_K = ((0.58, 0, 0.5, 0), (0, 1.92, 0.5, 0), (0, 0, 1, 0), (0, 0, 0, 1))  # / image size


def synthetic_batch(height, width, batch_size, frame_ids, device, teacher=False, seed=0) -> dict:
    """A collated batch in docs/architecture.md's sample schema on ``device``: smooth random
    images, frame f the target moved f * 2 columns sideways (``"s"``: after the last), KITTI's
    intrinsics, ``"stereo_T"`` with ``"s"``, ``"teacher_disp"`` with ``teacher``."""
    shifts = {f: (len(frame_ids) if f == "s" else f) * 2 for f in frame_ids}
    margin = max(abs(shift) for shift in shifts.values())
    coarse = torch.rand(batch_size, 3, max(height // 8, 2), (width + 2 * margin) // 8 + 1,
                        generator=torch.Generator().manual_seed(seed))
    wide = F.interpolate(coarse, size=(height, width + 2 * margin), mode="bilinear")
    batch = {"index": torch.arange(batch_size)}
    for frame, shift in shifts.items():
        image = wide[..., margin + shift:margin + shift + width]
        for scale in range(4):
            if scale:
                image = F.interpolate(image, size=(height >> scale, width >> scale), mode="area")
            batch[("color", frame, scale)] = image.contiguous().to(device)
            batch[("color_aug", frame, scale)] = (image * 0.9 + 0.05).to(device)
    for scale in range(4):
        K = torch.tensor(KITTI_K) * torch.tensor([[width >> scale], [height >> scale], [1], [1]])
        batch[("K", scale)] = K.expand(batch_size, 4, 4).to(device)
        batch[("inv_K", scale)] = torch.linalg.inv(K).expand(batch_size, 4, 4).to(device)
    if "s" in frame_ids:
        stereo_T = torch.eye(4)
        stereo_T[0, 3] = -0.1  # monodepth2's sign for the left camera
        batch["stereo_T"] = stereo_T.expand(batch_size, 4, 4).to(device)
    if teacher:
        batch["teacher_disp"] = (0.1 + wide[:, :1, :, margin:margin + width]).to(device)
    return batch


def training_config(args):
    """The command line's config, built without files or downloads: scratch pose ResNet, no
    pretrained encoder, a teacher folder never read (the batch has the maps)."""
    if getattr(args, "distill_weight", 0) > 0 or getattr(args, "chamfer_weight", 0) > 0:
        args.teacher_dir = getattr(args, "teacher_dir", None) or "<in-memory synthetic teacher>"
    return config_from_namespace(args).replace(weights_init="scratch", mypretrain=None)


def build_training(cfg, device, compile_backend="inductor"):
    """``(training, model, criterion)`` as train.py builds them (seeded, in train mode) and a
    synthetic batch."""
    torch.manual_seed(cfg.train.seed)
    training = engine.build_training(cfg, device, world=1)
    model, criterion = engine.step_modules(training, build_criterion(cfg), cfg, device, 1,
                                           backend=compile_backend or "inductor")
    frames = list(cfg.data.frame_ids) + ["s"] * cfg.data.use_stereo
    batch = synthetic_batch(cfg.model.height, cfg.model.width, cfg.train.batch_size, frames,
                            device, teacher=cfg.data.teacher_dir is not None, seed=cfg.train.seed)
    training.model.train()
    return training, model, criterion, to_device(batch, device, cfg.train.channels_last)


def train_mode(cfg, args, device, profiled=False) -> dict:
    """One first step (compilation included), ``--warmup - 1`` untimed, ``--repeats`` timed."""
    if cfg.train.compile:  # random numbers drawn as eager code draws them: comparable losses
        inductor_config.fallback_random = True
    training, model, criterion, batch = build_training(cfg, device, args.compile_backend)
    losses, t = [], cfg.train

    def step():  # clone: a CUDA-graph replay reuses the buffer of the previous loss
        losses.append(engine.train_step(training, model, criterion, batch, 1)[0].clone())

    peak_memory_mb(device, reset=True)
    first_step_s = timings(step, device, 0, 1)["step_s"]
    timed = timings(step, device, max(args.warmup - 1, 0), args.repeats)
    values = [float(loss) for loss in losses]
    return {"ok": all(map(math.isfinite, values)), "amp": t.amp, "channels_last": t.channels_last,
            "compile": t.compile, "compile_mode": t.compile_mode if t.compile else None,
            "first_step_s": first_step_s, **timed, "samples_per_s": t.batch_size / timed["step_s"],
            "epochs_30_h": 30 * EIGEN_ZHOU_SAMPLES * timed["step_s"] / t.batch_size / 3600,
            "peak_memory_mb": peak_memory_mb(device), "first_loss": values[0], "losses": values,
            **({"profile": profile_steps(step, device, args.profile_steps)} if profiled else {})}


def profile_steps(step, device, steps) -> dict:
    """``steps`` more steps under torch.profiler: operators by self time, kernels per step."""
    kinds = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=kinds) as prof:
        for _ in range(steps):
            step()
        sync(device)
    kernels = sum(getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA
                  for e in prof.events())
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return {"steps": steps, "kernel_launches_per_step": kernels / steps,
            "top_kernels": prof.key_averages().table(sort_by=key, row_limit=15)}


def compare_losses(losses, reference, steps=COMPARE_STEPS) -> dict:
    """Relative differences of the first ``steps`` losses to the reference's (fp32)."""
    diffs = [abs(a - b) / abs(b) if b else math.inf for a, b in zip(losses[:steps], reference)]
    worst = max(diffs, default=None)
    return {"steps": len(diffs), "rel_diff": diffs, "max_rel_diff": worst, "rtol": LOSS_RTOL,
            "within_rtol": worst is not None and worst <= LOSS_RTOL}


def train(args) -> dict:
    cfg = training_config(args)
    device, modes, rows = resolve_device(cfg.train.device), args.modes or ["as_given"], {}
    for mode in modes:
        try:
            rows[mode] = train_mode(cfg.replace(**MODES.get(mode, {})), args, device,
                                    profiled=args.profile_steps > 0 and mode == modes[-1])
        except Exception as exc:  # noqa: BLE001 -- one failing mode must not hide the rest
            if not args.modes:
                raise
            rows[mode] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    fp32 = rows.get("fp32", {})
    for mode, row in rows.items():
        if mode != "fp32" and row["ok"] and fp32.get("ok"):
            row["vs_fp32"] = compare_losses(row["losses"], fp32["losses"])
            row["speedup_over_fp32"] = fp32["step_s"] / row["step_s"]
    first, m = next(iter(rows.values())), cfg.model
    return {"benchmark": "train_step", "model": m.model, "height": m.height, "width": m.width,
            "batch_size": cfg.train.batch_size, "warmup": args.warmup, "modes": rows,
            **{k: first.get(k) for k in ("step_s", "samples_per_s", "peak_memory_mb",
                                         "first_loss")}, "environment": environment(device)}


def infer(args) -> dict:
    cfg, device = config_from_namespace(args), resolve_device(args.device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    results = []
    for variant in args.variants or [cfg.model.model]:
        torch.manual_seed(0)
        net = build_depth_network(cfg.replace(model=variant, mypretrain=None).model)
        net = net.eval().to(device, memory_format=layout)
        for batch_size in args.batch_sizes:
            image = torch.rand(batch_size, 3, cfg.model.height, cfg.model.width, device=device)
            image = image.contiguous(memory_format=layout)
            with torch.inference_mode():
                timed = timings(lambda: net(image), device, args.warmup, args.repeats, "latency")
            results.append({"model": variant, "batch_size": batch_size, **timed,
                            "fps": batch_size / timed["latency_s"]})
    return {"benchmark": "inference", "height": cfg.model.height, "width": cfg.model.width,
            "channels_last": args.channels_last, "results": results,
            "environment": environment(device)}


def data(args) -> dict:
    from litemono.data import build_dataset
    from litemono.data.synthetic import make_synthetic_kitti

    torch.set_num_threads(1)  # as in a DataLoader worker
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_synthetic_kitti(Path(tmp) / "scene", drives=1, frames_per_drive=12,
                                     height=args.native_height, width=args.native_width)
        cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir),
                         "height": args.height, "width": args.width, "png": scene.png})
        ours = dict(cfg=cfg, is_train=True, **engine.TRAIN_ITEMS)  # what a training step reads
        modes = {"no_aug": {**ours, "is_train": False}, "aug_per_frame": ours,
                 "aug_per_item": {**ours, "cfg": cfg.replace(jitter="per_item")},
                 "aug_per_frame_cached": {**ours, "cache_dir": str(Path(tmp) / "cache")},
                 "upstream_items_per_frame": dict(cfg=cfg, is_train=True)}  # upstream's keys
        rates = {}
        for name, options in modes.items():
            dataset = build_dataset(part="train", **options)
            for i in range(len(dataset) if "cache_dir" in options else 1):
                dataset[i]  # lazy imports, the first file opened; the cache filled
            start = time.perf_counter()
            for i in range(args.items):
                dataset[i % len(dataset)]
            rates[name] = round(args.items / (time.perf_counter() - start), 2)
    return {"benchmark": "data", "samples_per_s_per_worker": rates, "items": args.items,
            "train_size": [args.height, args.width], "native_size": [scene.height, scene.width]}


def teacher(args) -> dict:
    from litemono.data.splits import SplitLine
    from litemono.teacher.depth_anything import (DepthAnythingTeacher, lower_bound_size,
                                                 random_depth_anything)
    from litemono.teacher.precompute import ImageTeacher, run_precompute

    device, out_size = resolve_device(args.device), (args.height, args.width)
    net = DepthAnythingTeacher(random_depth_anything(args.architecture), args.input_size)
    predictor = ImageTeacher(net.to(device), "<in memory>", False, out_size)
    images = list(torch.rand(args.batch_size, 3, args.native_height, args.native_width))
    predictor.load = lambda frame: images[frame.frame_index % len(images)]  # decoding: `data`
    frames = [SplitLine("bench", i, "l") for i in range(args.batch_size * args.repeats)]
    peak_memory_mb(device, reset=True)
    timed = timings(lambda: predictor.predict(images), device, args.warmup, args.repeats,
                    "batch")  # the teacher alone: resize, network, resize back
    with tempfile.TemporaryDirectory() as root:  # then the loop: + float16 .npz, statistics
        start = time.perf_counter()
        run_precompute(predictor, frames, root, {"output_size": list(out_size)},
                       batch_size=args.batch_size, progress=False)
        loop_s = time.perf_counter() - start
        map_bytes = statistics.mean(p.stat().st_size for p in Path(root).rglob("*.npz"))
    return {"benchmark": "teacher_precompute", "architecture": args.architecture,
            "parameters": sum(p.numel() for p in net.parameters()), "batch_size": args.batch_size,
            "native_size": [args.native_height, args.native_width], "output_size": out_size,
            "input_size": lower_bound_size(args.native_height, args.native_width,
                                           args.input_size), **timed,
            "teacher_frames_per_s": args.batch_size / timed["batch_s"], "frames": len(frames),
            "loop_s": loop_s, "frames_per_s": len(frames) / loop_s, "map_bytes": map_bytes,
            "eigen_zhou_min": EIGEN_ZHOU_TARGETS * loop_s / len(frames) / 60,
            "peak_memory_mb": peak_memory_mb(device), "environment": environment(device)}


ROW_CONFIGS, TIME_LIMIT_S = "configs/kitti/0*.yaml", 8 * 60  # the plan's own limit, one GPU
COMPILED_ROWS, COMPILED_MODE = ("01_baseline", "05_full"), "bf16_graphs"


def gpu_plan(args) -> list:
    """``(name, argv, timeout_s)`` per measurement, the most important first: each row config
    in fp32 and bf16_cl (~25 s a row on an H100), the baseline compiled with CUDA graphs and
    profiled (~90 s), inference of every variant, the loader, the teacher precompute (~30 s
    each), the other compiled row (~90 s). ``--dry_run``: tiny, on the CPU, compilation traced."""
    dry, rows = args.dry_run, args.rows or sorted(
        str(p.relative_to(ROOT)) for p in ROOT.glob(ROW_CONFIGS))
    size = ["--height", "32", "--width", "64"] if dry else ["--height", "192", "--width", "640"]
    device, batch = ("cpu", "2") if dry else ("cuda", "12")
    timing = ["--warmup", "1", "--repeats", "1"] if dry else ["--warmup", "10", "--repeats", "30"]
    native = ["--native_height", "48", "--native_width", "160"] * dry
    train = ["train", *size, "--batch_size", batch, "--device", device, "--weights_init",
             "scratch", "--mypretrain", "none", *timing, *["--compile_backend", "eager"] * dry]
    plan = [(f"row_{Path(r).stem}", [*train, "--config", r, "--modes", "fp32", "bf16_cl"], 90)
            for r in rows]
    compiled = [(f"compiled_{Path(r).stem}", [*train, "--config", r, "--modes", "fp32",
                 COMPILED_MODE, *["--profile_steps", "3"] * (Path(r).stem == COMPILED_ROWS[0])],
                 150) for r in rows if Path(r).stem in COMPILED_ROWS]
    teacher_args = (["--architecture", "tiny", "--input_size", "28", "--batch_size", "2", *timing]
                    if dry else ["--batch_size", "8", "--warmup", "2", "--repeats", "12"])
    plan += [*compiled[:1], ("infer", ["infer", "--variants", *VARIANT_NAMES, *size,
                                       "--batch_sizes", "1", batch, "--device", device,
                                       "--channels_last", *timing], 60),
             ("data", ["data", *size, *native, "--items", "2" if dry else "48"], 90),
             ("teacher", ["teacher", *size, *native, "--device", device, *teacher_args], 60),
             *compiled[1:]]
    return [(name, argv, 300 if dry else timeout_s) for name, argv, timeout_s in plan]


def run_measurement(argv, timeout_s: float) -> dict:
    """``bench.py ARGV`` in its own process group: its JSON result, or why there is none."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / TOOL), *argv], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output = process.communicate(timeout=timeout_s)[0]
        error = f"exit status {process.returncode}" if process.returncode else None
    except subprocess.TimeoutExpired:  # the whole group: compile workers too
        os.killpg(process.pid, signal.SIGKILL)
        output, error = process.communicate()[0], "timed out"
    seconds = time.monotonic() - start
    try:
        if error is None:
            return {"ok": True, "seconds": seconds, "result": json.loads(output.splitlines()[-1])}
    except (IndexError, json.JSONDecodeError):
        error = "no JSON on the last line"
    return {"ok": False, "seconds": seconds, "error": error, "tail": output[-1500:]}


def gpu_summary(measurements: dict) -> dict:
    """A line per measurement and training mode (speed, memory, the loss check against the same
    process's fp32) and whether every measurement and check passed."""
    table = [{"measurement": name, "mode": mode, **{k: row.get(k) for k in (
        "ok", "error", "step_s", "samples_per_s", "peak_memory_mb", "speedup_over_fp32")},
        "losses_within_rtol": row.get("vs_fp32", {}).get("within_rtol")}
        for name, m in measurements.items()
        for mode, row in m.get("result", {}).get("modes", {}).items()]
    return {"table": table, "all_ok": all(m["ok"] for m in measurements.values()) and all(
        line["ok"] and line["losses_within_rtol"] is not False for line in table)}


def gpu(args) -> dict:
    deadline, measurements = time.monotonic() + args.time_limit_s, {}
    header = {"benchmark": "gpu", "dry_run": args.dry_run, "date": time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime()), **environment(resolve_device("auto"))}
    for name, argv, timeout_s in gpu_plan(args):
        left = deadline - time.monotonic()
        done = (run_measurement(argv, min(timeout_s, left)) if left >= 10 else
                {"ok": False, "error": "skipped: the run's time limit is reached"})
        print(f"[bench gpu] {name}: {done.get('error', 'ok')} in {done.get('seconds', 0):.0f} s:"
              f" bench.py {' '.join(argv)}", flush=True)
        measurements[name] = {**done, "argv": argv}
        summary = {**header, **gpu_summary(measurements), "measurements": measurements}
        write_json(Path(args.out) / "gpu.json", summary)  # each time: a killed run leaves it
    return {"benchmark": "gpu", "out": args.out, "all_ok": summary["all_ok"],
            "measurements": {name: m["ok"] for name, m in measurements.items()}}


COMMANDS = {"train": "seconds per training step and peak memory, per mode",
            "infer": "latency of the depth network per variant and batch size",
            "data": "training samples/s of one data-loader worker",
            "teacher": "frames/s and peak memory of the teacher precompute",
            "gpu": "the planned GPU run (under 8 minutes), JSON files in OUT"}


def build_parser():
    from litemono.teacher.depth_anything import DEFAULT_INPUT_SIZE, RANDOM_ARCHITECTURES

    parser = OneLineParser(prog=TOOL, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    train_p, infer_p, data_p, teacher_p, gpu_p = (
        sub.add_parser(name, help=text, description=text) for name, text in COMMANDS.items())
    for p, warmup, repeats in ((train_p, 2, 8), (infer_p, 3, 20), (teacher_p, 1, 5)):
        p.add_argument("--warmup", type=int, default=warmup, help="untimed calls first")
        p.add_argument("--repeats", type=int, default=repeats, help="timed calls (median)")
    for p in (infer_p, teacher_p):
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
        p.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                       help="same as --device cpu")
    for p in (data_p, teacher_p):
        for name, default in (("native_height", 375), ("native_width", 1242), ("height", 192),
                              ("width", 640)):
            p.add_argument(f"--{name}", type=int, default=default, help=("source frame " if
                           "native" in name else "training (stored map) ") + name.split("_")[-1])
    add_config_arguments(train_p)
    train_p.add_argument("--modes", nargs="+", choices=tuple(MODES),
                         help="train in each mode from one seed (default: the flags as given)")
    train_p.add_argument("--compile_backend", help="torch.compile backend (default inductor; "
                         "'eager' only traces: the CPU dry run)")
    train_p.add_argument("--profile_steps", type=int, default=0, help="profile this many more "
                         "steps of the last mode: top kernels by self time, launches per step")
    add_config_arguments(infer_p, sections=("model",))
    infer_p.add_argument("--variants", nargs="+", choices=VARIANT_NAMES,
                         help="variants to time (default: --model)")
    infer_p.add_argument("--batch_sizes", nargs="+", type=int, default=[1], help="one row each")
    infer_p.add_argument("--channels_last", action=argparse.BooleanOptionalAction,
                         default=False, help="NHWC network and input")
    data_p.add_argument("--items", type=int, default=32, help="items read per mode")
    teacher_p.add_argument("--architecture", choices=tuple(RANDOM_ARCHITECTURES),
                           default="small", help="random Depth Anything V2: small (DA-V2 Small's "
                           "architecture, 24.8M parameters, as fast as its weights) or tiny")
    teacher_p.add_argument("--input_size", type=int, default=DEFAULT_INPUT_SIZE,
                           help="teacher input short side, as precompute_teacher.py's")
    teacher_p.add_argument("--batch_size", type=int, default=8, help="frames per forward; "
                           "--repeats batches timed, then the loop over as many frames")
    gpu_p.add_argument("out", nargs="?", default=os.environ.get("OUT", "bench_gpu_out"),
                       help="folder for gpu.json (default: $OUT, else bench_gpu_out)")
    gpu_p.add_argument("--dry_run", action="store_true", help="the same plan on the CPU at "
                       "tiny sizes, 2 steps per mode, compilation only traced")
    gpu_p.add_argument("--rows", nargs="+", help=f"row configs (default: {ROW_CONFIGS})")
    gpu_p.add_argument("--time_limit_s", type=float, default=TIME_LIMIT_S,
                       help="measurements that would start later are recorded as skipped")
    return parser


@cli(TOOL)
def main(argv=None) -> dict:
    """Run one subcommand; print its result as the last stdout line (JSON)."""
    args = build_parser().parse_args(argv)
    check_counts(args)
    result = globals()[args.command](args)
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


if __name__ == "__main__":
    main()
