"""Pixel-level L1 distillation from a precomputed relative-disparity teacher (``--distill_*``).

The teacher (Depth Anything V2, NeurIPS 2024) gives disparity up to a per-image scale and shift;
the student a sigmoid disparity in (0, 1). Per image, over valid pixels (:func:`teacher_mask`),
an L1 after one alignment (``--distill_align``): ``normalized`` and ``minmax`` (the report's
sentence, two readings; independent of the student), ``si`` (both divided by their median, the
student's in the graph), ``ssi`` (MiDaS, TPAMI 2022: median and mean absolute deviation, the
student's in the graph). :data:`ALIGNERS` gives Chamfer the matching target, student detached.
Formulas: docs/architecture.md, "Distillation alignments". Static shapes, no host reads."""
from __future__ import annotations

from typing import Any, Callable, Dict, Mapping

import torch
import torch.nn.functional as F

EPS = 1e-8  # guards divisions by a zero median / spread / variance
Aligner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def teacher_disparity(inputs: Mapping[Any, Any], term: str) -> torch.Tensor:
    """``inputs["teacher_disp"]`` (B, 1, H, W), or a KeyError saying how to provide it."""
    if "teacher_disp" not in inputs:
        raise KeyError(f"the {term} loss needs inputs['teacher_disp']: set --teacher_dir to a "
                       "folder made by precompute_teacher.py")
    return inputs["teacher_disp"]


