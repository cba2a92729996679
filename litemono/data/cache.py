"""Opt-in cache of frames already resized to the training size (``--cache_dir``).

Decoding a full-size KITTI JPEG (1242x375) and LANCZOS-resizing it down the pyramid dominates
the cost of a training item. monodepth2's pyramid (Godard et al., ICCV 2019) resizes each scale
from the previous one, so it is a function of the source frame, and storing it losslessly
(uint8) gives exactly the uncached tensors. The cache holds the unflipped frame: PIL's LANCZOS
resize is mirror-symmetric, so flipping each resized level gives the bytes of upstream's
flip-then-resize (``tests/test_data.py`` checks both facts on KITTI-sized random images).

Layout: ``<cache_dir>/<H>x<W>_s<levels>/<absolute image path>.npy``, one flat uint8 array per
frame holding the levels (H / 2^s, W / 2^s, 3), s = 0..levels-1, in order; written once,
atomically, by the first worker that reads the frame. A changed source frame is not detected:
delete the cache folder when the data change.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, List, Tuple, Union

import numpy as np
from PIL import Image

from ..io import save_npy
from .transforms import CorruptImageError, read_rgb, resize_pyramid


class ResizedFrameCache:
    """Scale pyramids of frames, read from ``.npy`` files or made once from the source.

    Args:
        cache_dir: root folder of the cache (created on first write).
        height, width: the training size (scale 0), pixels.
        num_scales: pyramid levels stored per frame.
        decode: image reader for the source frames (default :func:`read_rgb`).
    """

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
        """The frame's RGB pyramid, largest first, unflipped (as :func:`resize_pyramid`).

        Raises:
            CorruptImageError: the cached file is unreadable or has the wrong size (the
                message names it; delete it to rebuild).
        """
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
        levels, start = [], 0
        for shape in self.shapes:
            count = shape[0] * shape[1] * shape[2]
            levels.append(Image.fromarray(flat[start:start + count].reshape(shape)))
            start += count
        return levels

    def _build(self, image_path: str, cached: Path) -> List[Image.Image]:
        levels = resize_pyramid(self.decode(image_path), self.height, self.width,
                                self.num_scales)
        save_npy(cached, np.concatenate([np.asarray(level).ravel() for level in levels]))
        return levels
