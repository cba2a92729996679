"""Opt-in cache of frames already resized to the training size (``--cache_dir``).

Decoding and LANCZOS-resizing a 1242x375 JPEG dominates an item's cost. monodepth2's pyramid
(each scale from the previous) is a function of the frame, so storing it as uint8 gives exactly
the uncached tensors; the unflipped frame is stored since LANCZOS is mirror-symmetric
(tests/test_data.py). Layout: ``<cache_dir>/<H>x<W>_s<levels>/<absolute image path>.npy``, one
flat uint8 array of the levels (H / 2^s, W / 2^s, 3) in order, written once, atomically. A
changed source is not detected: delete the cache when the data change."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Tuple, Union

import numpy as np
from PIL import Image

from ..io import save_npy
from .transforms import CorruptImageError, read_rgb, resize_pyramid


class ResizedFrameCache:
    """Scale pyramids of frames (training size at scale 0), read from ``.npy`` or made once."""

    def __init__(self, cache_dir: Union[str, os.PathLike], height: int, width: int,
                 num_scales: int = 1, decode: Callable[[str], Image.Image] = read_rgb):
        if num_scales < 1:
            raise ValueError(f"num_scales must be >= 1, got {num_scales}")
        self.folder = Path(cache_dir) / f"{height}x{width}_s{num_scales}"
        self.height = height
        self.width = width
        self.num_scales = num_scales
        self.decode = decode
        self.shapes: List[Tuple[int, int, int]] = [
            (height // 2 ** s, width // 2 ** s, 3) for s in range(num_scales)]
        self.size = sum(h * w * c for h, w, c in self.shapes)

    def cached_path(self, image_path: str) -> Path:
        """Where the resized copy of ``image_path`` lives."""
        return self.folder / (os.path.abspath(image_path).lstrip(os.sep) + ".npy")

    def load_pyramid(self, image_path: str) -> List[Image.Image]:
        """The unflipped RGB pyramid, largest first (as :func:`resize_pyramid`).

        Raises:
            CorruptImageError: unreadable or wrong size (named; delete it to rebuild)."""
        cached = self.cached_path(image_path)
        try:
            flat = np.load(cached, allow_pickle=False)
        except FileNotFoundError:
            return self._build(image_path, cached)
        except (OSError, ValueError) as exc:
            raise CorruptImageError(f"cached frame {cached} is unreadable ({exc}); delete it to "
                                    f"rebuild it from {image_path}") from exc
        if flat.shape != (self.size,) or flat.dtype != np.uint8:
            raise CorruptImageError(f"cached frame {cached} has shape {flat.shape} {flat.dtype}, "
                                    f"expected ({self.size},) uint8 (levels {self.shapes}); "
                                    f"delete it to rebuild it")
        ends = np.cumsum([h * w * c for h, w, c in self.shapes])[:-1]
        return [Image.fromarray(level.reshape(shape))
                for level, shape in zip(np.split(flat, ends), self.shapes)]

    def _build(self, image_path: str, cached: Path) -> List[Image.Image]:
        levels = resize_pyramid(self.decode(image_path), self.height, self.width,
                                self.num_scales)
        save_npy(cached, np.concatenate([np.asarray(level).ravel() for level in levels]))
        return levels
