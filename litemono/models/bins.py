"""Disparity-bin head for the full-resolution decoder level (``--bins K``; the report's).

AdaBins (CVPR 2021, section 3, eqs. 1-3) in normalised disparity (0, 1), the sigmoid head's
range, so ``disp_to_depth`` and losses apply unchanged. ``adaptive``: an MLP on pooled features
(deepest encoder + top decoder) gives K widths (softplus + floor, summing to 1), centres are the
cell midpoints. ``fixed``: centres (k + 0.5) / K. This is ``--bin_head light`` (one 3x3 conv to
K logits at H/2, 0.42 GMACs at 640x192); ``--bin_head mvit`` (:mod:`.minivit_bins`) reproduces
the report's FLOPs."""
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
    """Width scores (B, K) -> sorted centres (B, K) in (0, 1): midpoints of ``softplus(raw) +
    MIN_WIDTH`` normalised to 1 (AdaBins eq. 2: ReLU + 0.1)."""
    widths = F.softplus(raw) + MIN_WIDTH
    widths = widths / widths.sum(dim=1, keepdim=True)
    return torch.cumsum(widths, dim=1) - 0.5 * widths


class DisparityBinHead(nn.Module):
    """Per-pixel bin probabilities from the top decoder feature (H/2), per-image centres from it and
    the deepest encoder feature (H/16) -> disparity; K >= 2, ``adaptive`` or ``fixed``."""

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
        """``top`` (B, Ct, H/2, W/2), ``deep`` (B, Cd, H/16, W/16) -> ``"disp"`` (B, 1, H, W) in (0,
        1), ``"bin_centers"`` (B, K), ``"bin_probs"`` (B, K, H, W) summing to 1."""
        centers = self.bin_centers(top, deep)
        probs = torch.softmax(self.logits(top), dim=1)
        # bilinear weights are convex, so the upsampled probabilities still sum to 1
        probs = F.interpolate(probs, scale_factor=2, mode="bilinear", align_corners=False)
        disp = torch.einsum("bkhw,bk->bhw", probs, centers).unsqueeze(1)
        return {"disp": disp, "bin_centers": centers, "bin_probs": probs}
