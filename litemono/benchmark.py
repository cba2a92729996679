"""Shared code of ``scripts/bench.py``'s subcommands: timing, synthetic batches, training set-up,
upstream Lite-Mono side by side.

Every benchmark follows one protocol: run the work a few times untimed (warm-up: allocator,
oneDNN / cuDNN algorithm choice, ``torch.compile``), then time ``repeats`` runs and report the
median (robust to the noise of a shared machine) with min and max. On CUDA the time is taken
between CUDA events, so asynchronous kernels are counted where they run; on CPU every op is
synchronous and ``time.perf_counter`` is exact. Each script prints its results as one JSON
object on its *last* stdout line (:func:`print_json`), so tools can parse them with
``json.loads(output.splitlines()[-1])``.

The synthetic batch (:func:`synthetic_batch`) follows the sample schema of
``docs/architecture.md`` (monodepth2's keys, Godard et al., ICCV 2019), already collated and on
the device, so a timed training step reads no file and waits for no data loader.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.nn.functional as F

from . import engine
from .config import config_from_namespace
from .device import resolve_device  # noqa: F401  (scripts/bench.py calls bench.resolve_device)
from .errors import UserError
from .losses.criterion import build_criterion
from .models.build import load_state_strict
from .models.encoder import WIDE_INPUT

# KITTI's normalised intrinsics as monodepth2's KITTI datasets use them (fx, fy, cx, cy / size).
KITTI_NORMALISED_K = ((0.58, 0.0, 0.5, 0.0), (0.0, 1.92, 0.5, 0.0),
                      (0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 0.0, 1.0))
NUM_PYRAMID_SCALES = 4  # the datasets emit scales 0..3
CAMERA_SHIFT_PIXELS = 2  # horizontal shift between neighbouring synthetic frames (at scale 0)
TEXTURE_DOWNSAMPLE = 8  # synthetic images are smooth noise drawn at 1/8 size and upsampled


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Timeline:
    """Named time stamps within one run of some work; durations between consecutive stamps.

    On CUDA a stamp is a recorded event (no synchronisation inside the timed work); on CPU it
    is ``time.perf_counter()``.

    Args:
        device: where the timed work runs.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.names: List[str] = []
        self.stamps: List[Any] = []

    def mark(self, name: str) -> None:
        """Record stamp ``name`` now (in device order on CUDA)."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.stamps.append(event)
        else:
            self.stamps.append(time.perf_counter())
        self.names.append(name)

    def durations(self) -> Dict[str, float]:
        """Seconds from each stamp to the next, keyed by the later stamp's name (synchronises)."""
        synchronize(self.device)
        out: Dict[str, float] = {}
        for i in range(1, len(self.stamps)):
            if self.device.type == "cuda":
                seconds = self.stamps[i - 1].elapsed_time(self.stamps[i]) / 1000.0
            else:
                seconds = self.stamps[i] - self.stamps[i - 1]
            out[self.names[i]] = out.get(self.names[i], 0.0) + seconds
        return out


def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds taken by one call of ``fn`` (device work included)."""
    timeline = Timeline(device)
    synchronize(device)
    timeline.mark("start")
    fn()
    timeline.mark("end")
    return timeline.durations()["end"]


def measure(fn: Callable[[], Any], device: torch.device, warmup: int = 2,
            repeats: int = 10) -> List[float]:
    """Run ``fn`` ``warmup`` times untimed, then return the seconds of ``repeats`` timed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    return [time_once(fn, device) for _ in range(repeats)]


