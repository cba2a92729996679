"""Depth metrics, the Garg/Eigen crop and median scaling: the one implementation in litemono.

The protocol is the one of Eigen et al., "Depth Map Prediction from a Single Image using a
Multi-Scale Deep Network" (NeurIPS 2014) with the crop of Garg et al. (ECCV 2016), as run by
monodepth2 / Lite-Mono (Zhang et al., CVPR 2023) ``evaluate_depth.py``: ground truth between
1e-3 and 80 m inside the crop, per-image median scaling for monocular models, predictions capped
to the same 1e-3..80 m range, then seven error / accuracy numbers. Both ``evaluate_depth.py``
and the trainer's validation call :func:`evaluate_depth_map`, so the two can never drift apart.

Inputs may be numpy arrays or torch tensors; the arithmetic runs in float64 torch.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

# The evaluation depth range (metres): ground truth outside it is ignored, predictions are
# clamped into it. 80 m is the usual KITTI cap (velodyne returns get sparse beyond it).
EVAL_MIN_DEPTH = 1e-3
EVAL_MAX_DEPTH = 80.0

# Garg/Eigen crop as fractions of the image: (top, bottom, left, right). On a 375x1242 KITTI
# frame these give rows 153:371 and columns 44:1197.
GARG_CROP = (0.40810811, 0.99189189, 0.03594771, 0.96405229)

# Order of the metrics everywhere (tables, CSV columns, JSON): errors first, then accuracies.
METRIC_NAMES = ("abs_rel", "sq_rel", "rmse", "rmse_log", "a1", "a2", "a3")


def _as_float64(values: ArrayLike) -> torch.Tensor:
    if isinstance(values, np.ndarray):
        values = torch.from_numpy(values)
    return values.detach().to(torch.float64)


def eigen_crop_mask(height: int, width: int,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """Boolean mask of the Garg/Eigen crop.

    Args:
        height, width: size of the ground-truth map (pixels).
        device: where to build the mask.

    Returns:
        (height, width) bool tensor, True inside rows [int(0.408 H), int(0.992 H)) and columns
        [int(0.036 W), int(0.964 W)).
    """
    top, bottom, left, right = GARG_CROP
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    return mask


def valid_gt_mask(gt_depth: ArrayLike, eigen_crop: bool = True,
                  min_depth: float = EVAL_MIN_DEPTH, max_depth: float = EVAL_MAX_DEPTH
                  ) -> torch.Tensor:
    """Pixels that take part in the evaluation.

    Args:
        gt_depth: (..., H, W) ground-truth depth in metres, 0 where unknown.
        eigen_crop: True for the eigen protocol (depth range and Garg crop); False for the
            benchmark protocol (every pixel with gt > 0, no range, no crop).
        min_depth, max_depth: the open range of usable ground truth (eigen only).

    Returns:
        bool tensor of the shape of ``gt_depth``.
    """
    gt = _as_float64(gt_depth)
    if not eigen_crop:
        return gt > 0
    crop = eigen_crop_mask(gt.shape[-2], gt.shape[-1], device=gt.device)
    return (gt > min_depth) & (gt < max_depth) & crop


def median(values: ArrayLike) -> torch.Tensor:
    """Median as numpy defines it: the mean of the two middle values for an even count.

    (``torch.median`` returns the lower middle value, which would shift the scaling ratio.)
    """
    flat = _as_float64(values).reshape(-1)
    count = flat.numel()
    if count == 0:
        raise ValueError("median of an empty set: no valid ground-truth pixel in this image")
    lower = torch.kthvalue(flat, (count + 1) // 2).values
    upper = torch.kthvalue(flat, count // 2 + 1).values
    return 0.5 * (lower + upper)


def median_scale_ratio(gt: ArrayLike, pred: ArrayLike) -> float:
    """median(gt) / median(pred): the factor that aligns a scale-free prediction to metres."""
    return float(median(gt) / median(pred))


def compute_depth_metrics(gt: ArrayLike, pred: ArrayLike) -> Dict[str, float]:
    """The seven standard metrics between matched depths.

    Args:
        gt: (N,) ground-truth depths (metres), all > 0.
        pred: (N,) predicted depths (metres), all > 0, already scaled and capped.

    Returns:
        ``abs_rel`` mean |gt - p| / gt, ``sq_rel`` mean (gt - p)^2 / gt, ``rmse``
        sqrt(mean (gt - p)^2), ``rmse_log`` sqrt(mean (ln gt - ln p)^2) and ``a1``..``a3`` the
        fractions with max(gt / p, p / gt) below 1.25, 1.25^2, 1.25^3.
    """
    gt, pred = _as_float64(gt).reshape(-1), _as_float64(pred).reshape(-1)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred hold {gt.numel()} and {pred.numel()} values; "
                         "they must match")
    diff = gt - pred
    worst_ratio = torch.maximum(gt / pred, pred / gt)
    out = {
        "abs_rel": (diff.abs() / gt).mean(),
        "sq_rel": (diff ** 2 / gt).mean(),
        "rmse": (diff ** 2).mean().sqrt(),
        "rmse_log": ((gt.log() - pred.log()) ** 2).mean().sqrt(),
    }
    for k in (1, 2, 3):
        out[f"a{k}"] = (worst_ratio < 1.25 ** k).to(torch.float64).mean()
    return {name: float(out[name]) for name in METRIC_NAMES}


def evaluate_depth_map(gt_depth: ArrayLike, pred_depth: ArrayLike, eigen_crop: bool = True,
                       median_scaling: bool = True, scale_factor: float = 1.0,
                       min_depth: float = EVAL_MIN_DEPTH, max_depth: float = EVAL_MAX_DEPTH
                       ) -> Tuple[Dict[str, float], Optional[float]]:
    """Upstream's per-image protocol on a predicted depth map already at the ground-truth size.

    Steps: select the valid pixels (:func:`valid_gt_mask`), multiply the prediction by
    ``scale_factor``, scale it by the median ratio (unless disabled), clamp it to
    [min_depth, max_depth], compute :func:`compute_depth_metrics`. Passing a batch
    (B, 1, H, W) uses one ratio for the whole batch, as upstream's training-time metrics do.

    Args:
        gt_depth: (..., H, W) ground truth in metres, 0 where unknown.
        pred_depth: predicted depth of the same shape (metres, up to scale).
        eigen_crop: eigen protocol (True) or benchmark protocol (False), see
            :func:`valid_gt_mask`.
        median_scaling: per-image median scaling (monocular models).
        scale_factor: fixed factor applied first (5.4 for stereo-trained models).
        min_depth, max_depth: evaluation range (metres).

    Returns:
        (metrics dict in :data:`METRIC_NAMES` order, the median ratio or None when disabled).
    """
    gt, pred = _as_float64(gt_depth), _as_float64(pred_depth).to(_as_float64(gt_depth).device)
    if gt.shape != pred.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} "
                         "differ in shape; resize the prediction to the ground truth first")
    mask = valid_gt_mask(gt, eigen_crop, min_depth, max_depth)
    gt, pred = gt[mask], pred[mask] * scale_factor
    ratio = None
    if median_scaling:
        ratio = median_scale_ratio(gt, pred)
        pred = pred * ratio
    pred = pred.clamp(min_depth, max_depth)
    return compute_depth_metrics(gt, pred), ratio
