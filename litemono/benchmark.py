"""Shared timing helpers of the ``scripts/bench_*.py`` benchmarks.

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

from .device import resolve_device  # noqa: F401  (the bench scripts call bench.resolve_device)

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
