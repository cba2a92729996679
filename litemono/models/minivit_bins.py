"""AdaBins-style disparity-bin head (``--bin_head mvit``): a mini-ViT with range attention.

AdaBins (CVPR 2021, section 3.2): patch embedding, transformer, an MLP on one token for the bin
widths, further tokens as 1x1 range-attention queries on per-pixel keys, a 1x1 conv to K logits;
disparity = probability-weighted centres in (0, 1), as :mod:`.bins`. ``adaptive``: 8x8 patches of
the H/2 feature, 2-D sin-cos positions, ``1 + Q`` learnt tokens, per-pixel path at full resolution
(x2 upsampled). ``fixed``: uniform centres, no transformer, constant queries (bias-free 1x1
conv) at H/2, probabilities upsampled x2. :data:`MVIT_SIZES` reproduce the report's FLOPs column
(MACs per part: docs/architecture.md, checked by tests/test_minivit_bins.py)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .bins import BIN_MODES, uniform_centers, widths_to_centers


@dataclass(frozen=True)
class MiniViTSize:
    """Sizes of one mode of :class:`MiniViTBinHead` (why these: docs/architecture.md)."""

    full_resolution: bool  # per-pixel path at H (else at H/2, probabilities upsampled)
    embed_dim: int  # E: key and token width
    num_queries: int  # Q: range-attention queries
    patch_size: int = 8
    depth: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    regressor_hidden: int = 256


MVIT_SIZES = {"adaptive": MiniViTSize(full_resolution=True, embed_dim=96, num_queries=96),
              "fixed": MiniViTSize(full_resolution=False, embed_dim=64, num_queries=64)}


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer (ViT): self-attention and MLP, each residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(),
                                 nn.Linear(mlp_ratio * dim, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, N, E) -> (B, N, E)."""
        b, n, e = tokens.shape
        qkv = self.qkv(self.norm1(tokens)).view(b, n, 3, self.num_heads, e // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, E / heads)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, e)
        tokens = tokens + self.proj(attended)
        return tokens + self.mlp(self.norm2(tokens))


def sincos_positions(height: int, width: int, dim: int, device, dtype) -> torch.Tensor:
    """(height * width, dim) 2-D sin-cos positions (MAE): quarters sin(y), cos(y), sin(x), cos(x),
    frequencies 1 / 10000^(i/q)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    y, x = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                          torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    y = y.reshape(-1, 1) * omega
    x = x.reshape(-1, 1) * omega
    return torch.cat((y.sin(), y.cos(), x.sin(), x.cos()), dim=1).to(dtype)


class MiniViTBinHead(nn.Module):
    """AdaBins' mini-ViT head on the top decoder feature (H/2); K = ``num_bins`` >= 2; ``mode``
    picks :data:`MVIT_SIZES`; outputs as :class:`.bins.DisparityBinHead`."""

    def __init__(self, top_channels: int, num_bins: int = 64, mode: str = "adaptive"):
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"--bins must be at least 2, got {num_bins}")
        if mode not in BIN_MODES:
            raise ValueError(f"--bin_mode must be one of {BIN_MODES}, got {mode!r}")
        size = MVIT_SIZES[mode]
        if size.embed_dim % 4 or size.embed_dim % size.num_heads:
            raise ValueError(f"embed_dim {size.embed_dim} must divide by 4 and the head count")
        self.num_bins, self.mode, self.size = num_bins, mode, size
        dim, queries = size.embed_dim, size.num_queries
        self.keys = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(top_channels, dim, 3),
                                  nn.GELU())
        self.logits = nn.Conv2d(queries, num_bins, 1)
        if mode == "adaptive":
            self.patch_embed = nn.Conv2d(top_channels, dim, size.patch_size,
                                         stride=size.patch_size)
            # token 0 regresses the widths, tokens 1..Q become the range-attention queries
            self.tokens = nn.Parameter(torch.zeros(1, 1 + queries, dim))
            nn.init.trunc_normal_(self.tokens, std=0.02)
            self.layers = nn.ModuleList(TransformerLayer(dim, size.num_heads, size.mlp_ratio)
                                        for _ in range(size.depth))
            self.norm = nn.LayerNorm(dim)
            hidden = size.regressor_hidden
            self.regressor = nn.Sequential(nn.Linear(dim, hidden), nn.LeakyReLU(),
                                           nn.Linear(hidden, hidden), nn.LeakyReLU(),
                                           nn.Linear(hidden, num_bins))
            self.queries = None
        else:
            self.queries = nn.Conv2d(dim, queries, 1, bias=False)  # constant queries
            self.register_buffer("uniform_centers", uniform_centers(num_bins), persistent=False)

    def transformer(self, top: torch.Tensor):
        """Top feature (B, C, H/2, W/2) -> (raw widths (B, K), queries (B, Q, E))."""
        patches = self.patch_embed(top)  # (B, E, h, w), h = H / (2 * patch)
        b, e, h, w = patches.shape
        patches = patches.flatten(2).transpose(1, 2)  # (B, h * w, E)
        patches = patches + sincos_positions(h, w, e, top.device, patches.dtype)
        tokens = torch.cat((self.tokens.expand(b, -1, -1).to(patches.dtype), patches), dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        tokens = self.norm(tokens)
        return self.regressor(tokens[:, 0]), tokens[:, 1:1 + self.size.num_queries]

    def forward(self, top: torch.Tensor,
                deep: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``top`` (B, C, H/2, W/2) (``deep`` unused) -> ``"disp"`` (B, 1, H, W) in (0, 1),
        ``"bin_centers"`` (B, K) sorted in (0, 1), ``"bin_probs"`` (B, K, H, W) summing to 1."""
        pixels = (F.interpolate(top, scale_factor=2, mode="bilinear", align_corners=False)
                  if self.size.full_resolution else top)
        keys = self.keys(pixels)  # (B, E, h, w)
        if self.queries is None:
            raw_widths, queries = self.transformer(top)
            centers = widths_to_centers(raw_widths)
            ranges = torch.einsum("behw,bqe->bqhw", keys, queries)  # range attention maps
        else:
            centers = self.uniform_centers.to(top.dtype).expand(top.shape[0], -1)
            ranges = self.queries(keys)
        probs = torch.softmax(self.logits(ranges), dim=1)
        if not self.size.full_resolution:
            probs = F.interpolate(probs, scale_factor=2, mode="bilinear", align_corners=False)
        disp = torch.einsum("bkhw,bk->bhw", probs, centers).unsqueeze(1)
        return {"disp": disp, "bin_centers": centers, "bin_probs": probs}
