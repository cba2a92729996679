"""Benchmarks: training step, inference, data loader, and one planned GPU run.

    python scripts/bench.py train --model lite-mono --height 192 --width 640 --batch_size 2
    python scripts/bench.py train --config configs/kitti/05_full.yaml --modes fp32 bf16_cl
    python scripts/bench.py infer --variants lite-mono lite-mono-tiny --batch_sizes 1 8
    python scripts/bench.py data --height 192 --width 640 --items 48
    python scripts/bench.py gpu OUT [--dry_run]

Each subcommand prints one JSON object as its last stdout line. ``--warmup`` untimed calls
(allocator, algorithm choice, torch.compile), then ``--repeats`` calls timed one by one between
device synchronisations: median, min and max. Peak memory is what CUDA allocated, or on a CPU the
process's largest resident set. ``train`` times :func:`litemono.engine.train_step` on a synthetic
batch already on the device; every train.py flag applies; ``--modes`` runs the config in several
of :data:`MODES` from the same seed and compares their losses with fp32's. ``gpu`` runs
:func:`gpu_plan` (under 8 minutes on one CUDA GPU) and writes ``OUT/gpu.json``; ``--dry_run``
runs the same plan on the CPU at tiny sizes. Our step beside upstream Lite-Mono's:
scripts/vs_upstream.py.
"""
import argparse
import dataclasses
import json
import math
import os
import random
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
from litemono.models.build import build_depth_network, encoder_names  # noqa: E402
from litemono.model import to_device  # noqa: E402

TOOL = "bench.py"
VARIANT_NAMES = encoder_names()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device) -> float:
    """Seconds of one call of ``fn``, the device work it queued included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def timings(fn, device, warmup: int, repeats: int) -> dict:
    """``warmup`` untimed calls, then the median, min and max seconds of ``repeats`` calls."""
    for _ in range(warmup):
        fn()
    seconds = [time_call(fn, device) for _ in range(repeats)]
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "runs": repeats}


def peak_memory_mb(device, reset=False) -> float:
    """CUDA: the most allocated since the last reset; CPU: the process's largest resident set."""
    if device.type != "cuda":
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux counts KiB
    if reset:
        torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


