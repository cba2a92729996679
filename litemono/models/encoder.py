"""The Lite-Mono depth encoder and its variant table.

Lite-Mono (CVPR 2023, arXiv:2211.13202, section 3.2, table 1); upstream's
``networks/depth_encoder.py`` state-dict layout (``downsample_layers``, ``stem2``, ``stages``)
key for key. Upstream defines CDC dilations for 640x192 and 1024x320 only; here an input >= 1024
px wide uses the 1024x320 rates, narrower the 640x192 ones (lite-mono-8m: always its 640x192
rates, as upstream). ``ModelConfig.dilations`` overrides the rule."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .attention import make_attention
from .blocks import CDCBlock, ConvLayer, LGFIBlock

# Upstream's single-value input normalisation (not the ImageNet per-channel statistics).
INPUT_MEAN = 0.45
INPUT_STD = 0.225
NUM_HEADS = 8  # XCA heads in every stage
WIDE_INPUT = 1024  # width from which the 1024x320 dilation rates apply

_D640 = ((1, 2, 3), (1, 2, 3), (1, 2, 3, 1, 2, 3, 2, 4, 6))
_D1024 = ((1, 2, 5), (1, 2, 5), (1, 2, 5, 1, 2, 5, 2, 4, 10))
_D640_SHORT = ((1, 2, 3), (1, 2, 3), (1, 2, 3, 2, 4, 6))
_D1024_SHORT = ((1, 2, 5), (1, 2, 5), (1, 2, 5, 2, 4, 10))


@dataclass(frozen=True)
class Variant:
    """One ``--model``: channels and blocks per stage (``depths[s] - 1`` CDC, then one LGFI),
    dilations."""

    dims: Tuple[int, int, int]
    depths: Tuple[int, int, int]
    dilations_narrow: Tuple[Tuple[int, ...], ...]  # inputs narrower than WIDE_INPUT
    dilations_wide: Tuple[Tuple[int, ...], ...]


# ``--model`` name -> variant; adding a row adds the choice everywhere. Parameter counts
# (encoder, measured on upstream): 2,848,120 / 2,250,232 / 1,955,192 / 8,139,960.
VARIANTS: Dict[str, Variant] = {
    "lite-mono": Variant((48, 80, 128), (4, 4, 10), _D640, _D1024),
    "lite-mono-small": Variant((48, 80, 128), (4, 4, 7), _D640_SHORT, _D1024_SHORT),
    "lite-mono-tiny": Variant((32, 64, 128), (4, 4, 7), _D640_SHORT, _D1024_SHORT),
    "lite-mono-8m": Variant((64, 128, 224), (4, 4, 10), _D640, _D640),
}


def select_dilations(variant: str, width: int,
                     override: Optional[Sequence[Sequence[int]]] = None) -> List[List[int]]:
    """CDC rates per stage for ``variant`` at ``width``.

    Raises:
        ValueError: ``override`` does not give one rate per CDC block of each stage."""
    spec = VARIANTS[variant]
    if override is None:
        table = spec.dilations_wide if width >= WIDE_INPUT else spec.dilations_narrow
        return [list(rates) for rates in table]
    expected = [d - 1 for d in spec.depths]
    got = [len(rates) for rates in override]
    if got != expected:
        raise ValueError(f"--dilations: {variant} has {expected} CDC blocks per stage, "
                         f"got {got} rates")
    return [[int(r) for r in rates] for rates in override]


class LiteMono(nn.Module):
    """Lite-Mono encoder: (B, 3, H, W) in [0, 1] -> features at H/4, H/8, H/16.

    ``variant``: a :data:`VARIANTS` key (a new variant is one row); ``width`` picks dilations;
    ``drop_path`` rises linearly from 0; ``attention_stages``: stages followed by an ``attention``
    module (empty: upstream's network)."""

    first_stride = 4  # the first feature is at H/4 (the decoder's head upsamples by 2)

    def __init__(self, variant: str = "lite-mono", width: int = 640, drop_path: float = 0.2,
                 dilations: Optional[Sequence[Sequence[int]]] = None,
                 attention_stages: Sequence[int] = (), layer_scale_init: float = 1e-6,
                 attention: str = "spatial"):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"--model: unknown variant {variant!r}, choose from {list(VARIANTS)}")
        spec = VARIANTS[variant]
        self.variant = variant
        self.num_ch_enc = spec.dims
        self.dilations = select_dilations(variant, width, dilations)
        d0, d1, d2 = spec.dims
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(ConvLayer(3, d0, stride=2), ConvLayer(d0, d0), ConvLayer(d0, d0)),
            # stage input, stage output and the pooled image of the previous resolution
            nn.Sequential(ConvLayer(2 * d0 + 3, d1, stride=2, norm_act=False)),
            nn.Sequential(ConvLayer(2 * d1 + 3, d2, stride=2, norm_act=False)),
        ])
        self.stem2 = nn.Sequential(ConvLayer(d0 + 3, d0, stride=2, norm_act=False))
        self.input_pool = nn.AvgPool2d(3, stride=2, padding=1)
        rates = torch.linspace(0, drop_path, sum(spec.depths)).tolist()
        stages, first = [], 0
        for stage, (dim, depth) in enumerate(zip(spec.dims, spec.depths)):
            blocks = [CDCBlock(dim, self.dilations[stage][b], rates[first + b], layer_scale_init)
                      for b in range(depth - 1)]
            blocks.append(LGFIBlock(dim, NUM_HEADS, use_pos_emb=stage == 0,
                                    drop_path=rates[first + depth - 1],
                                    layer_scale_init=layer_scale_init))
            stages.append(nn.Sequential(*blocks))
            first += depth
        self.stages = nn.ModuleList(stages)
        modules = {str(s): make_attention(attention, spec.dims[s])
                   for s in sorted(set(attention_stages))}
        # named after the first kind, so that checkpoints with spatial attention keep loading
        self.spatial_attention = nn.ModuleDict(modules) if modules else None
        self.apply(_init_weights)

    def forward(self, image: torch.Tensor) -> List[torch.Tensor]:
        """(B, 3, H, W), H, W multiples of 32 -> [(B, d0, H/4, W/4), (B, d1, H/8, W/8), (B, d2,
        H/16, W/16)]."""
        x = (image - INPUT_MEAN) / INPUT_STD
        half = self.input_pool(x)  # image pyramid for input injection: 1/2, 1/4, 1/8
        pooled = [half, self.input_pool(half)]
        pooled.append(self.input_pool(pooled[1]))
        stage_in = self.stem2(torch.cat((self.downsample_layers[0](x), half), dim=1))
        features = []
        for stage, blocks in enumerate(self.stages):
            if stage > 0:
                joined = torch.cat((stage_in, features[-1], pooled[stage]), dim=1)
                stage_in = self.downsample_layers[stage](joined)
            out = blocks(stage_in)
            if self.spatial_attention is not None and str(stage) in self.spatial_attention:
                out = self.spatial_attention[str(stage)](out)
            features.append(out)
        return features


def _init_weights(module: nn.Module) -> None:
    """Upstream init: Kaiming-normal (fan_out, ReLU) conv and linear weights; biases untouched."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


def infer_variant(state_dict) -> Optional[str]:
    """The variant whose channels and block counts match an encoder state dict, else None."""
    dims, depths = [], []
    for stage in range(3):
        prefix = f"stages.{stage}."
        blocks = {k[len(prefix):].split(".", 1)[0] for k in state_dict if k.startswith(prefix)}
        gamma = state_dict.get(f"{prefix}0.gamma")
        if not blocks or gamma is None:
            return None
        dims.append(int(gamma.shape[0]))
        depths.append(len(blocks))
    return next((name for name, spec in VARIANTS.items()
                 if (tuple(dims), tuple(depths)) == (spec.dims, spec.depths)), None)
