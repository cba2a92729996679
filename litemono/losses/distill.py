"""Pixel-level L1 distillation from a precomputed relative-disparity teacher (``--distill_*``).

The teacher (Depth Anything V2, Yang et al., NeurIPS 2024) gives disparity up to an unknown
per-image scale and shift; the Lite-Mono student (Zhang et al., CVPR 2023) a sigmoid disparity
in (0, 1). Per image, over the valid pixels (teacher > 0; 0 is sky), the term compares the
student with the teacher by an L1 after one of three alignments (``--distill_align``):

* ``normalized`` (default, the report's, README): the teacher median-centred and scaled into
  [0, 1]; the target does not depend on the student.
* ``si``: both maps divided by their own median, the student's median kept in the graph
  (invariant to the student's scale).
* ``ssi`` (MiDaS, Ranftl et al., TPAMI 2022): both maps normalised by median and mean absolute
  deviation, the student's statistics in the graph (invariant to scale and shift).

:data:`ALIGNERS` gives the Chamfer term the matching target with the student detached. The
formulas and why the student's statistics stay in the graph: docs/architecture.md,
"Distillation alignments". Everything runs in static shapes (no boolean indexing, no host reads).
"""
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


def masked_median(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-image median of the valid values, numpy's interpolating definition, in static shapes.

    ``torch.quantile(values[b][mask[b]], 0.5)`` for every image b, without boolean indexing or a
    loop over images (so the step compiles into one graph and never waits for the host): the
    invalid entries are pushed to +inf, each row is sorted, and the two middle valid entries,
    at ranks ``floor`` and ``ceil`` of ``(V - 1) / 2``, are interpolated. The gradient goes to
    those two entries, as torch.quantile's does.

    Args:
        values: (B, 1, H, W); computed in float32 (float64 stays float64), like torch.quantile.
        mask: (B, 1, H, W) bool, the valid pixels V.

    Returns:
        (B, 1, 1, 1); 0 for an image without valid pixels.
    """
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
    """Scale the teacher so that its median matches the student's (``si``'s Chamfer target).

    Args:
        teacher: (B, 1, H, W) relative disparity, 0 = invalid.
        student: (B, 1, H, W) student disparity (detached here).
        mask: (B, 1, H, W) bool, valid pixels.

    Returns:
        (B, 1, H, W) ``teacher * median(student) / median(teacher)`` per image.
    """
    student_median = masked_median(student.detach(), mask)
    teacher_median = masked_median(teacher, mask)
    return teacher * student_median / teacher_median.clamp_min(EPS)


def align_normalized(teacher: torch.Tensor, student: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """Median-centre the teacher and normalise it into [0, 1]: the median goes to 0.5, the
    farthest value to 0 or 1.

    Args as :func:`align_median` (``student`` is unused: the target range is fixed).
    """
    centred = teacher - masked_median(teacher, mask)
    spread = masked_max(centred.abs(), mask)
    return 0.5 + centred / (2.0 * spread.clamp_min(EPS))


def robust_stats(values: torch.Tensor, mask: torch.Tensor):
    """Per image ``(median_V(x), mean_V |x - median_V(x)|)``, each (B, 1, 1, 1), differentiable.

    Args:
        values: (B, 1, H, W).
        mask: (B, 1, H, W) bool, the valid pixels V.
    """
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
    """Robust affine alignment: the teacher given the (detached) student's median and spread.

    Args as :func:`align_median`. Returns ``median(s) + mad(s) * n(t)`` per image, ``n`` being
    :func:`robust_normalize`. :class:`DistillationTerm` does not use this target: its ``ssi``
    term compares ``n(s)`` and ``n(t)`` with the student's statistics kept in the graph.
    """
    student_median, spread = robust_stats(student.detach(), mask)
    return student_median + spread * robust_normalize(teacher, mask)


# the target each alignment gives the Chamfer term (which compares values, not a student map)
ALIGNERS: Dict[str, Aligner] = {
    "normalized": align_normalized, "si": align_median, "ssi": align_ssi}


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


def normalized_pair(disp: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor):
    """``normalized``: ``(s, normalised t)``; the target does not depend on the student."""
    return disp, align_normalized(teacher, disp, mask)


# what the distillation L1 compares, per alignment: name -> fn(disp, teacher, mask) ->
# (student side, target); si and ssi keep the student's statistics in the graph
PAIRS = {"normalized": normalized_pair, "si": si_pair, "ssi": ssi_pair}


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean |prediction - target| over each image's valid pixels, averaged over the images that
    have any (a batch without valid pixels gives a differentiable 0). Static shapes: the images
    without pixels get weight 0 instead of being indexed out.

    Args:
        prediction, target: (B, 1, H, W).
        mask: (B, 1, H, W) bool.
    """
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
    """Extra criterion term ``distill``: teacher-aligned L1 averaged over ``--distill_scales``.

    Args:
        cfg: the run's :class:`litemono.config.Config` (``loss.distill_weight``,
            ``loss.distill_align``, ``loss.distill_scales``).
    """

    name = "distill"

    def __init__(self, cfg: Any):
        self.weight = cfg.loss.distill_weight
        self.scales = list(cfg.loss.distill_scales)
        self.pair = PAIRS[cfg.loss.distill_align]

    def __call__(self, inputs: Mapping[Any, Any], outputs: Mapping[Any, Any]) -> torch.Tensor:
        """Unweighted loss.

        Args:
            inputs: with ``"teacher_disp"`` (B, 1, H, W), 0 = sky.
            outputs: with ``("disp", s)`` (B, 1, H/2^s, W/2^s), upsampled bilinearly to the
                teacher's size.

        Returns:
            Scalar tensor.
        """
        teacher = teacher_disparity(inputs, self.name)
        mask = teacher > 0
        losses = []
        for scale in self.scales:
            disp = at_teacher_size(outputs[("disp", scale)], teacher)
            student, target = self.pair(disp, teacher, mask)
            losses.append(masked_l1(student, target, mask))
        return torch.stack(losses).mean()
