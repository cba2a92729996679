"""Lite-Mono depth decoder, with the optional disparity-bin head at the top level.

Lite-Mono (CVPR 2023, section 3.3): monodepth2's decoder with bilinear upsampling, one level per
encoder feature (3; 5 for ResNet). ``depth.pth`` keys: ``decoder.0..5`` = upconv(2,0), (2,1),
(1,0), (1,1), (0,0), (0,1) (``conv.conv.*``), then one sigmoid head per scale (``conv.*``). With
``--bins`` scale 0 comes from ``bin_head.*`` and has no sigmoid head."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .bins import DisparityBinHead
from .minivit_bins import MiniViTBinHead


class Conv3x3(nn.Module):
    """Reflection padding + 3x3 convolution with bias (keys ``conv.*``)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv = nn.Conv2d(in_ch, out_ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


class ConvBlock(nn.Module):
    """Conv3x3 + ELU (keys ``conv.conv.*``)."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = Conv3x3(in_ch, out_ch)
        self.nonlin = nn.ELU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlin(self.conv(x))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """x2 bilinear upsampling, align_corners=False (upstream Lite-Mono)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class DepthDecoder(nn.Module):
    """Encoder features (finest first) -> ``("disp", s)`` (B, 1, H/2^s, W/2^s) in (0, 1).

    ``bins``: 0 for the sigmoid head at scale 0, else K (scale 0 required); ``bin_head``: ``light``
    or ``mvit``; ``first_stride``: first feature at H / first_stride (Lite-Mono: 4), then
    halving."""

    def __init__(self, num_ch_enc: Sequence[int], scales: Sequence[int] = (0, 1, 2),
                 bins: int = 0, bin_mode: str = "adaptive", bin_head: str = "light",
                 first_stride: int = 4):
        super().__init__()
        self.num_levels = len(num_ch_enc)
        if not set(scales) <= set(range(self.num_levels)):
            raise ValueError(f"--scales: the decoder has levels 0..{self.num_levels - 1}, "
                             f"got {scales}")
        if bins and (0 not in scales or first_stride != 4):
            raise ValueError("--bins needs scale 0 in --scales and an encoder whose first "
                             "feature is at H/4 (the bin head is at full resolution)")
        if first_stride not in (2, 4):
            raise ValueError(f"DepthDecoder: first_stride must be 2 or 4, got {first_stride}")
        self.scales = list(scales)
        self.head_upsampling = first_stride // 2  # decoder level 0 runs at H / head_upsampling
        self.num_ch_dec = [c // 2 for c in num_ch_enc]
        layers = []
        for level in range(self.num_levels - 1, -1, -1):
            in_ch = num_ch_enc[-1] if level == self.num_levels - 1 else self.num_ch_dec[level + 1]
            layers.append(ConvBlock(in_ch, self.num_ch_dec[level]))
            skip = num_ch_enc[level - 1] if level > 0 else 0
            layers.append(ConvBlock(self.num_ch_dec[level] + skip, self.num_ch_dec[level]))
        self.sigmoid_scales = [s for s in self.scales if not (bins and s == 0)]
        layers += [Conv3x3(self.num_ch_dec[s], 1) for s in self.sigmoid_scales]
        self.decoder = nn.ModuleList(layers)
        self.bin_head = None
        if bins and bin_head == "mvit":
            self.bin_head = MiniViTBinHead(self.num_ch_dec[0], bins, bin_mode)
        elif bins:
            self.bin_head = DisparityBinHead(self.num_ch_dec[0], num_ch_enc[-1], bins, bin_mode)
        self.apply(_init_weights)

    def init_disparity(self, value: float) -> None:
        """Start every sigmoid head at ``value`` (bias ``logit(value)``); upstream's 0.5 is the near
        end."""
        for head in self.decoder[2 * self.num_levels:]:
            nn.init.constant_(head.conv.bias, math.log(value / (1 - value)))

    def forward(self, features: Sequence[torch.Tensor]) -> Dict:
        """Features (Lite-Mono: H/4, H/8, H/16) -> ``("disp", s)``; with bins ``"bin_centers"`` (B,
        K), ``"bin_probs"`` (B, K, H, W)."""
        outputs: Dict = {}
        heads = {s: self.decoder[2 * self.num_levels + i]
                 for i, s in enumerate(self.sigmoid_scales)}
        x = features[-1]
        for level in range(self.num_levels - 1, -1, -1):
            first = 2 * (self.num_levels - 1 - level)
            x = upsample2(self.decoder[first](x))
            if level > 0:
                x = torch.cat((x, features[level - 1]), dim=1)
            x = self.decoder[first + 1](x)
            if level in heads:
                # the head runs at the level's resolution; upsampling gives H / 2^level
                disp = heads[level](x)
                disp = upsample2(disp) if self.head_upsampling == 2 else disp
                outputs[("disp", level)] = torch.sigmoid(disp)
        if self.bin_head is not None:
            binned = self.bin_head(x, features[-1])
            outputs[("disp", 0)] = binned.pop("disp")
            outputs.update(binned)
        return outputs


def _init_weights(module: nn.Module) -> None:
    """Upstream decoder init: truncated normal (std 0.02) weights, zero biases."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
