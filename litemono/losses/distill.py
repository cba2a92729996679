"""Pixel-level L1 distillation from a precomputed relative-disparity teacher.

The teacher (Depth Anything V2, Yang et al., NeurIPS 2024) predicts disparity only up to an
unknown per-image scale and shift, and the Lite-Mono student (Zhang et al., CVPR 2023) predicts a
sigmoid disparity in (0, 1). Each image's teacher map is therefore first aligned to the student,
then compared with an L1 on the valid pixels. Teacher pixels equal to 0 (sky, infinitely far)
are masked out everywhere. As targets for the Chamfer term, alignments take the student's
statistics from a detached copy; the ``si`` and ``ssi`` distillation terms keep them in the graph.

Alignments (``--distill_align``), per image, over the valid pixels V, with t the teacher and s
the student disparity:

* ``normalized`` (default; the seed report's variant: median-centring, then normalising to
  [0, 1]): ``0.5 + (t - median_V(t)) / (2 * max_V |t - median_V(t)|)``: the median goes to 0.5
  and the farthest value to 0 or 1. It does not use the student, so nothing in it rewards
  shrinking, but it imposes a per-image disparity shift that no depth proportional to the truth
  has: on the synthetic scene a student equal to its target scores abs_rel 0.13, where the
  stand-in teacher itself scores 0.047. The report's rows use it.
* ``si`` (scale-invariant): the term is ``mean_V |m * s / median_V(s) - m * t / median_V(t)|``,
  with the student's median *in the graph* and ``m = median_V(s)`` detached. Its gradient has
  exactly zero slope along any scale of the student (the median moves with it), so nothing
  rewards shrinking; the detached ``m`` only keeps the gradient in disparity units. The target
  keeps the teacher's disparity *ratios*, i.e. its shift: the stand-in teacher's shift (up to
  0.2 of its median) costs it abs_rel 0.047. On the synthetic scene it is the better choice
  (abs_rel 0.156 vs the baseline's 0.184, where ``normalized`` gave 0.187;
  docs/results_synthetic.md, "Session 4"). As an alignment (for the Chamfer term) its target
  is ``t * median_V(s) / median_V(t)``, the student's median detached.
* ``ssi`` (scale- and shift-invariant, the loss of MiDaS, Ranftl et al., TPAMI 2022): both maps
  normalised by their own median and mean absolute deviation,
  ``n(x) = (x - median_V(x)) / mean_V |x - median_V(x)|``; the term is
  ``mad_V(s) * mean_V |n(s) - n(t)|`` with ``n(s)``'s statistics in the graph and the factor
  ``mad_V(s)`` detached (without it the gradient grows as ``1 / mad(s)``; from the nearly flat
  untrained map it drowned the photometric loss under Adam). Zero slope along any scale *and
  shift* of the student: the teacher sets only the shape, and the shift is left to the
  photometric loss, which hardly constrains it for the far pixels of a forward drive; on the
  synthetic scene the student's shift wandered and the run was unstable
  (docs/results_synthetic.md). As an alignment (for the Chamfer term) its target is
  ``median_V(s) + mad_V(s) * n(t)``.

Removed alignments (documented failures, used by no table row; docs/results_synthetic.md keeps
their runs): ``median`` (``t * median_V(s) / median_V(t)`` as a target for the *detached*
student) and ``lstsq`` (least-squares scale and shift onto the detached student) both reward
shrinking the student: with a target that follows the detached student, the gradient along
"scale the whole student by (1 + e)" is ``sum_V sign(s - target) * s``, and the pixels above
their target are on average the larger ones, so it is positive; every step shrinks the student a
little, the target follows, and the disparity walked to 0 within 300 steps (a test shows the
sign of this slope). ``--distill_relative`` (each L1 divided by the detached student median)
kept that slope and collapsed too; ``si`` is what it was meant to be.
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
    """Median-centre the teacher and normalise it into [0, 1] (median -> 0.5); see module doc.

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

    Args as :func:`align_median`. Returns ``median(s) + mad(s) * n(t)`` per image (module
    docstring). :class:`DistillationTerm` does not use this target: its ``ssi`` term compares
    ``n(s)`` and ``n(t)`` with the student's statistics kept in the graph.
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
