"""Synthetic stand-in teacher: pseudo-labels from the synthetic scene's true depth.

NOT Depth Anything V2: it imitates its output (relative disparity up to a per-image affine map,
noisy, 0 at the sky) so distillation and Chamfer run without weights. Per frame,
``max(scale / depth + shift + noise, eps)`` (0 at the sky: depth 0, negative or not finite),
``scale`` log-uniform in ``SCALE_RANGE``, ``shift`` in ``[0, SHIFT_FRACTION]`` x the median
disparity, noise std ``noise`` x the affine map's median. Draws depend only on ``(seed, folder,
frame, side)``; same loop, ``.npz`` format and manifest as the real teacher."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import List, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..data.splits import SplitLine
from ..data.teacher_store import CAMERA_FOLDERS

SCALE_RANGE = (0.5, 2.0)
SHIFT_FRACTION = 0.2
DEFAULT_NOISE = 0.02
MIN_DISPARITY = 1e-3  # keeps noisy non-sky pixels strictly positive (0 means sky)
_SIDE_CODES = {None: 0, "l": 1, "r": 2}


def true_depth_path(data_path: Union[str, Path], frame: SplitLine) -> Path:
    """``<data_path>/<folder>/image_0{2|3}/true_depth/<frame:010d>.npy`` ((h, w) metres, 0 = sky),
    the layout written by :mod:`litemono.data.synthetic`."""
    camera = CAMERA_FOLDERS.get(frame.side or "")
    if camera is None:
        raise ValueError(f"split line {frame.folder} {frame.frame_index} has no side l/r")
    return Path(data_path) / frame.folder / camera / "true_depth" / f"{frame.frame_index:010d}.npy"


def frame_rng(seed: int, frame: SplitLine) -> np.random.Generator:
    """A generator that depends only on the seed and the frame's identity."""
    key = [seed, zlib.crc32(frame.folder.encode()), frame.frame_index, _SIDE_CODES[frame.side]]
    return np.random.default_rng(key)


def pseudo_disparity(depth: np.ndarray, rng: np.random.Generator,
                     noise: float = DEFAULT_NOISE) -> np.ndarray:
    """(h, w) true depth (metres; 0 = sky) -> (h, w) float32 disparity, > 0 valid, 0 at the sky."""
    valid = np.isfinite(depth) & (depth > 0)
    disp = np.zeros(depth.shape, dtype=np.float64)
    disp[valid] = 1.0 / depth[valid]
    if not valid.any():
        return disp.astype(np.float32)
    scale = float(np.exp(rng.uniform(np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1]))))
    shift = float(rng.uniform(0.0, SHIFT_FRACTION)) * float(np.median(disp[valid]))
    affine = scale * disp + shift
    jitter = rng.normal(0.0, noise * float(np.median(affine[valid])), size=depth.shape)
    out = np.where(valid, np.maximum(affine + jitter, MIN_DISPARITY), 0.0)
    return out.astype(np.float32)


def resize_disparity(disp: np.ndarray, out_size: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``disp``'s valid values to ``out_size``; sky kept as a sharp 0 mask."""
    if disp.shape == tuple(out_size):
        return disp.astype(np.float32)
    tensor = torch.from_numpy(disp.astype(np.float32))[None, None]
    resized = F.interpolate(tensor, size=tuple(out_size), mode="bilinear", align_corners=True)
    sky = F.interpolate((tensor == 0).float(), size=tuple(out_size), mode="nearest") > 0
    resized = torch.where(sky, torch.zeros_like(resized), resized.clamp_min(MIN_DISPARITY))
    return resized[0, 0].numpy()


class SyntheticTeacher:
    """:class:`~litemono.teacher.precompute.Predictor` over the scene's true-depth files."""

    def __init__(self, data_path: str, out_size: Tuple[int, int], seed: int = 0,
                 noise: float = DEFAULT_NOISE):
        self.data_path, self.out_size, self.seed, self.noise = data_path, out_size, seed, noise

    def load(self, frame: SplitLine) -> np.ndarray:
        path = true_depth_path(self.data_path, frame)
        if not path.is_file():
            raise FileNotFoundError(f"--teacher synthetic: true depth {path} not found; "
                                    "--data_path must point at a synthetic scene "
                                    "(scripts/make_synthetic_kitti.py)")
        depth = np.load(path, allow_pickle=False)
        disp = pseudo_disparity(depth, frame_rng(self.seed, frame), self.noise)
        return resize_disparity(disp, self.out_size)

    def predict(self, loaded: List[np.ndarray]) -> List[np.ndarray]:
        return loaded
