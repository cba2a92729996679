"""Parameter and compute counters for the depth network. Lite-Mono's "FLOPs" (CVPR 2023, table 1;
``evaluate_depth.py``) is thop's ``profile`` total: MACs per leaf module (conv, linear; 4 per
element for affine BatchNorm; 1 per AvgPool output; XCA matmuls, functional upsampling and
``nn.LayerNorm``, like upstream's custom class, 0); without thop, hooks count alike. lite-mono at
640x192: 5.032 G (our encoder pools the pyramid once per level: 0.33 M AvgPool MACs below
upstream). ``true_flops``: ``FlopCounterMode``'s total (2 per MAC, all matmuls, no BatchNorm)."""
from __future__ import annotations

import copy
import warnings
from typing import Dict

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (including upstream's unused CDC ``norm`` parameters)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _uncounted(module, inputs, output) -> None:
    """thop hook for module types counted as 0 MACs (leaves thop's zero total as it is)."""


def _thop_macs(net: nn.Module, image: torch.Tensor) -> float:
    with warnings.catch_warnings():  # thop imports distutils' deprecated LooseVersion
        warnings.simplefilter("ignore", DeprecationWarning)
        import thop

        macs, _ = thop.profile(net, inputs=(image,), custom_ops={nn.LayerNorm: _uncounted},
                               verbose=False, report_missing=False)
    return float(macs)


def _hook_macs(net: nn.Module, image: torch.Tensor) -> float:
    """thop's rules for the module types the depth network contains."""
    total = [0.0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kernel = module.weight.shape[2] * module.weight.shape[3]
            total[0] += output.numel() * (inputs[0].shape[1] // module.groups) * kernel
        elif isinstance(module, nn.Linear):
            total[0] += output.numel() * module.in_features
        elif isinstance(module, nn.BatchNorm2d):
            total[0] += inputs[0].numel() * (4 if module.affine else 2)
        elif isinstance(module, nn.AvgPool2d):
            total[0] += output.numel()

    counted = (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.AvgPool2d)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, counted)]
    try:
        with torch.no_grad():
            net(image)
    finally:
        for handle in handles:
            handle.remove()
    return total[0]


def count_macs(depth_net: nn.Module, height: int, width: int,
               use_thop: bool = True) -> Dict[str, float]:
    """Compute of one eval forward on (1, 3, height, width): ``macs`` (thop convention, the paper's
    "FLOPs"), ``true_flops`` and ``counter`` (``"thop"`` / ``"hooks"``)."""
    net = copy.deepcopy(depth_net).eval()  # thop attaches buffers; never touch the caller's net
    param = next(net.parameters())
    image = torch.rand(1, 3, height, width, device=param.device, dtype=param.dtype)
    try:
        if not use_thop:
            raise ImportError
        macs, counter = _thop_macs(net, image), "thop"
    except ImportError:
        macs, counter = _hook_macs(net, image), "hooks"
    flop_mode = FlopCounterMode(display=False)
    with torch.no_grad(), flop_mode:
        net(image)
    return {"macs": macs, "true_flops": float(flop_mode.get_total_flops()), "counter": counter}
