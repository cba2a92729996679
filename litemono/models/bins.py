"""Disparity-bin head for the full-resolution decoder level (``--bins K``; from the report, README).

Reference: S. F. Bhat, I. Alhashim, P. Wonka, "AdaBins: Depth Estimation Using Adaptive Bins",
CVPR 2021, section 3 (bin widths from global features, eq. 1-2; depth as the probability-
weighted sum of bin centres, eq. 3). Adapted to normalised disparity: the range is (0, 1), the
range of upstream's sigmoid head, so ``disp_to_depth`` and the losses apply unchanged.

``adaptive``: per image, a small MLP on globally pooled features (the encoder's deepest feature
and the top decoder feature) predicts K positive widths (softplus plus a floor, normalised to sum
to 1); the centres are the midpoints of the resulting cells, hence sorted and inside (0, 1).
``fixed`` (ablation): uniform centres (k + 0.5) / K; only the per-pixel distribution is learnt.

This is the light head (``--bin_head light``: one 3x3 convolution to K logits at H/2, 0.42
GMACs at 640x192). The report's heads are heavier: ``--bin_head mvit``
(:mod:`.minivit_bins`) reproduces its FLOPs column.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

BIN_MODES = ("adaptive", "fixed")
CENTER_MLP_HIDDEN = 256
MIN_WIDTH = 1e-3  # floor on the un-normalised widths: no bin collapses to zero width


def uniform_centers(num_bins: int) -> torch.Tensor:
    """The fixed bins' centres (k + 0.5) / K, k < K: (K,)."""
    return (torch.arange(num_bins, dtype=torch.float32) + 0.5) / num_bins


def widths_to_centers(raw: torch.Tensor) -> torch.Tensor:
    """Unconstrained width scores (B, K) -> sorted bin centres in (0, 1), (B, K).

    Widths are ``softplus(raw) + MIN_WIDTH`` normalised to sum to the range 1 (AdaBins eq. 2
    uses ReLU + 0.1); the centres are the midpoints of the resulting cells.
    """
    widths = F.softplus(raw) + MIN_WIDTH
    widths = widths / widths.sum(dim=1, keepdim=True)
    return torch.cumsum(widths, dim=1) - 0.5 * widths


class DisparityBinHead(nn.Module):
    """Per-pixel bin probabilities and per-image bin centres -> disparity.

    Args:
        top_channels: channels of the top decoder feature (at H/2).
        deep_channels: channels of the deepest encoder feature (at H/16).
        num_bins: K >= 2.
        mode: ``"adaptive"`` or ``"fixed"``.
    """

    def __init__(self, top_channels: int, deep_channels: int, num_bins: int = 64,
                 mode: str = "adaptive"):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"--bins must be at least 2, got {num_bins}")
        if mode not in BIN_MODES:
            raise ValueError(f"--bin_mode must be one of {BIN_MODES}, got {mode!r}")
        self.num_bins = num_bins
        self.mode = mode
        self.logits = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(top_channels, num_bins, 3))
        if mode == "adaptive":
            self.center_mlp = nn.Sequential(
                nn.Linear(top_channels + deep_channels, CENTER_MLP_HIDDEN), nn.GELU(),
                nn.Linear(CENTER_MLP_HIDDEN, num_bins))
        else:
            self.center_mlp = None
            self.register_buffer("uniform_centers", uniform_centers(num_bins), persistent=False)

    def bin_centers(self, top: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        """Sorted centres in (0, 1), (B, K), from top (B, Ct, h, w) and deep (B, Cd, h', w')."""
        if self.center_mlp is None:
            return self.uniform_centers.to(top.dtype).expand(top.shape[0], -1)
        pooled = torch.cat((top.mean(dim=(2, 3)), deep.mean(dim=(2, 3))), dim=1)
        return widths_to_centers(self.center_mlp(pooled))

    def forward(self, top: torch.Tensor, deep: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Args:
            top: top decoder feature (B, Ct, H/2, W/2).
            deep: deepest encoder feature (B, Cd, H/16, W/16).

        Returns:
            ``"disp"`` (B, 1, H, W) in (0, 1), ``"bin_centers"`` (B, K),
            ``"bin_probs"`` (B, K, H, W) summing to 1 over K.
        """
        centers = self.bin_centers(top, deep)
        probs = torch.softmax(self.logits(top), dim=1)
        # bilinear weights are convex, so the upsampled probabilities still sum to 1
        probs = F.interpolate(probs, scale_factor=2, mode="bilinear", align_corners=False)
        disp = torch.einsum("bkhw,bk->bhw", probs, centers).unsqueeze(1)
        return {"disp": disp, "bin_centers": centers, "bin_probs": probs}
