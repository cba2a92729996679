"""Opt-in cache of frames already resized to the training size (issue 9, data speed).

Decoding a full-size KITTI JPEG (1242x375) and LANCZOS-resizing it to 640x192 dominates the
cost of a training item. The pyramid of monodepth2 / Lite-Mono (Godard et al., ICCV 2019;
Zhang et al., CVPR 2023) resizes every scale from the previous one, so scales 1..3 depend only
on scale 0: storing the scale-0 image losslessly (uint8 ``.npy``) and resizing on from there
gives exactly the tensors of the uncached pipeline.

The cache holds the unflipped frame. Upstream flips the native image and then resizes; PIL's
LANCZOS resize is mirror-symmetric (its filter taps are symmetric and the fixed-point sums are
exact), so flipping the resized image gives the same bytes. ``tests/test_data.py`` checks both
facts on random images at KITTI sizes.

Layout: ``<cache_dir>/<H>x<W>/<absolute image path>.npy``, written once, atomically, by
whichever worker reads the frame first. Nothing checks whether a source frame changed after
it was cached: delete the cache folder when the data change.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Union

import numpy as np
from PIL import Image

from ..io import save_npy
from .transforms import RESAMPLE, CorruptImageError, read_rgb


class ResizedFrameCache:
    """Frames at ``(height, width)``, read from ``.npy`` files or made once from the source.

    Args:
        cache_dir: root folder of the cache (created on first write).
        height, width: the training size (scale 0), pixels.
        decode: image reader for the source frames (default :func:`read_rgb`).
    """

    def __init__(self, cache_dir: Union[str, os.PathLike], height: int, width: int,
                 decode: Callable[[str], Image.Image] = read_rgb):
        self.folder = Path(cache_dir) / f"{height}x{width}"
        self.height = height
        self.width = width
        self.decode = decode

    def cached_path(self, image_path: str) -> Path:
        """Where the resized copy of ``image_path`` lives."""
        return self.folder / (os.path.abspath(image_path).lstrip(os.sep) + ".npy")

    def load(self, image_path: str) -> Image.Image:
        """The RGB frame at the training size, unflipped.

        Raises:
            CorruptImageError: the cached file is unreadable or has the wrong shape (the
                message names it; delete it to rebuild).
        """
        cached = self.cached_path(image_path)
        try:
            array = np.load(cached, allow_pickle=False)
        except FileNotFoundError:
            return self._build(image_path, cached)
        except (OSError, ValueError) as exc:
            raise CorruptImageError(f"cached frame {cached} is unreadable ({exc}); delete it to "
                                    f"rebuild it from {image_path}") from exc
        if array.shape != (self.height, self.width, 3) or array.dtype != np.uint8:
            raise CorruptImageError(f"cached frame {cached} has shape {array.shape} "
                                    f"{array.dtype}, expected ({self.height}, {self.width}, 3) "
                                    f"uint8; delete it to rebuild it")
        return Image.fromarray(array)

    def _build(self, image_path: str, cached: Path) -> Image.Image:
        image = self.decode(image_path)
        size = (self.width, self.height)
        if image.size != size:
            image = image.resize(size, RESAMPLE)
        save_npy(cached, np.asarray(image))
        return image
