"""Edge-aware disparity smoothness (monodepth, CVPR 2017, eq. 3; monodepth2, ICCV 2019, eq. 3;
Lite-Mono, CVPR 2023, eq. 10): first differences of the mean-normalised disparity weighted by
``exp(-|image gradient|)``. :func:`edge_weights` is computed once per image and scale."""
from __future__ import annotations

from typing import Tuple

import torch

# Keeps the mean normalisation finite for an all-zero disparity.
MEAN_DISP_EPS = 1e-7


def edge_weights(image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """``exp(-mean_RGB |dI|)`` of (B, 3, H, W) in [0, 1]: (B, 1, H, W-1) along x, (B, 1, H-1, W)
    along y."""
    step_x = (image[..., 1:] - image[..., :-1]).abs().mean(dim=1, keepdim=True)
    step_y = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return torch.exp(-step_x), torch.exp(-step_y)


def smoothness_loss(disp: torch.Tensor, weights: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Scalar: mean weighted |d disp / dx| + |d disp / dy| of (B, 1, H, W) ``disp`` / its per-image
    mean."""
    weight_x, weight_y = weights
    # mean over rows, then over columns, as upstream: a one-step mean rounds differently, and
    # that flips which nearly equal neighbours become exact ties (zero gradient of |.|)
    disp = disp / (disp.mean(dim=2, keepdim=True).mean(dim=3, keepdim=True) + MEAN_DISP_EPS)
    step_x = (disp[..., 1:] - disp[..., :-1]).abs()
    step_y = (disp[..., 1:, :] - disp[..., :-1, :]).abs()
    return (step_x * weight_x).mean() + (step_y * weight_y).mean()


def edge_aware_smoothness(disp: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """:func:`smoothness_loss` with the weights of ``image`` (B, 3, H, W); returns a scalar."""
    return smoothness_loss(disp, edge_weights(image))
