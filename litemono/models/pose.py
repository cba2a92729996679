"""Pose network: a ResNet on two stacked frames and a small convolutional pose decoder.

monodepth2 (ICCV 2019, section 3 and supplementary; axis-angle + translation scaled by 0.01),
unchanged in Lite-Mono. Keys follow upstream's ``pose_encoder.pth`` (``encoder.*``, 6-channel
conv1, unused ``encoder.fc`` included) and ``pose.pth`` (``net.0..3``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence, Tuple, Union

import torch
import torchvision
from torch import nn

from ..errors import UserError
from .encoder import INPUT_MEAN, INPUT_STD

POSE_SCALE = 0.01  # monodepth2: keeps the initial motions small
POSE_HIDDEN = 256
FRAMES_PER_PAIR = 2

RESNETS = (18, 34, 50, 101, 152)  # depths of torchvision's resnet<N> and ResNet<N>_Weights


class PoseEncoder(nn.Module):
    """torchvision ResNet with conv1 over ``num_frames`` stacked RGB frames; ImageNet's conv1 kernel
    is repeated per frame and divided by their number."""

    def __init__(self, num_layers: int = 18, pretrained: bool = True, num_frames: int = 2):
        super().__init__()
        if num_layers not in RESNETS:
            raise ValueError(f"--num_layers must be one of {sorted(RESNETS)}, got {num_layers}")
        self.encoder = getattr(torchvision.models, f"resnet{num_layers}")(weights=None)
        self.encoder.conv1 = nn.Conv2d(3 * num_frames, 64, 7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.encoder.conv1.weight, mode="fan_out", nonlinearity="relu")
        expansion = 4 if num_layers >= 50 else 1
        self.num_ch_enc = (64, 64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion)
        if pretrained:
            self._load_imagenet(num_layers, num_frames)

    def _load_imagenet(self, num_layers: int, num_frames: int) -> None:
        weights = getattr(torchvision.models, f"ResNet{num_layers}_Weights").IMAGENET1K_V1
        try:
            state = weights.get_state_dict(progress=False)
        except Exception as exc:  # no network, no cache, corrupt download ...
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
            raise UserError(
                f"--weights_init pretrained: could not get the pose ResNet's ImageNet weights "
                f"{weights} ({type(exc).__name__}: {exc})",
                f"torchvision reads them from {cached}",
                f"download {weights.url} to that path (offline: copy it there from a machine "
                f"with internet), or train the pose ResNet from scratch with --weights_init "
                f"scratch") from exc
        state["conv1.weight"] = state["conv1.weight"].repeat(1, num_frames, 1, 1) / num_frames
        self.encoder.load_state_dict(state, strict=True)

    def forward(self, frames: torch.Tensor) -> List[torch.Tensor]:
        """frames: (B, 3N, H, W) in [0, 1] -> five features at H/2, H/4, H/8, H/16, H/32."""
        net = self.encoder
        x = net.relu(net.bn1(net.conv1((frames - INPUT_MEAN) / INPUT_STD)))
        features = [x]
        x = net.maxpool(x)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            features.append(x)
        return features


class PoseDecoder(nn.Module):
    """Last encoder feature(s) -> (axisangle, translation), each (B, frames, 1, 3).

    ``num_input_features``: 1 for a pair encoder, 2 with the shared depth encoder; ``num_frames``:
    transforms predicted (upstream: 2, the trainer uses the first)."""

    def __init__(self, num_ch_enc: Sequence[int], num_input_features: int = 1,
                 num_frames: int = FRAMES_PER_PAIR):
        super().__init__()
        self.num_frames = num_frames
        self.net = nn.ModuleList([
            nn.Conv2d(num_ch_enc[-1], POSE_HIDDEN, 1),  # squeeze
            nn.Conv2d(num_input_features * POSE_HIDDEN, POSE_HIDDEN, 3, padding=1),
            nn.Conv2d(POSE_HIDDEN, POSE_HIDDEN, 3, padding=1),
            nn.Conv2d(POSE_HIDDEN, 6 * num_frames, 1),
        ])
        for conv in self.net:
            nn.init.trunc_normal_(conv.weight, std=0.02)
            nn.init.zeros_(conv.bias)

    def init_forward_motion(self, distance: float) -> None:
        """Start every transform as a forward motion of ``distance`` (z bias ``-distance /
        POSE_SCALE``); upstream's zero bias can settle in a "lateral baseline"
        (docs/results_synthetic.md)."""
        with torch.no_grad():
            bias = self.net[-1].bias.view(self.num_frames, 6)
            bias[:, 5] = -distance / POSE_SCALE

    def forward(self, feature_lists: Sequence[Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        squeeze, conv_a, conv_b, head = self.net
        x = torch.cat([torch.relu(squeeze(feats[-1])) for feats in feature_lists], dim=1)
        x = torch.relu(conv_b(torch.relu(conv_a(x))))
        motion = head(x).mean(dim=(2, 3)) * POSE_SCALE  # (B, 6 * frames)
        motion = motion.view(-1, self.num_frames, 1, 6)
        return motion[..., :3], motion[..., 3:]


class PoseNetwork(nn.Module):
    """Pair (B, 6, H, W) in temporal order -> (axisangle, translation), (B, 2, 1, 3).

    ``separate_resnet``: owns a :class:`PoseEncoder`. ``shared``: uses the depth encoder per frame,
    held in a plain tuple so the state dict is the decoder's only (upstream's ``pose.pth``) and
    ``self.encoder`` is None."""

    def __init__(self, decoder: PoseDecoder, encoder: nn.Module, shared: bool):
        super().__init__()
        self.shared = shared
        self.encoder = None if shared else encoder
        self._depth_encoder = (encoder,) if shared else ()
        self.decoder = decoder

    def forward(self, pair: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """A pair, or a sequence of pairs run one by one (as upstream, so BatchNorm sees per-pair
        statistics) with results concatenated on the batch; one call keeps DDP to one forward."""
        if torch.is_tensor(pair):
            return self._motion(pair)
        motions = [self._motion(single) for single in pair]
        return (torch.cat([rot for rot, _ in motions]),
                torch.cat([shift for _, shift in motions]))

    def _motion(self, pair: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.shared:
            encoder = self._depth_encoder[0]
            return self.decoder([encoder(pair[:, :3]), encoder(pair[:, 3:])])
        return self.decoder([self.encoder(pair)])
