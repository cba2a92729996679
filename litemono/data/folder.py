"""Folder-of-sequences dataset for users' videos (``--dataset folder --intrinsics K.yaml``).

``<data_path>/<sequence>/<name>.{jpg,jpeg,png}``, frames in sorted-name order (``ffmpeg -i
video.mp4 seq/%06d.jpg``); line ``<sequence> <n>`` = the n-th frame (0-based). One camera.
Intrinsics YAML: ``fx, fy, cx, cy`` normalised by width (fx, cx) and height (fy, cy), as
monodepth2's KITTI K, or in pixels with ``width`` and ``height``. The rest is
:class:`litemono.data.kitti.MonoDataset`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import yaml

from .kitti import MonoDataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
INTRINSICS_KEYS = ("fx", "fy", "cx", "cy")


def load_intrinsics(path: str) -> np.ndarray:
    """Intrinsics YAML -> normalised float32 (4, 4) K.

    Raises:
        FileNotFoundError / ValueError: naming ``--intrinsics`` and the file."""
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"--intrinsics {path}: no such file (YAML with fx, fy, cx, cy)")
    try:
        values = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"--intrinsics {path}: not valid YAML ({exc})") from None
    if not isinstance(values, dict) or any(k not in values for k in INTRINSICS_KEYS):
        raise ValueError(f"--intrinsics {path}: needs the keys {list(INTRINSICS_KEYS)} "
                         f"(normalised, or in pixels with width and height)")
    numbers = {}
    for key in INTRINSICS_KEYS + ("width", "height"):
        if key in values:
            if isinstance(values[key], bool) or not isinstance(values[key], (int, float)):
                raise ValueError(f"--intrinsics {path}: {key} must be a number, got "
                                 f"{values[key]!r}")
            numbers[key] = float(values[key])
    if ("width" in numbers) != ("height" in numbers):
        raise ValueError(f"--intrinsics {path}: give both width and height (pixel units) or "
                         f"neither (normalised units)")
    width, height = numbers.get("width", 1.0), numbers.get("height", 1.0)
    if width <= 0 or height <= 0 or numbers["fx"] <= 0 or numbers["fy"] <= 0:
        raise ValueError(f"--intrinsics {path}: fx, fy, width and height must be positive")
    K = np.eye(4, dtype=np.float32)
    K[0, 0], K[0, 2] = numbers["fx"] / width, numbers["cx"] / width
    K[1, 1], K[1, 2] = numbers["fy"] / height, numbers["cy"] / height
    return K


def list_frames(sequence_dir: str) -> List[str]:
    """The image files of one sequence folder, sorted by name (full paths)."""
    if not os.path.isdir(sequence_dir):
        return []
    names = sorted(n for n in os.listdir(sequence_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    return [os.path.join(sequence_dir, n) for n in names]


def sequence_split_lines(data_path: str, frame_ids: Sequence[int] = (0, -1, 1)) -> List[str]:
    """Split lines for every frame of every sequence under ``data_path`` whose neighbours
    (``frame_ids``) exist: a ready-made ``train_files.txt`` for one's own videos."""
    lines = []
    low, high = -min(frame_ids), max(frame_ids)
    for sequence in sorted(os.listdir(data_path)):
        count = len(list_frames(os.path.join(data_path, sequence)))
        lines += [f"{sequence} {n}" for n in range(low, count - high)]
    return lines


class FolderDataset(MonoDataset):
    """Monocular sequences in folders, K from ``intrinsics``; other args as :class:`MonoDataset`."""

    needs_side = False
    layout_name = "folder"

    def __init__(self, data_path: str, lines: Sequence[str], height: int, width: int,
                 frame_ids: Sequence = (0, -1, 1), *, intrinsics: Optional[str], **kwargs):
        if intrinsics is None:
            raise ValueError("--dataset folder needs --intrinsics K.yaml (fx, fy, cx, cy)")
        if "s" in frame_ids:
            raise ValueError("--use_stereo is not available with --dataset folder (one camera)")
        self.K = load_intrinsics(intrinsics)
        self._frames: Dict[str, List[str]] = {}
        super().__init__(data_path, lines, height, width, frame_ids, **kwargs)

    def image_path(self, folder, frame_index, side):
        sequence_dir = os.path.join(self.data_path, folder)
        if sequence_dir not in self._frames:
            self._frames[sequence_dir] = list_frames(sequence_dir)
        frames = self._frames[sequence_dir]
        if 0 <= frame_index < len(frames):
            return frames[frame_index]
        # a path that does not exist and says why, for the start-up report
        return os.path.join(sequence_dir, f"<frame {frame_index}: the folder has "
                                          f"{len(frames)} images>")

    def normalised_K(self, folder):
        return self.K
