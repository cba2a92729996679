"""Edge-aware disparity smoothness.

The regulariser of monodepth (Godard et al., CVPR 2017, eq. 3) in the form monodepth2 (ICCV 2019,
eq. 3) and Lite-Mono (Zhang et al., CVPR 2023, eq. 10) use: first differences of the
mean-normalised disparity, down-weighted by ``exp(-|image gradient|)`` so depth may jump at
image edges. The image weights do not depend on the prediction; :func:`edge_weights` computes
them once per image and scale and :func:`smoothness_loss` reuses them.
"""
from __future__ import annotations

from typing import Tuple

import torch

# Keeps the mean normalisation finite for an all-zero disparity.
MEAN_DISP_EPS = 1e-7


def edge_weights(image: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel weights ``exp(-mean over RGB of |dI|)`` along x and along y.

    Args:
        image: (B, 3, H, W) image in [0, 1] at the resolution of the disparity it regularises.

    Returns:
        ``(weight_x, weight_y)``: (B, 1, H, W-1) and (B, 1, H-1, W).
    """
    step_x = (image[..., 1:] - image[..., :-1]).abs().mean(dim=1, keepdim=True)
    step_y = (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
    return torch.exp(-step_x), torch.exp(-step_y)


def smoothness_loss(disp: torch.Tensor, weights: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Edge-aware smoothness of the mean-normalised disparity.

    Args:
        disp: (B, 1, H, W) disparity (any positive scale: it is divided by its per-image mean).
        weights: the output of :func:`edge_weights` for the matching image.

    Returns:
        Scalar: mean weighted |d disp / dx| plus mean weighted |d disp / dy|.
    """
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
