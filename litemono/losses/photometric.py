"""Photometric reprojection error, per-pixel minimum reprojection and automasking.

monodepth2's appearance term (ICCV 2019, eqs. 1, 4, 5), unchanged in Lite-Mono (CVPR 2023,
section 3.3, eqs. 7-9): ``pe = 0.85 * (1 - SSIM) / 2 + 0.15 * L1`` (3x3 SSIM), minimum over the
source frames, and automasking (the un-warped sources compete in the same minimum)."""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

SSIM_C1 = 0.01 ** 2  # SSIM stabilisers for a dynamic range of 1 (Wang et al., 2004)
SSIM_C2 = 0.03 ** 2
SSIM_WEIGHT = 0.85  # alpha of eq. 1; the L1 part gets 1 - alpha
# Scale of the Gaussian noise added to the identity errors so that a static pixel, where the
# warped and the un-warped source agree exactly, does not always pick the same branch.
TIE_BREAK_NOISE = 1e-5


def _window_mean(maps: torch.Tensor) -> torch.Tensor:
    """Mean over every 3x3 window (stride 1, no padding) of each channel, as upstream's SSIM:
    (B, K, H+2, W+2) -> (B, K, H, W)."""
    return F.avg_pool2d(maps, kernel_size=3, stride=1)


class TargetMoments(NamedTuple):
    """The parts of the SSIM of images against target ``y`` that depend on ``y`` alone."""

    padded: torch.Tensor  # (B, C, H+2, W+2) reflection-padded y
    mean: torch.Tensor  # (B, C, H, W) window means of y
    mean_sq: torch.Tensor  # their squares
    var: torch.Tensor  # window variances E[y^2] - mean^2


def target_moments(y: torch.Tensor) -> TargetMoments:
    """:class:`TargetMoments` of targets (B, C, H, W), shared by calls against the same targets
    (bit for bit the values the calls compute)."""
    py = F.pad(y, (1, 1, 1, 1), mode="reflect")
    mu_y, mean_yy = _window_mean(py), _window_mean(py * py)
    mu_y2 = mu_y * mu_y
    return TargetMoments(py, mu_y, mu_y2, mean_yy - mu_y2)


def ssim_error(x: torch.Tensor, y: torch.Tensor, moments: Optional[TargetMoments] = None
               ) -> torch.Tensor:
    """``clamp((1 - SSIM) / 2, 0, 1)`` over 3x3 mean windows, 1-pixel reflection padding.

    ``x``: (N*B, C, H, W), N images per target, frame-major; ``y``: (B, C, H, W) targets, both in
    [0, 1]; ``moments``: shared :func:`target_moments` or None. Returns (N*B, C, H, W) in [0, 1]."""
    batch = y.shape[0]
    count = x.shape[0] // batch
    if count * batch != x.shape[0]:
        raise ValueError(f"ssim_error: {x.shape[0]} images is not a multiple of {batch} targets")
    py, mu_y, mu_y2, var_y = target_moments(y) if moments is None else moments
    if py.shape[:2] != y.shape[:2] or py.shape[2:] != (y.shape[2] + 2, y.shape[3] + 2):
        raise ValueError(f"ssim_error: moments of {tuple(py.shape)} padded targets do not fit "
                         f"targets {tuple(y.shape)}")
    px = F.pad(x, (1, 1, 1, 1), mode="reflect")
    mu_x, mean_xx = _window_mean(px), _window_mean(px * px)
    mean_xy = _window_mean((px.view(count, *py.shape) * py).view(px.shape))
    per_target = (count, *mu_y.shape)  # the target's moments broadcast over its N images
    mu_x, mean_xx, mean_xy = (m.view(per_target) for m in (mu_x, mean_xx, mean_xy))
    mu_x2, mu_xy = mu_x * mu_x, mu_x * mu_y
    var_x, cov_xy = mean_xx - mu_x2, mean_xy - mu_xy
    numerator = (2 * mu_xy + SSIM_C1) * (2 * cov_xy + SSIM_C2)
    denominator = (mu_x2 + mu_y2 + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return torch.clamp((1 - numerator / denominator) / 2, 0, 1).view(x.shape)


def photometric_error(pred: torch.Tensor, target: torch.Tensor, use_ssim: bool = True,
                      moments: Optional[TargetMoments] = None) -> torch.Tensor:
    """Channel-averaged error (N*B, 1, H, W) of ``pred`` (N*B, 3, H, W) vs ``target`` (B, 3, H, W),
    image i vs target i % B: ``0.85 * SSIM term + 0.15 * L1``, or L1 (``--no_ssim``)."""
    count = pred.shape[0] // target.shape[0]
    diff = pred.view(count, *target.shape) - target  # (N, B, 3, H, W), target broadcast
    l1 = diff.abs().mean(dim=2).view(pred.shape[0], 1, *pred.shape[-2:])
    if not use_ssim:
        return l1
    ssim = ssim_error(pred, target, moments).mean(dim=1, keepdim=True)
    return SSIM_WEIGHT * ssim + (1 - SSIM_WEIGHT) * l1


def select_reprojection(reprojection: torch.Tensor, identity: Optional[torch.Tensor],
                        average: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel error to optimise: minimum over sources, with optional automasking.

    ``reprojection`` / ``identity`` (or None): (B, N, H, W); ``average``: each kind averaged first
    (``--avg_reprojection``). Returns error (B, H, W) and automask (B, 1, H, W) bool (True where a
    reprojection won). The tie-breaking noise is one ``randn`` of identity's shape from the global
    generator of its device, so seeded runs repeat."""
    if average:
        reprojection = reprojection.mean(dim=1, keepdim=True)
        if identity is not None:
            identity = identity.mean(dim=1, keepdim=True)
    if identity is None:
        error = reprojection.min(dim=1).values
        return error, torch.ones_like(error, dtype=torch.bool).unsqueeze(1)
    noise = torch.randn(identity.shape, dtype=identity.dtype, device=identity.device)
    candidates = torch.cat([identity + noise * TIE_BREAK_NOISE, reprojection], dim=1)
    error, choice = candidates.min(dim=1)
    return error, (choice >= identity.shape[1]).unsqueeze(1)
