"""Resolve ``--device auto|cpu|cuda|cuda:N|mps`` / ``--no_cuda`` into a ``torch.device``: a
missing accelerator gives the same message in every tool, before any weight file is read."""
from __future__ import annotations

import torch

from .errors import UserError

DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N or mps"


class DeviceError(UserError, ValueError):
    """The requested device does not exist here; the message names ``--device``."""


def resolve_device(name: str = "auto", no_cuda: bool = False) -> torch.device:
    """``auto`` -> CUDA if available, else CPU; anything else is checked.

    Raises:
        DeviceError: an unknown name, or a CUDA / MPS device this machine does not have."""
    if no_cuda or name == "cpu":
        return torch.device("cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name}: not a device name; use {DEVICE_HELP}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device here; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} "
                              "CUDA device(s); use cuda:0 .. cuda:N-1")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"--device {name}: no MPS device here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"--device {name}: unsupported here; use {DEVICE_HELP}")
    return device
