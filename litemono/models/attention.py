"""Attention modules for the encoder stages (``--attention KIND``; ``--spatial_attention``).

:data:`ATTENTION_KINDS` is a name -> factory table (timm's ``layers/create_attn.py`` style); a
new kind is one ``channels -> nn.Module`` and one registration. ``spatial`` (the report's): the
spatial branch of CBAM (ECCV 2018, section 3, eq. 3): channel mean and max, 7x7 conv, sigmoid,
multiply; 98 weights per stage, ~1 M MACs at 640x192 (5.032 G -> 5.033 G for lite-mono)."""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
from torch import nn

CBAM_KERNEL = 7  # CBAM's choice (paper, table 4: 7x7 beats 3x3)


class SpatialAttention(nn.Module):
    """x * sigmoid(conv7x7([mean_c(x), max_c(x)])); ``conv.weight`` (1, 2, 7, 7), no bias, as
    CBAM."""

    def __init__(self, kernel_size: int = CBAM_KERNEL):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> the gate (B, 1, H, W) in (0, 1)."""
        pooled = torch.cat((x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)), dim=1)
        return torch.sigmoid(self.conv(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> gated x, same shape."""
        return x * self.attention_map(x)


# kind -> factory(channels of the stage) -> module mapping (B, C, H, W) to the same shape
ATTENTION_KINDS: Dict[str, Callable[[int], nn.Module]] = {
    "spatial": lambda channels: SpatialAttention(),  # CBAM's spatial gate ignores the channels
}


def register_attention(kind: str, factory: Callable[[int], nn.Module]) -> None:
    """Add an attention kind: ``factory(channels)`` builds the module for one encoder stage."""
    if kind in ATTENTION_KINDS:
        raise ValueError(f"attention kind {kind!r} already exists")
    ATTENTION_KINDS[kind] = factory


def make_attention(kind: Optional[str], channels: int) -> Optional[nn.Module]:
    """The attention module of ``kind`` for a stage with ``channels``, or None when ``kind`` is
    None (no attention: the upstream network)."""
    if kind is None:
        return None
    if kind not in ATTENTION_KINDS:
        raise ValueError(f"--attention: unknown kind {kind!r}, choose from {list(ATTENTION_KINDS)}")
    return ATTENTION_KINDS[kind](channels)
