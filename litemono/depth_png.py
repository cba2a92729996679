"""16-bit PNG depth / disparity maps that keep their precision (scripts/predict.py's format).

KITTI stores depth as ``uint16 = metres x 256``. For a monocular model's depth, known only up
to scale (often a few units), that leaves a few hundred levels. Here a map is stored as
``value = pixel x scale`` with ``scale`` in the PNG's text chunk (key ``scale``): by default
the map's maximum becomes 65535, so every map uses the full 16-bit range (relative step
1 / 65535 of the maximum). Metric depth can use KITTI's ``scale = 1 / 256``, which KITTI's
tools read unchanged; a PNG without the text chunk is read with that scale.
"""
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
    """PNG bytes of a (H, W) map of values >= 0, ``value = pixel x scale``.

    Args:
        values: (H, W) float map (depth or disparity).
        scale: value of one level; default: the map's maximum / 65535.

    Returns:
        The PNG file's bytes (16-bit grayscale, ``scale`` in its text chunk).
    """
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
