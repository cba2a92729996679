"""Chamfer loss between adaptive bin centres and the teacher's disparity distribution.

The report's (README) distribution loss, its Eq. 1, after AdaBins' bin-centre density loss
(Bhat et al., CVPR 2021, section 3.3). The target set is the teacher's disparity, aligned to the
student like the distillation term and sampled at a fixed stride over the non-zero pixels (sky
is never a point); the 1-D Chamfer distance is computed per image and averaged over images, in
static shapes so the step compiles whole. Gradients reach the bin centres only.
``--chamfer_reduction`` picks how each direction reduces over its points:

* ``sum`` (the report's Eq. 1)::

    chamfer(P, C) = sum_{p in P} min_{c in C} (p - c)^2 + sum_{c in C} min_{p in P} (c - p)^2

* ``mean`` (default, AdaBins' form): the same with means, so a weight carries over between
  values of ``--chamfer_points`` N and K; on the point side a ``sum`` weight ``w`` acts like a
  ``mean`` weight ``w * N``.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import torch

from .distill import ALIGNERS, at_teacher_size, teacher_disparity


REDUCTIONS = ("mean", "sum")


def chamfer_1d(points: torch.Tensor, centers: torch.Tensor,
               mask: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Symmetric squared 1-D Chamfer distance, averaged over images.

    Args:
        points: (B, N) point values (e.g. teacher disparities).
        centers: (B, K) bin centres.
        mask: (B, N) bool, which points exist (padding is False); all by default.
        reduction: ``"mean"`` or ``"sum"`` over the points of each direction (module docstring).

    Returns:
        Scalar: the mean over images with at least one point of
        ``mean_n min_k (p_n - c_k)^2 + mean_k min_n (c_k - p_n)^2`` (``sum`` for ``"sum"``);
        a differentiable 0 when no image has a point.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"--chamfer_reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if mask is None:
        mask = torch.ones_like(points, dtype=torch.bool)
    sq_dist = (points.unsqueeze(2) - centers.unsqueeze(1)) ** 2  # (B, N, K)
    weight = mask.to(sq_dist.dtype)
    count = weight.sum(dim=1)  # (B,)
    has_points = count > 0
    point_term = (sq_dist.min(dim=2).values * weight).sum(dim=1)  # (B,)
    hidden = sq_dist.masked_fill(~mask.unsqueeze(2), float("inf"))
    center_term = hidden.min(dim=1).values  # (B, K); inf only in images without points
    if reduction == "mean":
        point_term = point_term / count.clamp_min(1.0)
        center_term = center_term.mean(dim=1)
    else:
        center_term = center_term.sum(dim=1)
    # static shapes: images without points get weight 0 rather than being indexed out
    per_image = point_term + torch.where(has_points, center_term, 0.0)
    image_weight = has_points.to(per_image.dtype)
    return (per_image * image_weight).sum() / image_weight.sum().clamp_min(1.0)


def sample_points(values: torch.Tensor, mask: torch.Tensor,
                  count: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Deterministic fixed-stride sample of each image's valid values.

    Image b's valid values (raster order, V of them) are sampled at indices
    ``floor(i * V / n)`` for ``i < n = min(count, V)``; the rest of the row is padding.

    Args:
        values: (B, 1, H, W).
        mask: (B, 1, H, W) bool.
        count: points per image.

    Returns:
        ``(points, point_mask)``, both (B, count); padding has value 0 and mask False.

    Static shapes (no boolean indexing, no loop over images): the running count of valid pixels
    along each row locates the r-th valid pixel as the first position where the count exceeds r.
    """
    flat, valid = values.flatten(1), mask.flatten(1)  # (B, H*W)
    total = valid.sum(dim=1, keepdim=True)  # (B, 1): V per image
    taken = total.clamp(max=count)  # n = min(count, V)
    i = torch.arange(count, device=values.device)
    rank = i * total // taken.clamp_min(1)  # (B, count): which valid pixel each point takes
    running = valid.cumsum(dim=1)  # (B, H*W): valid pixels up to and including each position
    position = torch.searchsorted(running, rank + 1).clamp_max(flat.shape[1] - 1)
    point_mask = i < taken  # (B, count)
    points = torch.where(point_mask, flat.gather(1, position), 0.0)
    return points, point_mask


class ChamferTerm:
    """Extra criterion term ``chamfer``: bin centres vs. aligned teacher disparities.

    Args:
        cfg: the run's :class:`litemono.config.Config` (``loss.chamfer_weight``,
            ``loss.chamfer_points``, ``loss.chamfer_reduction``, ``loss.distill_align``).
    """

    name = "chamfer"

    def __init__(self, cfg: Any):
        self.weight = cfg.loss.chamfer_weight
        self.points = cfg.loss.chamfer_points
        self.reduction = cfg.loss.chamfer_reduction
        self.align = ALIGNERS[cfg.loss.distill_align]

    def __call__(self, inputs: Mapping[Any, Any], outputs: Mapping[Any, Any]) -> torch.Tensor:
        """Unweighted loss.

        Args:
            inputs: with ``"teacher_disp"`` (B, 1, H, W), 0 = sky.
            outputs: with ``"bin_centers"`` (B, K) in (0, 1) and ``("disp", 0)`` (B, 1, H, W),
                the student disparity the teacher is aligned to.

        Returns:
            Scalar tensor.
        """
        teacher = teacher_disparity(inputs, self.name)
        if "bin_centers" not in outputs:
            raise KeyError("the chamfer loss needs outputs['bin_centers']: set --bins (e.g. 64)")
        disp = at_teacher_size(outputs[("disp", 0)], teacher)
        mask = teacher > 0
        aligned = self.align(teacher, disp, mask).detach()
        points, point_mask = sample_points(aligned, mask, self.points)
        return chamfer_1d(points, outputs["bin_centers"], point_mask, self.reduction)
