"""Depth metrics, the Garg/Eigen crop and median scaling: the one implementation in litemono.

Eigen et al. (NeurIPS 2014) with Garg et al.'s crop (ECCV 2016), as monodepth2 / Lite-Mono
``evaluate_depth.py``: gt in 1e-3..80 m inside the crop, per-image median scaling, predictions
capped to the same range, seven numbers. Evaluation and training validation both call
:func:`evaluate_depth_map`. Inputs: numpy or torch; arithmetic in float64 torch."""
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
    """(height, width) bool, True in rows [int(0.408 H), int(0.992 H)), cols [int(0.036 W),
    int(0.964 W))."""
    top, bottom, left, right = GARG_CROP
    mask = torch.zeros(height, width, dtype=torch.bool, device=device)
    mask[int(top * height):int(bottom * height), int(left * width):int(right * width)] = True
    return mask


def valid_gt_mask(gt_depth: ArrayLike, eigen_crop: bool = True,
                  min_depth: float = EVAL_MIN_DEPTH, max_depth: float = EVAL_MAX_DEPTH
                  ) -> torch.Tensor:
    """Evaluated pixels of gt (..., H, W) in metres: eigen (``eigen_crop``: open range and crop) or
    benchmark (gt > 0)."""
    gt = _as_float64(gt_depth)
    if not eigen_crop:
        return gt > 0
    crop = eigen_crop_mask(gt.shape[-2], gt.shape[-1], device=gt.device)
    return (gt > min_depth) & (gt < max_depth) & crop


def median(values: ArrayLike) -> torch.Tensor:
    """Numpy's median (mean of the two middle values); ``torch.median`` takes the lower one."""
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
    """Seven metrics of matched (N,) depths > 0 in metres: ``abs_rel``, ``sq_rel``, ``rmse``,
    ``rmse_log``, ``a1``..``a3`` (max(gt / p, p / gt) < 1.25^k)."""
    gt, pred = _as_float64(gt).reshape(-1), _as_float64(pred).reshape(-1)
    if gt.shape != pred.shape:
        raise ValueError(f"gt and pred hold {gt.numel()} and {pred.numel()} values; "
                         "they must match")
    diff = gt - pred
    worst_ratio = torch.maximum(gt / pred, pred / gt)
    out = {"abs_rel": (diff.abs() / gt).mean(),
           "sq_rel": (diff ** 2 / gt).mean(),
           "rmse": (diff ** 2).mean().sqrt(),
           "rmse_log": ((gt.log() - pred.log()) ** 2).mean().sqrt()}
    for k in (1, 2, 3):
        out[f"a{k}"] = (worst_ratio < 1.25 ** k).to(torch.float64).mean()
    return {name: float(out[name]) for name in METRIC_NAMES}


def evaluate_depth_map(gt_depth: ArrayLike, pred_depth: ArrayLike, eigen_crop: bool = True,
                       median_scaling: bool = True, scale_factor: float = 1.0,
                       min_depth: float = EVAL_MIN_DEPTH, max_depth: float = EVAL_MAX_DEPTH
                       ) -> Tuple[Dict[str, float], Optional[float]]:
    """Upstream's per-image protocol on a depth map at the gt's size (metres, 0 = unknown in gt).

    Valid pixels (:func:`valid_gt_mask`), times ``scale_factor`` (5.4 for stereo models), median
    ratio (if ``median_scaling``), clamp to [min_depth, max_depth], metrics. A batch (B, 1, H, W)
    gets one ratio, as upstream's training metrics. Returns (metrics in :data:`METRIC_NAMES`
    order, the ratio or None)."""
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