def summarise(seconds: Sequence[float]) -> Dict[str, float]:
    """``{"median_s", "min_s", "max_s", "runs"}`` of some timings (seconds)."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds),
            "max_s": max(seconds), "runs": len(seconds)}


def median_per_key(runs: Sequence[Dict[str, float]]) -> Dict[str, float]:
    """Per-key median over a list of ``{name: seconds}`` dicts (keys of the first run)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only; the CPU figure is the process maximum)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory in MiB: CUDA tensors allocated since :func:`reset_peak_memory`, or on CPU
    the process's maximum resident set (includes the interpreter and libraries)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def environment(device: torch.device) -> Dict[str, Any]:
    """What the numbers were measured on: torch version, device name, CPU threads."""
    info = {"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    return info


def print_json(result: Dict[str, Any]) -> None:
    """Print ``result`` as compact JSON on one line: the last line a benchmark writes."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)


def _smooth_images(count: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """(count, 3, height, width) smooth random images in [0, 1]."""
    coarse = torch.rand(count, 3, max(height // TEXTURE_DOWNSAMPLE, 2),
                        max(width // TEXTURE_DOWNSAMPLE, 2), generator=generator)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)


def synthetic_batch(height: int, width: int, batch_size: int, frame_ids: Sequence[Any],
                    device: torch.device, teacher: bool = False, seed: int = 0) -> Dict[Any, Any]:
    """A collated training batch in the sample schema, already on ``device``.

    Frame f is the target texture shifted by ``f * CAMERA_SHIFT_PIXELS`` columns (a camera
    moving sideways), so warping and automasking see plausible, non-identical frames.

    Args:
        height, width: training resolution (scale 0).
        batch_size: B.
        frame_ids: e.g. ``[0, -1, 1]``; ``"s"`` adds a stereo partner and ``"stereo_T"``.
        device: where the tensors go.
        teacher: add ``"teacher_disp"`` (B, 1, H, W) > 0 (for the distillation / Chamfer terms).
        seed: images are a function of the seed only.

    Returns:
        ``("color", f, s)`` and ``("color_aug", f, s)`` (B, 3, H/2^s, W/2^s) in [0, 1] for
        s in 0..3, ``("K", s)`` / ``("inv_K", s)`` (B, 4, 4), ``"index"`` (B,) and the optional keys.
    """
    generator = torch.Generator().manual_seed(seed)
    # the stereo partner gets its own shift, one step beyond the last temporal frame
    shifts = {f: (len(frame_ids) if f == "s" else f) * CAMERA_SHIFT_PIXELS for f in frame_ids}
    margin = max(abs(v) for v in shifts.values())
    base = _smooth_images(batch_size, height, width + 2 * margin, generator)
    batch: Dict[Any, Any] = {"index": torch.arange(batch_size)}
    for frame in frame_ids:
        image = base[..., margin + shifts[frame]:margin + shifts[frame] + width]
        for scale in range(NUM_PYRAMID_SCALES):
            size = (height // 2 ** scale, width // 2 ** scale)
            scaled = image if scale == 0 else F.interpolate(image, size=size, mode="area")
            batch[("color", frame, scale)] = scaled.contiguous().to(device)
            batch[("color_aug", frame, scale)] = (scaled * 0.9 + 0.05).to(device)
    for scale in range(NUM_PYRAMID_SCALES):
        K = torch.tensor(KITTI_NORMALISED_K)
        K[0] *= width // 2 ** scale
        K[1] *= height // 2 ** scale
        batch[("K", scale)] = K.expand(batch_size, 4, 4).contiguous().to(device)
        batch[("inv_K", scale)] = torch.linalg.inv(K).expand(batch_size, 4, 4).contiguous().to(device)
    if "s" in frame_ids:
        stereo_T = torch.eye(4)
        stereo_T[0, 3] = -0.1  # monodepth2's baseline sign convention for the left camera
        batch["stereo_T"] = stereo_T.expand(batch_size, 4, 4).contiguous().to(device)
    if teacher:
        batch["teacher_disp"] = (0.1 + _smooth_images(batch_size, height, width, generator)[:, :1]
                                 ).to(device)
    return batch


def top_operators(profile: "torch.profiler.profile", device: torch.device, limit: int = 20) -> str:
    """The profiler's operator table sorted by self time on ``device`` (the hot spots)."""
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return profile.key_averages().table(sort_by=key, row_limit=limit)


# --- one process's training, as litemono.engine.train builds it -------------------------------

IN_MEMORY_TEACHER = "<in-memory synthetic teacher>"  # satisfies validate(); nothing is read
DISTILL_SHORTCUT_WEIGHT = 0.1  # the weight of the ablation configs (configs/*/03_pseudo_label.yaml)
PHASES = ("depth_forward", "pose_forward", "loss", "backward", "optimizer")


def training_config(args):
    """The run config of a parsed ``add_config_arguments`` command line, made buildable without
    files or downloads: scratch pose ResNet, no ImageNet encoder weights, and an in-memory
    teacher when a distillation / Chamfer weight asks for one (``--distill``: the ablation's
    weight)."""
    if getattr(args, "distill", False) and not hasattr(args, "distill_weight"):
        args.distill_weight = DISTILL_SHORTCUT_WEIGHT
    wants_teacher = getattr(args, "distill_weight", 0) > 0 or getattr(args, "chamfer_weight", 0) > 0
    if wants_teacher and not getattr(args, "teacher_dir", None):
        args.teacher_dir = IN_MEMORY_TEACHER
    cfg = config_from_namespace(args)
    return cfg.replace(weights_init="scratch", mypretrain=None)


def frame_ids_of(cfg) -> list:
    """The frames of a training sample: ``--frame_ids`` plus ``"s"`` with ``--use_stereo``."""
    return list(cfg.data.frame_ids) + (["s"] if cfg.data.use_stereo else [])


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


def training_batch(cfg, device: torch.device) -> Dict[Any, Any]:
    """The synthetic batch of ``cfg`` (its size, frames, teacher), moved as the engine moves one."""
    batch = synthetic_batch(cfg.model.height, cfg.model.width, cfg.train.batch_size,
                            frame_ids_of(cfg), device, teacher=cfg.data.teacher_dir is not None,
                            seed=cfg.train.seed)
    return engine.to_device(batch, device, cfg.train.channels_last)


def train_step(parts, criterion, batch, step: int, amp: str):
    """One optimisation step of the engine (world 1); returns its total loss (a float or a
    0-d tensor: read it with ``float`` when the value is needed). ``step`` (the caller's count,
    from 1) is not needed by the step itself; it stays for the scripts' call sites."""
    return engine.train_step(parts, criterion, batch, engine.AMP_DTYPES[amp], 1)[0]


def run_networks(parts, criterion, batch):
    """The depth and pose forward of one training batch, as the engine runs it (float32)."""
    return engine.run_networks(parts.run_depth, parts.run_pose, batch, criterion.source_frames)


def stamp_phases(parts, criterion, timeline: Timeline) -> list:
    """Hooks that stamp the end of each phase on ``timeline``; returns their handles."""
    def stamper(name):
        return lambda *_: timeline.mark(name)

    return [parts.run_depth.register_forward_hook(stamper("depth_forward")),
            parts.run_pose.register_forward_hook(stamper("pose_forward")),
            criterion.register_forward_hook(stamper("loss")),
            parts.optimizers["depth"].register_step_pre_hook(stamper("backward"))]


def phase_split(step: Callable[[], Any], parts, criterion, device: torch.device,
                repeats: int) -> Dict[str, float]:
    """Median seconds of each of :data:`PHASES` over ``repeats`` stamped calls of ``step``."""
    runs = []
    for _ in range(repeats):
        timeline = Timeline(device)
        handles = stamp_phases(parts, criterion, timeline)
        synchronize(device)
        timeline.mark("start")
        step()
        timeline.mark("optimizer")
        for handle in handles:
            handle.remove()
        durations = timeline.durations()
        if tuple(durations) != PHASES:
            raise RuntimeError(f"unexpected phase order {list(durations)}: the engine step changed")
        runs.append(durations)
    return median_per_key(runs)


def profile_steps(step: Callable[[], Any], device: torch.device, steps: int):
    """torch.profiler over ``steps`` calls of ``step`` (CPU, and CUDA activity on a GPU)."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        synchronize(device)
    return prof


def kernel_launches(profile: "torch.profiler.profile") -> int:
    """Device kernels the profile saw (0 on CPU): with :func:`profile_steps`' ``steps``, the
    launch count per step, which bounds a launch-bound step's speed."""
    return sum(1 for event in profile.events()
               if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA)


# --- upstream Lite-Mono beside ours -------------------------------------------------------------

UPSTREAM_MODULES = ("trainer", "networks", "options", "layers")
UPSTREAM_SIZES = ((192, 640), (320, 1024))  # (height, width) with dilation rates upstream
POSE_FRAMES = 2  # upstream's --pose_model_input pairs


class UpstreamError(UserError):
    """The upstream checkout is missing, incomplete or cannot be imported."""


def import_upstream(upstream_dir):
    """Upstream's ``trainer``, ``networks``, ``options`` and ``layers`` modules from the checkout.

    Raises:
        UpstreamError: the folder or its ``trainer.py`` is missing, an import fails, or a module
            of the same name from elsewhere shadows upstream's.
    """
    import importlib
    from pathlib import Path
    from types import SimpleNamespace

    if upstream_dir is None:
        raise UpstreamError("--upstream_dir is required: a checkout of noahzn/Lite-Mono's training "
                            "code (trainer.py, layers.py, options.py, networks/, ...)")
    root = Path(upstream_dir).expanduser().resolve()
    if not root.is_dir():
        raise UpstreamError(f"--upstream_dir {upstream_dir}: no such folder (expected a checkout "
                            "of noahzn/Lite-Mono's training code)")
    if not (root / "trainer.py").is_file():
        raise UpstreamError(f"--upstream_dir {root} has no trainer.py: it is not a checkout of "
                            "noahzn/Lite-Mono's training code")
    sys.path.insert(0, str(root))
    modules = {}
    for name in UPSTREAM_MODULES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise UpstreamError(
                f"importing upstream's {name} from {root} failed: {exc}. Upstream's trainer.py "
                "imports tensorboardX and "
                "linear_warmup_cosine_annealing_warm_restarts_weight_decay at module level; both "
                "are used only in Trainer.__init__, which this benchmark bypasses, so an "
                "installed package or a stand-in module of that name in the checkout is "
                "enough") from exc
        origin = Path(getattr(modules[name], "__file__", "") or "").resolve()
        if root not in origin.parents:
            raise UpstreamError(f"module {name!r} was imported from {origin}, not from {root}: "
                                "another module of that name shadows upstream's")
    return SimpleNamespace(**modules)


def upstream_encoder_size(height: int, width: int) -> tuple:
    """(height, width) to build upstream's encoder with: the input size when upstream defines
    rates for it, else the size whose rates our dilation rule uses at ``width``."""
    if (height, width) in UPSTREAM_SIZES:
        return height, width
    return UPSTREAM_SIZES[1] if width >= WIDE_INPUT else UPSTREAM_SIZES[0]


def depth_network_refusals(m, models: Sequence[str] = ()) -> List[str]:
    """Options of the model config ``m`` that upstream's depth network cannot express: an
    encoder other than upstream's four variants (``--model``, or each of ``models`` when given;
    registered encoder families are ours only), a bin head, any attention kind."""
    from .models.encoder import VARIANTS

    refused = [f"--model {name}" for name in dict.fromkeys(models or [m.model])
               if name not in VARIANTS]
    if m.bins != 0:
        refused.append("--bins")
    if m.attention_kind:  # named as the user spelt it
        refused.append(f"--attention {m.attention}" if m.attention else "--spatial_attention")
    return refused


def upstream_refusals(cfg) -> List[str]:
    """Options of ``cfg`` that upstream's trainer cannot express (empty: comparable): those of
    :func:`depth_network_refusals`, another pose network, and every registered extra loss term
    (``criterion.LOSS_TERMS``) whose weight is on."""
    from .losses.criterion import LOSS_TERMS

    m, loss = cfg.model, cfg.loss
    refused = depth_network_refusals(m)
    if m.pose_model_type != "separate_resnet":
        refused.append("--pose_model_type " + m.pose_model_type)
    refused += [f"--{name}_weight" for name in LOSS_TERMS
                if getattr(loss, f"{name}_weight") > 0]
    return refused


def upstream_argv(cfg, device: torch.device) -> List[str]:
    """Upstream's command line for the options of ``cfg`` (its parser fills the rest)."""
    from .config import lr_schedule_params

    m, data, loss, t = cfg.model, cfg.data, cfg.loss, cfg.train
    argv = ["--model", m.model, "--height", str(m.height), "--width", str(m.width),
            "--batch_size", str(t.batch_size), "--weights_init", "scratch",
            "--num_layers", str(m.num_layers), "--drop_path", str(m.drop_path),
            "--pose_model_type", m.pose_model_type,
            "--scales", *map(str, m.scales), "--frame_ids", *map(str, data.frame_ids),
            "--min_depth", str(loss.min_depth), "--max_depth", str(loss.max_depth),
            "--disparity_smoothness", str(loss.disparity_smoothness),
            "--weight_decay", str(t.weight_decay), "--lr", *map(str, lr_schedule_params(t.lr))]
    flags = {"--no_cuda": device.type != "cuda", "--use_stereo": data.use_stereo,
             "--no_ssim": not loss.ssim, "--disable_automasking": not loss.automasking,
             "--avg_reprojection": loss.avg_reprojection, "--v1_multiscale": loss.v1_multiscale}
    return argv + [flag for flag, on in flags.items() if on]


def build_upstream_depth(up, model: str, drop_path: float, encoder_size: tuple, scales) -> tuple:
    """Upstream's ``networks.LiteMono`` encoder (built at ``encoder_size``, (height, width)) and
    ``networks.DepthDecoder`` at ``scales``, as its ``Trainer.__init__`` builds them (CPU)."""
    encoder = up.networks.LiteMono(model=model, drop_path_rate=drop_path,
                                   height=encoder_size[0], width=encoder_size[1])
    return encoder, up.networks.DepthDecoder(encoder.num_ch_enc, list(scales))


def check_dilations(upstream_encoder, our_encoder, encoder_size: tuple) -> list:
    """The dilation rates of both encoders (equal) as lists.

    Raises:
        UserError: they differ (naming the size upstream's encoder was built at).
    """
    upstream_rates = [list(rates) for rates in upstream_encoder.dilation]
    if upstream_rates != our_encoder.dilations:
        raise UserError(f"dilation rates differ: upstream {upstream_rates} (built at "
                        f"{encoder_size[1]}x{encoder_size[0]}), ours {our_encoder.dilations}")
    return upstream_rates


def build_upstream(up, opt, device: torch.device, encoder_size: tuple):
    """An upstream ``Trainer`` ready for ``process_batch``, built without ``__init__`` (which
    needs KITTI on disk, tensorboardX and the git-only scheduler package), given what
    ``process_batch``, ``generate_images_pred`` and ``compute_losses`` read."""
    trainer = up.trainer.Trainer.__new__(up.trainer.Trainer)
    trainer.opt = opt
    trainer.device = device
    trainer.num_scales = len(opt.scales)
    trainer.num_input_frames = len(opt.frame_ids)
    trainer.num_pose_frames = POSE_FRAMES
    trainer.use_pose_net = not (opt.use_stereo and opt.frame_ids == [0])
    if opt.use_stereo:
        opt.frame_ids.append("s")  # as __init__ does: the stereo partner is a source frame
    nets = up.networks
    encoder, decoder = build_upstream_depth(up, opt.model, opt.drop_path, encoder_size, opt.scales)
    trainer.models = {"encoder": encoder, "depth": decoder}
    trainer.models_pose = {}
    if trainer.use_pose_net:
        pose_encoder = nets.ResnetEncoder(opt.num_layers, opt.weights_init == "pretrained",
                                          num_input_images=POSE_FRAMES)
        trainer.models_pose = {"pose_encoder": pose_encoder,
                               "pose": nets.PoseDecoder(pose_encoder.num_ch_enc,
                                                        num_input_features=1,
                                                        num_frames_to_predict_for=POSE_FRAMES)}
    for net in (*trainer.models.values(), *trainer.models_pose.values()):
        net.to(device)
        net.train()

    def parameters(group):
        return [p for net in group.values() for p in net.parameters()]

    trainer.model_optimizer = torch.optim.AdamW(parameters(trainer.models), opt.lr[0],
                                                weight_decay=opt.weight_decay)
    if trainer.use_pose_net:
        trainer.model_pose_optimizer = torch.optim.AdamW(parameters(trainer.models_pose),
                                                         opt.lr[3], weight_decay=opt.weight_decay)
    if not opt.no_ssim:
        trainer.ssim = up.layers.SSIM().to(device)
    trainer.backproject_depth, trainer.project_3d = {}, {}
    for scale in opt.scales:
        h, w = opt.height // 2 ** scale, opt.width // 2 ** scale
        trainer.backproject_depth[scale] = up.layers.BackprojectDepth(
            opt.batch_size, h, w).to(device)
        trainer.project_3d[scale] = up.layers.Project3D(opt.batch_size, h, w).to(device)
    return trainer


def upstream_step(trainer, inputs) -> float:
    """One optimisation step as upstream's ``run_epoch`` does it; returns the loss."""
    _, losses = trainer.process_batch(inputs)
    trainer.model_optimizer.zero_grad()
    if trainer.use_pose_net:
        trainer.model_pose_optimizer.zero_grad()
    losses["loss"].backward()
    trainer.model_optimizer.step()
    if trainer.use_pose_net:
        trainer.model_pose_optimizer.step()
    return float(losses["loss"].detach())


def share_depth_weights(upstream_encoder, upstream_decoder, depth) -> None:
    """Load upstream's encoder and depth decoder state dicts into our depth network ``depth``
    (strict: the key layouts are equal)."""
    load_state_strict(depth.encoder, upstream_encoder.state_dict(), "upstream encoder")
    load_state_strict(depth.decoder, upstream_decoder.state_dict(), "upstream depth")


def share_weights(trainer, parts) -> None:
    """Load upstream's initial state dicts into our networks (strict: the layouts are equal)."""
    share_depth_weights(trainer.models["encoder"], trainer.models["depth"], parts.depth)
    if trainer.use_pose_net:
        load_state_strict(parts.pose.encoder, trainer.models_pose["pose_encoder"].state_dict(),
                          "upstream pose_encoder")
        load_state_strict(parts.pose.decoder, trainer.models_pose["pose"].state_dict(),
                          "upstream pose")


@torch.no_grad()
def same_step_losses(trainer, up_batch, parts, criterion, batch, seed: int) -> Dict[str, Any]:
    """One loss evaluation of each side (no update), same seed, pose networks in eval mode."""
    pose_nets = [*trainer.models_pose.values(), parts.pose]
    for net in pose_nets:
        net.eval()
    try:
        torch.manual_seed(seed)
        upstream = float(trainer.process_batch(up_batch)[1]["loss"])
        torch.manual_seed(seed)
        ours = float(criterion(batch, run_networks(parts, criterion, batch))[0])
    finally:
        for net in pose_nets:
            net.train()
    return {"upstream": upstream, "ours": ours, "rel_diff": abs(ours - upstream) / abs(upstream),
            "pose_batchnorm": "eval"}
