"""Chamfer loss between adaptive bin centres and the teacher's disparity distribution.

The report's Eq. 1, after AdaBins' bin-centre loss (CVPR 2021, section 3.3). Points: the
teacher's disparity aligned like distillation, sampled at a fixed stride over its valid pixels
(:func:`~.distill.teacher_mask`; kept in ``outputs`` for tensorboard); 1-D Chamfer per image, averaged, static shapes; gradients reach the centres only.
``--chamfer_reduction``: ``sum`` (Eq. 1: sum_P min_C (p - c)^2 + sum_C min_P (c - p)^2) or
``mean`` (default, AdaBins; a ``sum`` weight ``w`` is a ``mean`` weight ``w * N`` on the point
side)."""
from __future__ import annotations

from typing import Any, Mapping, MutableMapping, Optional, Tuple

import torch

from .distill import ALIGNERS, at_teacher_size, teacher_disparity, teacher_mask


REDUCTIONS = ("mean", "sum")


def chamfer_1d(points: torch.Tensor, centers: torch.Tensor,
               mask: Optional[torch.Tensor] = None, reduction: str = "mean") -> torch.Tensor:
    """Symmetric squared 1-D Chamfer of points (B, N) (``mask``: which exist) and centres (B, K).

    ``mean_n min_k (p_n - c_k)^2 + mean_k min_n (c_k - p_n)^2`` (sums for ``"sum"``), averaged over
    images with a point; a differentiable 0 when none has."""
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
    """Fixed-stride sample: indices ``floor(i * V / n)``, i < n = min(count, V), of each image's V
    valid values (raster order) -> ``(points, point_mask)`` (B, count), padding 0 / False. Static
    shapes: the r-th valid pixel is where the running count first exceeds r."""
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
    """Criterion term ``chamfer``: bin centres vs. aligned teacher disparities."""

    name = "chamfer"

    def __init__(self, cfg: Any):
        self.weight = cfg.loss.chamfer_weight
        self.points = cfg.loss.chamfer_points
        self.reduction = cfg.loss.chamfer_reduction
        self.align = ALIGNERS[cfg.loss.distill_align]
        self.loss = cfg.loss

    def __call__(self, inputs: Mapping[Any, Any], outputs: MutableMapping[Any, Any]
                 ) -> torch.Tensor:
        """Unweighted scalar; teacher aligned to ``("disp", 0)``, compared with ``"bin_centers"``
        (B, K)."""
        teacher = teacher_disparity(inputs, self.name)
        if "bin_centers" not in outputs:
            raise KeyError("the chamfer loss needs outputs['bin_centers']: set --bins (e.g. 64)")
        disp = at_teacher_size(outputs[("disp", 0)], teacher)
        mask = teacher_mask(teacher, self.loss)
        aligned = self.align(teacher, disp, mask).detach()
        points, point_mask = sample_points(aligned, mask, self.points)
        outputs["chamfer_points"], outputs["chamfer_point_mask"] = points, point_mask
        return chamfer_1d(points, outputs["bin_centers"], point_mask, self.reduction)
