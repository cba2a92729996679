"""Building blocks of the Lite-Mono encoder (CVPR 2023, arXiv:2211.13202, section 3.2).

The Consecutive Dilated Convolutions (CDC) and Local-Global Features Interaction (LGFI) modules;
LGFI's global part is EdgeNeXt's cross-covariance attention (XCA). Attribute names (``ddwconv``,
``bn1``, ``norm``, ``pwconv1``, ``gamma_xca``, ``xca.temperature``, ``pos_embd.token_projection``
...) are the upstream checkpoint contract and must not change."""
from __future__ import annotations

import math
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

LAYER_NORM_EPS = 1e-6  # upstream's ConvNeXt-style LayerNorm
MLP_EXPANSION = 6  # hidden width of every block's point-wise MLP = 6 x channels
POS_HIDDEN = 32  # Fourier features per axis (64 in total)
POS_TEMPERATURE = 10000.0
POS_EPS = 1e-6


class ConvLayer(nn.Module):
    """3x3 conv without bias (``conv.weight``), optionally BN + GELU (``bn_gelu.bn.*``)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, norm_act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn_gelu = _BatchNormGelu(out_ch) if norm_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return x if self.bn_gelu is None else self.bn_gelu(x)


class _BatchNormGelu(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(x))


class _DepthwiseDilated(nn.Module):
    """Depth-wise 3x3 convolution with dilation ``d`` and 'same' padding (key ``conv.weight``)."""

    def __init__(self, channels: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation,
                              groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.conv.dilation[0] > 1 and x.device.type == "cpu" and torch.is_grad_enabled()
                and torch.is_autocast_enabled("cpu")):
            # oneDNN's bfloat16 weight gradient of a dilated depth-wise convolution is garbage on
            # CPU (torch 2.14, channels_last: errors of 1e30 and inf; output and input gradient
            # are right) and made `--amp bf16` diverge; float32 in training costs little
            # (tests/test_models.py::test_cpu_autocast_dilated_depthwise_grad).
            with torch.autocast("cpu", enabled=False):
                return self.conv(x.float())
        return self.conv(x)


class CDCBlock(nn.Module):
    """Upstream ``DilatedConv``: dw dilated 3x3 -> BN -> Linear(C, 6C) -> GELU -> Linear(6C, C) ->
    layer scale, drop path; ``norm`` is never applied but kept for strict loading."""

    def __init__(self, dim: int, dilation: int, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.ddwconv = _DepthwiseDilated(dim, dilation)
        self.bn1 = nn.BatchNorm2d(dim)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)  # unused, see class docstring
        self.pwconv1 = nn.Linear(dim, MLP_EXPANSION * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(MLP_EXPANSION * dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        y = self.bn1(self.ddwconv(x)).permute(0, 2, 3, 1)  # (B, H, W, C): Linear over channels
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class FourierPositionalEncoding(nn.Module):
    """Sine/cosine encoding of normalised rows and columns projected to ``dim``; the raw 64 channels
    are cached per (H, W, device, dtype) outside the state dict."""

    def __init__(self, dim: int):
        super().__init__()
        self.token_projection = nn.Conv2d(2 * POS_HIDDEN, dim, kernel_size=1)
        self._cache: Dict[Tuple, torch.Tensor] = {}

    @staticmethod
    def raw_encoding(height: int, width: int, device, dtype) -> torch.Tensor:
        """(1, 64, H, W): 32 row then 32 column channels; position k -> k / (n + eps) * 2 pi /
        10000^(2 floor(j / 2) / 32), sine for even j, cosine for odd."""
        exponent = 2 * torch.div(torch.arange(POS_HIDDEN, dtype=torch.float32, device=device),
                                  2, rounding_mode="floor") / POS_HIDDEN
        freq_div = POS_TEMPERATURE ** exponent  # (32,)

        def axis(n: int) -> torch.Tensor:
            pos = torch.arange(1, n + 1, dtype=torch.float32, device=device)
            angle = (pos / (n + POS_EPS) * (2 * math.pi))[:, None] / freq_div  # (n, 32)
            # interleave sin of even channels with cos of odd channels: s0 c1 s2 c3 ...
            return torch.stack((angle[:, 0::2].sin(), angle[:, 1::2].cos()), dim=2).flatten(1)

        rows = axis(height)[:, None, :].expand(height, width, POS_HIDDEN)
        cols = axis(width)[None, :, :].expand(height, width, POS_HIDDEN)
        grid = torch.cat((rows, cols), dim=2).permute(2, 0, 1)  # (64, H, W)
        return grid.unsqueeze(0).to(dtype).contiguous()

    def forward(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """Returns the projected encoding, (1, dim, H, W), on ``like``'s device and dtype."""
        key = (height, width, like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = self.raw_encoding(height, width, like.device, like.dtype)
        return self.token_projection(self._cache[key])


class XCA(nn.Module):
    """Cross-covariance attention: a (C/h x C/h) map per head, learnable per-head
    ``temperature``."""

    def __init__(self, dim: int, num_heads: int = 8):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"XCA: {dim} channels do not split into {num_heads} heads")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.full((num_heads, 1, 1), 1.0))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (B, N, C) -> (B, N, C)."""
        batch, n_tok, ch = tokens.shape
        # (B, N, 3C) -> (3, B, heads, C/h, N): every head sees channel vectors over all tokens
        qkv = self.qkv(tokens).reshape(batch, n_tok, 3, self.num_heads, ch // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 4, 1).unbind(0)
        query = F.normalize(query, dim=-1)
        key = F.normalize(key, dim=-1)
        attn = (query @ key.transpose(-2, -1) * self.temperature).softmax(dim=-1)  # (B,h,c,c)
        mixed = (attn @ value).permute(0, 3, 1, 2).reshape(batch, n_tok, ch)  # token order
        return self.proj(mixed)


class LGFIBlock(nn.Module):
    """Upstream ``LGFI``: x + ``gamma_xca * XCA(LN(x))`` (+ positions in stage 0), then LN -> MLP
    (6C) -> ``gamma``, drop path; as upstream, the attention reaches the output only via the MLP."""

    def __init__(self, dim: int, num_heads: int = 8, use_pos_emb: bool = False,
                 drop_path: float = 0.0, layer_scale_init: float = 1e-6):
        super().__init__()
        self.gamma_xca = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.pos_embd = FourierPositionalEncoding(dim) if use_pos_emb else None
        self.norm_xca = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.xca = XCA(dim, num_heads)
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.pwconv1 = nn.Linear(dim, MLP_EXPANSION * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(MLP_EXPANSION * dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        batch, ch, height, width = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, H*W, C), row-major
        if self.pos_embd is not None:
            tokens = tokens + self.pos_embd(height, width, x).flatten(2).transpose(1, 2)
        tokens = tokens + self.gamma_xca * self.xca(self.norm_xca(tokens))
        y = self.norm(tokens.reshape(batch, height, width, ch))  # (B, H, W, C)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        return x + self.drop_path(y.permute(0, 3, 1, 2))