def environment(device) -> dict:
    return {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def add_timing(parser, warmup: int, repeats: int):
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls (median)")


def check_timing(args):
    if args.repeats < 1 or args.warmup < 0:
        raise UserError(f"--repeats must be >= 1 and --warmup >= 0, got {args.repeats}, "
                        f"{args.warmup}", todo="pick other counts")


KITTI_K = ((0.58, 0, 0.5, 0), (0, 1.92, 0.5, 0), (0, 0, 1, 0), (0, 0, 0, 1))  # / image size
SHIFT_PIXELS = 2  # frame f is the target moved sideways by f * SHIFT_PIXELS columns


def synthetic_batch(height, width, batch_size, frame_ids, device, teacher=False, seed=0) -> dict:
    """A collated batch in the sample schema of docs/architecture.md, on ``device``:
    ``("color" | "color_aug", f, s)`` for scales 0..3, ``("K" | "inv_K", s)``, ``"index"``,
    ``"stereo_T"`` when ``"s"`` is a frame, ``"teacher_disp"`` with ``teacher``."""
    generator = torch.Generator().manual_seed(seed)
    shifts = {f: (len(frame_ids) if f == "s" else f) * SHIFT_PIXELS for f in frame_ids}
    margin = max(abs(shift) for shift in shifts.values())
    coarse = torch.rand(batch_size, 3, max(height // 8, 2), (width + 2 * margin) // 8 + 1,
                        generator=generator)  # smooth images, like photographs
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


MODES = {  # the train options of each mode
    "fp32": dict(amp="off", channels_last=False, compile=False),
    "bf16_cl": dict(amp="bf16", channels_last=True, compile=False),
    "bf16_compile": dict(amp="bf16", channels_last=True, compile=True, compile_mode="default"),
    "bf16_graphs": dict(amp="bf16", channels_last=True, compile=True,
                        compile_mode="reduce-overhead"),  # replayed as CUDA graphs
}
EIGEN_ZHOU_SAMPLES = 39810  # training items of one eigen_zhou epoch (epochs_30_h)
COMPARE_STEPS = 5  # the first losses of a mode are compared with fp32's ...
LOSS_RTOL = 0.05  # ... to this relative difference (bf16 keeps 8 significant bits)


def add_train_arguments(parser):
    add_config_arguments(parser)
    parser.add_argument("--modes", nargs="+", choices=tuple(MODES),
                        help="train in each mode from the same seed (default: the flags as given)")
    add_timing(parser, warmup=2, repeats=8)
    parser.add_argument("--compile_backend", help="torch.compile backend (default inductor; "
                        "'eager' only traces: the CPU dry run)")
    parser.add_argument("--profile_steps", type=int, default=0, help="profile this many more "
                        "steps of the last mode: top kernels by self time, launches per step")


def training_config(args):
    """The config of the command line, buildable without files or downloads: scratch pose
    ResNet, no pretrained encoder, a teacher folder that is never read (the batch has one)."""
    if getattr(args, "distill_weight", 0) > 0 or getattr(args, "chamfer_weight", 0) > 0:
        if not getattr(args, "teacher_dir", None):
            args.teacher_dir = "<in-memory synthetic teacher>"
    return config_from_namespace(args).replace(weights_init="scratch", mypretrain=None)


def build_training(cfg, device, compile_backend="inductor"):
    """``(training, model, criterion)`` as train.py builds them (seeded by ``--seed``, in train
    mode); with ``--compile`` the model and the criterion are compiled in ``--compile_mode``."""
    torch.manual_seed(cfg.train.seed)
    training = engine.build_training(cfg, device, world=1)
    model, criterion = engine.step_modules(training, build_criterion(cfg), cfg, device, 1,
                                           backend=compile_backend or "inductor")
    training.model.train()
    return training, model, criterion


def training_batch(cfg, device) -> dict:
    frames = list(cfg.data.frame_ids) + (["s"] if cfg.data.use_stereo else [])
    batch = synthetic_batch(cfg.model.height, cfg.model.width, cfg.train.batch_size, frames,
                            device, teacher=cfg.data.teacher_dir is not None, seed=cfg.train.seed)
    return to_device(batch, device, cfg.train.channels_last)


def train_mode(cfg, args, device, profiled=False) -> dict:
    """Step time, peak memory and every step's loss of ``cfg``: one first step (compilation
    included), ``--warmup - 1`` more untimed, then ``--repeats`` timed."""
    if cfg.train.compile:  # random numbers drawn as eager code draws them: comparable losses
        inductor_config.fallback_random = True
    training, model, criterion = build_training(cfg, device, args.compile_backend)
    batch = training_batch(cfg, device)
    losses = []

    def step():  # clone: a CUDA-graph replay reuses the buffer of the previous loss
        losses.append(engine.train_step(training, model, criterion, batch, 1)[0].clone())

    peak_memory_mb(device, reset=True)
    first_step_s = time_call(step, device)
    timed = timings(step, device, max(args.warmup - 1, 0), args.repeats)
    values = [float(loss) for loss in losses]
    t = cfg.train
    profile = profile_steps(step, device, args.profile_steps) if profiled else None
    return {"ok": all(map(math.isfinite, values)), "amp": t.amp, "channels_last": t.channels_last,
            "compile": t.compile, "compile_mode": t.compile_mode if t.compile else None,
            "first_step_s": first_step_s, "step_s": timed["median_s"],
            "step_min_s": timed["min_s"], "step_max_s": timed["max_s"], "runs": timed["runs"],
            "samples_per_s": t.batch_size / timed["median_s"],
            "epochs_30_h": 30 * EIGEN_ZHOU_SAMPLES * timed["median_s"] / t.batch_size / 3600,
            "peak_memory_mb": peak_memory_mb(device), "first_loss": values[0], "losses": values,
            **({"profile": profile} if profile else {})}


def profile_steps(step, device, steps) -> dict:
    """torch.profiler over ``steps`` more steps: the operator table by self time on ``device``
    and the device kernels launched per step (0 on a CPU)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    kernels = sum(1 for event in prof.events()
                  if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA)
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
    check_timing(args)
    cfg = training_config(args)
    device = resolve_device(cfg.train.device)
    rows = {}
    modes = args.modes or ["as_given"]
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
    first = next(iter(rows.values()))
    m = cfg.model
    return {"benchmark": "train_step", "model": m.model, "height": m.height, "width": m.width,
            "batch_size": cfg.train.batch_size, "warmup": args.warmup, "modes": rows,
            **{key: first.get(key) for key in ("step_s", "samples_per_s", "peak_memory_mb",
                                               "first_loss")},
            "environment": environment(device)}


def add_infer_arguments(parser):
    add_config_arguments(parser, sections=("model",))
    parser.add_argument("--variants", nargs="+", choices=VARIANT_NAMES,
                        help="variants to time (default: --model)")
    parser.add_argument("--batch_sizes", nargs="+", type=int, default=[1],
                        help="batch sizes to time, one row each")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                        help="same as --device cpu")
    parser.add_argument("--channels_last", action=argparse.BooleanOptionalAction, default=False,
                        help="NHWC network and input")
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    add_timing(parser, warmup=3, repeats=20)


def infer(args) -> dict:
    check_timing(args)
    cfg = config_from_namespace(args).model
    device = resolve_device(args.device)
    if min(args.batch_sizes) < 1:
        raise UserError(f"--batch_sizes must be >= 1, got {args.batch_sizes}",
                        todo="pick positive sizes")
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    results = []
    for variant in args.variants or [cfg.model]:
        torch.manual_seed(0)
        net = build_depth_network(dataclasses.replace(cfg, model=variant, mypretrain=None))
        net = net.eval().to(device, memory_format=layout)
        run = torch.compile(net) if args.compile else net
        for batch_size in args.batch_sizes:
            image = torch.rand(batch_size, 3, cfg.height, cfg.width, device=device)
            image = image.contiguous(memory_format=layout)

            with torch.inference_mode():
                timed = timings(lambda: run(image), device, args.warmup, args.repeats)
            results.append({"model": variant, "batch_size": batch_size,
                            "latency_s": timed["median_s"], "latency_min_s": timed["min_s"],
                            "latency_max_s": timed["max_s"], "runs": timed["runs"],
                            "fps": batch_size / timed["median_s"]})
    return {"benchmark": "inference", "height": cfg.height, "width": cfg.width,
            "channels_last": args.channels_last, "compile": args.compile, "results": results,
            "environment": environment(device)}


def add_data_arguments(parser):
    parser.add_argument("--native_height", type=int, default=375, help="source frame height")
    parser.add_argument("--native_width", type=int, default=1242, help="source frame width")
    parser.add_argument("--height", type=int, default=192, help="training height")
    parser.add_argument("--width", type=int, default=640, help="training width")
    parser.add_argument("--items", type=int, default=32, help="items read per mode")


def samples_per_second(dataset, items: int) -> float:
    random.seed(0)
    torch.manual_seed(0)
    dataset[0]  # lazy imports, the first file opened
    start = time.perf_counter()
    for i in range(items):
        dataset[i % len(dataset)]
    return items / (time.perf_counter() - start)


def data(args) -> dict:
    from litemono.data import build_dataset
    from litemono.data.synthetic import make_synthetic_kitti

    torch.set_num_threads(1)  # as in a DataLoader worker
    with tempfile.TemporaryDirectory() as tmp:
        scene = make_synthetic_kitti(Path(tmp) / "scene", drives=1, frames_per_drive=12,
                                     height=args.native_height, width=args.native_width)
        cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir),
                         "height": args.height, "width": args.width, "png": scene.png})
        items = engine.TRAIN_ITEMS  # what a training step reads
        modes = {"no_aug": dict(cfg=cfg, is_train=False, **items),
                 "aug_per_frame": dict(cfg=cfg, is_train=True, **items),
                 "aug_per_item": dict(cfg=cfg.replace(jitter="per_item"), is_train=True, **items),
                 "aug_per_frame_cached": dict(cfg=cfg, is_train=True, **items,
                                              cache_dir=str(Path(tmp) / "cache")),
                 "upstream_items_per_frame": dict(cfg=cfg, is_train=True)}  # upstream's keys
        rates = {}
        for name, options in modes.items():
            dataset = build_dataset(part="train", **options)
            if "cache_dir" in options:
                samples_per_second(dataset, len(dataset))  # fills the cache
            rates[name] = round(samples_per_second(dataset, args.items), 2)
            print(f"{name:>24}: {rates[name]:7.2f} samples/s per worker", flush=True)
    return {"benchmark": "data", "samples_per_s_per_worker": rates, "items": args.items,
            "train_size": [args.height, args.width], "native_size": [scene.height, scene.width]}


TIME_LIMIT_S = 8 * 60  # the whole run is planned to end within 8 minutes on one GPU
ROW_CONFIGS = "configs/kitti/0*.yaml"
TIMEOUTS_S = dict(row=90, compiled=150, infer=60, data=90)  # per measurement, on a GPU
COMPILED_ROWS = ("01_baseline", "05_full")  # compiling costs about a minute a row
COMPILED_MODE = "bf16_graphs"


def add_gpu_arguments(parser):
    parser.add_argument("out", nargs="?", default=os.environ.get("OUT", "bench_gpu_out"),
                        help="folder for the JSON files (default: $OUT, else bench_gpu_out)")
    parser.add_argument("--dry_run", action="store_true", help="the same plan on the CPU at "
                        "tiny sizes, 2 steps per mode, compilation only traced")
    parser.add_argument("--rows", nargs="+", help=f"row configs (default: {ROW_CONFIGS})")
    parser.add_argument("--time_limit_s", type=float, default=TIME_LIMIT_S,
                        help="measurements that would start later are recorded as skipped")


def gpu_plan(args) -> list:
    """``(name, argv, timeout_s)`` of each measurement, the most important first: every row
    config eager in fp32 and bf16 + channels_last (~25 s a row on an H100), the baseline
    compiled with CUDA graphs beside fp32 (~90 s), inference of every variant, the loader
    (~30 s each), and last any other compiled row (~90 s)."""
    rows = args.rows or sorted(str(p.relative_to(ROOT)) for p in ROOT.glob(ROW_CONFIGS))
    if args.dry_run:
        device, height, width, batch, warmup, repeats = "cpu", "32", "64", "2", "1", "1"
        extra = ["--compile_backend", "eager"]
        data_args = ["--native_height", "48", "--native_width", "160", "--items", "2"]
    else:
        device, height, width, batch, warmup, repeats = "cuda", "192", "640", "12", "10", "30"
        extra, data_args = [], ["--items", "48"]
    timeouts = dict.fromkeys(TIMEOUTS_S, 300) if args.dry_run else TIMEOUTS_S
    size = ["--height", height, "--width", width]
    timing = ["--warmup", warmup, "--repeats", repeats]
    common = [*size, "--batch_size", batch, "--device", device, "--weights_init", "scratch",
              "--mypretrain", "none", *timing, *extra]
    plan, compiled = [], []
    for row in rows:
        name = Path(row).stem
        plan.append((f"row_{name}", ["train", "--config", row, *common, "--modes", "fp32",
                                     "bf16_cl"], timeouts["row"]))
        if name in COMPILED_ROWS:  # the baseline's fastest mode is profiled too
            profile = ["--profile_steps", "3"] if name == COMPILED_ROWS[0] else []
            compiled.append((f"compiled_{name}", ["train", "--config", row, *common, "--modes",
                                                  "fp32", COMPILED_MODE, *profile],
                             timeouts["compiled"]))
    infer = ["infer", "--variants", *VARIANT_NAMES, *size, "--batch_sizes", "1", batch,
             "--device", device, "--channels_last", *timing]
    return [*plan, *compiled[:1], ("infer", infer, timeouts["infer"]),
            ("data", ["data", *size, *data_args], timeouts["data"]), *compiled[1:]]


def run_measurement(argv, timeout_s: float) -> dict:
    """``bench.py ARGV`` in its own process group: its JSON result, or why there is none."""
    start = time.monotonic()
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        error = None if process.returncode == 0 else f"exit status {process.returncode}"
    except subprocess.TimeoutExpired:  # the whole group: compile workers too
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        error = "timed out"
    seconds = time.monotonic() - start
    if error is None:
        try:
            return {"ok": True, "seconds": seconds,
                    "result": json.loads(output.strip().splitlines()[-1])}
        except (IndexError, json.JSONDecodeError):
            error = "no JSON on the last line"
    return {"ok": False, "seconds": seconds, "error": error, "tail": output[-1500:]}


def gpu_summary(measurements: dict) -> dict:
    """One line per row config and mode (speed, memory, the loss check against the same
    process's fp32 run) and whether every measurement and check passed."""
    table = []
    for name, measurement in measurements.items():
        for mode, row in measurement.get("result", {}).get("modes", {}).items():
            table.append({"measurement": name, "mode": mode, **{key: row.get(key) for key in (
                "ok", "error", "step_s", "samples_per_s", "peak_memory_mb", "speedup_over_fp32")},
                "losses_within_rtol": row.get("vs_fp32", {}).get("within_rtol")})
    all_ok = all(m["ok"] for m in measurements.values()) and all(
        line["ok"] and line["losses_within_rtol"] is not False for line in table)
    return {"table": table, "all_ok": all_ok}


def gpu(args) -> dict:
    out = Path(args.out)
    deadline = time.monotonic() + args.time_limit_s
    header = {"benchmark": "gpu", "dry_run": args.dry_run, "date": time.strftime(
        "%Y-%m-%d %H:%M UTC", time.gmtime()), **environment(resolve_device("auto"))}
    measurements = {}
    for name, argv, timeout_s in gpu_plan(args):
        left = deadline - time.monotonic()
        if left < 10:
            measurement = {"ok": False, "error": "skipped: the run's time limit is reached"}
        else:
            measurement = run_measurement(argv, min(timeout_s, left))
        print(f"[bench gpu] {name}: {measurement.get('error', 'ok')} in "
              f"{measurement.get('seconds', 0):.0f} s: bench.py {' '.join(argv)}", flush=True)
        measurements[name] = {**measurement, "argv": argv}
        summary = {**header, **gpu_summary(measurements), "measurements": measurements}
        write_json(out / "gpu.json", summary)  # after each measurement: a killed run leaves it
    return {"benchmark": "gpu", "out": str(out), "all_ok": summary["all_ok"],
            "measurements": {name: m["ok"] for name, m in measurements.items()}}


COMMANDS = {
    "train": ("seconds per training step and peak memory, per mode", add_train_arguments, train),
    "infer": ("latency of the depth network per variant and batch size", add_infer_arguments,
              infer),
    "data": ("training samples/s of one data-loader worker", add_data_arguments, data),
    "gpu": ("the planned GPU run (under 8 minutes), JSON files in OUT", add_gpu_arguments, gpu),
}


def build_parser():
    parser = OneLineParser(prog=TOOL, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


@cli(TOOL)
def main(argv=None) -> dict:
    """Run one subcommand and print its result as the last stdout line (JSON)."""
    args = build_parser().parse_args(argv)
    result = COMMANDS[args.command][2](args)
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


if __name__ == "__main__":
    main()
