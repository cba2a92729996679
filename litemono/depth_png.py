"""16-bit PNG depth / disparity maps that keep their precision (scripts/predict.py's format).

``value = pixel x scale``, ``scale`` in the PNG text chunk (key ``scale``); by default the
maximum maps to 65535. KITTI's ``uint16 = metres x 256`` (``scale = 1 / 256``) suits metric
depth and is assumed for PNGs without the chunk."""
from __future__ import annotations

from io import BytesIO
from typing import Optional

import numpy as np
from PIL import Image, PngImagePlugin

from .io import PathLike

PNG16_MAX = np.iinfo(np.uint16).max
KITTI_SCALE = 1.0 / 256.0  # KITTI depth PNGs: metres = pixel / 256
SCALE_KEY = "scale"


def encode_png16(values: np.ndarray, scale: Optional[float] = None) -> bytes:
    """16-bit grayscale PNG bytes of an (H, W) map >= 0; ``scale`` default: maximum / 65535."""
    if scale is None:
        peak = float(values.max())
        scale = peak / PNG16_MAX if peak > 0 else 1.0
    pixels = np.clip(np.round(values / scale), 0, PNG16_MAX).astype(np.uint16)
    text = PngImagePlugin.PngInfo()
    text.add_text(SCALE_KEY, repr(float(scale)))
    buffer = BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=text)
    return buffer.getvalue()


def read_png16(path: PathLike) -> np.ndarray:
    """(H, W) float32 values of a PNG written by :func:`encode_png16` (or KITTI's, x 1/256)."""
    with Image.open(path) as image:
        scale = float(image.text.get(SCALE_KEY, KITTI_SCALE))
        return (np.asarray(image, dtype=np.float64) * scale).astype(np.float32)