def teacher_mask(teacher: torch.Tensor, loss: Any) -> torch.Tensor:
    """Valid teacher pixels (B, 1, H, W) bool: disparity above ``--teacher_zero_below`` (at or
    below: sky / invalid; default 0, DA-V2's sky), every pixel with ``--no_teacher_mask``."""
    if not loss.teacher_mask:
        return torch.ones_like(teacher, dtype=torch.bool)
    return teacher > loss.teacher_zero_below


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median of the valid values (numpy's interpolating definition), static shapes.

    Like ``torch.quantile(values[b][mask[b]], 0.5)`` per image, without indexing or a loop: invalid
    entries go to +inf, rows are sorted, ranks floor / ceil of (V - 1) / 2 are interpolated (the
    gradient goes to those two). ``values``, ``mask``: (B, 1, H, W), computed in float32 (float64
    stays). Returns (B, 1, 1, 1); 0 for an image without valid pixels."""
    flat = values.flatten(1)  # (B, H*W)
    if flat.dtype != torch.float64:
        flat = flat.float()
    valid = mask.flatten(1)
    count = valid.sum(dim=1, keepdim=True)  # (B, 1)
    ordered = flat.masked_fill(~valid, float("inf")).sort(dim=1).values  # valid first
    rank = 0.5 * (count - 1).clamp_min(0).to(flat.dtype)  # where the median sits among V
    below = rank.floor().long()
    median = torch.lerp(ordered.gather(1, below), ordered.gather(1, rank.ceil().long()),
                        rank - below)
    # an image without valid pixels interpolates inf and inf (nan): give it 0
    return torch.where(count > 0, median, 0.0).view(-1, 1, 1, 1)


def masked_max(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image maximum of the valid values -> (B, 1, 1, 1); 0 where none is valid."""
    largest = values.masked_fill(~mask, float("-inf")).amax(dim=(1, 2, 3), keepdim=True)
    return torch.where(mask.any(dim=(1, 2, 3), keepdim=True), largest, 0.0)


def align_median(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``teacher * median(student) / median(teacher)`` per image (``si``'s Chamfer target); all
    (B, 1, H, W), teacher 0 = invalid, student detached."""
    student_median = masked_median(student.detach(), mask)
    teacher_median = masked_median(teacher, mask)
    return teacher * student_median / teacher_median.clamp_min(EPS)


def align_normalized(teacher: torch.Tensor, student: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """The report: "median 값을 기준으로 center alignment ... 전체 범위를 0~1 사이로 정규화한 뒤 L1"
    (centre on the median, normalise the whole range to 0~1, then L1), read as ``normalized``:
    ``0.5 + (t - med t) / (2 max|t - med t|)``: the median goes to 0.5, only the farther end
    reaches 0 or 1 (a skewed teacher spans e.g. [0.45, 1]); ``student`` unused."""
    centred = teacher - masked_median(teacher, mask)
    spread = masked_max(centred.abs(), mask)
    return 0.5 + centred / (2.0 * spread.clamp_min(EPS))


def align_minmax(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The report: "median 값을 기준으로 center alignment ... 전체 범위를 0~1 사이로 정규화한 뒤 L1",
    read as ``minmax``: ``c = t - med t``, then ``(c - min c) / (max c - min c)``, which is
    ``(t - min t) / (max t - min t)`` (the centring cancels): the whole valid range spans [0, 1];
    ``student`` unused."""
    low = -masked_max(-teacher, mask)
    return (teacher - low) / (masked_max(teacher, mask) - low).clamp_min(EPS)


def robust_stats(values: torch.Tensor, mask: torch.Tensor):
    """Per image ``(median_V(x), mean_V |x - median_V(x)|)``, each (B, 1, 1, 1), differentiable."""
    median = masked_median(values, mask)
    weight = mask.to(values.dtype)
    count = weight.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1.0)
    spread = ((values - median).abs() * weight).sum(dim=(1, 2, 3), keepdim=True) / count
    return median, spread


def robust_normalize(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``n(x) = (x - median_V(x)) / mean_V |x - median_V(x)|`` per image, differentiable end to
    end (args as :func:`robust_stats`; pixels outside V are normalised with V's statistics)."""
    median, spread = robust_stats(values, mask)
    return (values - median) / spread.clamp_min(EPS)


def align_ssi(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``median(s) + mad(s) * n(t)`` per image (student detached; ``n``: :func:`robust_normalize`).
    :class:`DistillationTerm`'s ``ssi`` compares ``n(s)`` and ``n(t)`` instead, in the graph."""
    student_median, spread = robust_stats(student.detach(), mask)
    return student_median + spread * robust_normalize(teacher, mask)


# the target each alignment gives the Chamfer term (which compares values, not a student map)
ALIGNERS: Dict[str, Aligner] = {
    "normalized": align_normalized, "minmax": align_minmax, "si": align_median, "ssi": align_ssi}


def si_pair(disp: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    """``si``: ``(m * s / median(s), m * t / median(t))`` with ``m`` the detached median(s)."""
    median = masked_median(disp, mask)  # once; in the graph: the student side is scale-free
    units = median.detach()
    teacher_median = masked_median(teacher, mask)
    return disp * (units / median.clamp_min(EPS)), teacher * (units / teacher_median.clamp_min(EPS))


def ssi_pair(disp: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    """``ssi``: ``(m * n(s), m * n(t))`` with ``m`` the detached mad(s)."""
    median, spread = robust_stats(disp, mask)  # once; in the graph
    units = spread.detach()
    return (units * (disp - median) / spread.clamp_min(EPS),
            units * robust_normalize(teacher, mask))


def fixed_target_pair(align: Aligner):
    """``normalized`` / ``minmax``: ``(s, align(t))``; the target does not depend on the student."""
    return lambda disp, teacher, mask: (disp, align(teacher, disp, mask))


# what the distillation L1 compares, per alignment: name -> fn(disp, teacher, mask) ->
# (student side, target); si and ssi keep the student's statistics in the graph
PAIRS = {"normalized": fixed_target_pair(align_normalized),
         "minmax": fixed_target_pair(align_minmax), "si": si_pair, "ssi": ssi_pair}


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |prediction - target| over each image's valid pixels, averaged over images that have
    any (none: a differentiable 0); static shapes (empty images get weight 0)."""
    weight = mask.to(prediction.dtype)
    count = weight.sum(dim=(1, 2, 3))
    per_image = ((prediction - target).abs() * weight).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)
    has_pixels = (count > 0).to(per_image.dtype)
    return (per_image * has_pixels).sum() / has_pixels.sum().clamp_min(1.0)


def at_teacher_size(disp: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The student disparity (B, 1, h, w) resized bilinearly to the teacher's (H, W) if needed."""
    if disp.shape[-2:] == teacher.shape[-2:]:
        return disp
    return F.interpolate(disp, size=teacher.shape[-2:], mode="bilinear", align_corners=False)


class DistillationTerm:
    """Criterion term ``distill``: teacher-aligned L1 averaged over ``--distill_scales``."""

    name = "distill"

    def __init__(self, cfg: Any):
        self.weight = cfg.loss.distill_weight
        self.scales = list(cfg.loss.distill_scales)
        self.pair = PAIRS[cfg.loss.distill_align]
        self.loss = cfg.loss

    def __call__(self, inputs: Mapping[Any, Any], outputs: Mapping[Any, Any]) -> torch.Tensor:
        """Unweighted scalar loss; ``("disp", s)`` is upsampled bilinearly to ``"teacher_disp"`` (B,
        1, H, W)."""
        teacher = teacher_disparity(inputs, self.name)
        mask = teacher_mask(teacher, self.loss)
        losses = []
        for scale in self.scales:
            disp = at_teacher_size(outputs[("disp", scale)], teacher)
            student, target = self.pair(disp, teacher, mask)
            losses.append(masked_l1(student, target, mask))
        return torch.stack(losses).mean()
