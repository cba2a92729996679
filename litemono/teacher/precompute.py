"""The teacher precompute loop: which frames, sharding, resume, manifest and statistics.

Each target frame of a split's train and val lists gets one float16 ``.npz`` map at training
resolution (:mod:`litemono.data.teacher_store`). Resumable: atomic writes, valid files skipped.
Shards (``--shard K/N`` or torchrun's ``RANK``/``WORLD_SIZE``) take ``frames[K::N]``."""
from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..data.splits import SplitLine, read_split, split_file
from ..data.kitti import SIDE_TO_CAMERA, raw_image_path
from ..data.transforms import read_rgb
from ..data.teacher_store import (ARRAY_KEY, FORMAT_VERSION, MANIFEST_NAME,
                                  STATISTICS_NAME, is_valid_file, read_teacher_file, teacher_path)
from ..config import ConfigError
from ..errors import DataError
from ..io import remove_leftovers, save_npz, write_json
from .depth_anything import DepthAnythingTeacher

FLOAT16_MAX = float(np.finfo(np.float16).max)
HISTOGRAM_BINS = 64
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
STATS_SAMPLES_PER_FRAME = 4096  # non-zero values per frame kept for the percentiles


class Predictor(Protocol):
    """What the loop needs from a teacher: ``load`` runs in data-loader workers (file reading),
    ``predict`` in the main process; it returns one (H, W) disparity per loaded item."""

    def load(self, frame: SplitLine) -> Any: ...

    def predict(self, loaded: List[Any]) -> List[Union[np.ndarray, torch.Tensor]]: ...


def target_frames(split: str, splits_dir: Union[str, Path],
                  parts: Sequence[str] = ("train", "val")) -> List[SplitLine]:
    """The distinct target frames of ``parts`` of a split, in file order."""
    seen: Dict[SplitLine, None] = {}
    for part in parts:
        for line in read_split(split_file(split, splits_dir, part), "the teacher maps"):
            seen.setdefault(line, None)
    return list(seen)


def parse_shard(text: Optional[str]) -> Tuple[int, int]:
    """``"K/N"`` (K counted from 0) -> ``(K, N)``; ``None`` -> torchrun's rank/world or (0, 1)."""
    if text is None:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard expects K/N with integers, got {text!r}") from None
    if not 0 <= index < count:
        raise ConfigError(f"--shard {text}: need 0 <= K < N (K counts from 0)")
    return index, count


def kitti_image_path(data_path: Union[str, Path], frame: SplitLine, png: bool) -> Path:
    """KITTI raw ``<data_path>/<folder>/image_0{2|3}/data/<frame:010d>.jpg|png``."""
    if frame.side not in SIDE_TO_CAMERA:
        raise DataError(f"split line {frame.folder} {frame.frame_index} has no side l/r")
    return Path(raw_image_path(str(data_path), frame.folder, frame.frame_index, frame.side,
                               ".png" if png else ".jpg"))


class ImageTeacher:
    """Reads KITTI frames (``data_path``, ``png``) and runs a :class:`DepthAnythingTeacher` to
    ``out_size``."""

    def __init__(self, teacher: DepthAnythingTeacher, data_path: str, png: bool,
                 out_size: Tuple[int, int]):
        self.teacher, self.data_path, self.png, self.out_size = teacher, data_path, png, out_size

    def load(self, frame: SplitLine) -> torch.Tensor:
        """(3, h, w) float32 RGB in [0, 1]."""
        path = kitti_image_path(self.data_path, frame, self.png)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} not found, --data_path, check --data_path "
                                    "and --png")
        array = np.asarray(read_rgb(str(path)), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1)

    def predict(self, loaded: List[torch.Tensor]) -> List[torch.Tensor]:
        return self.teacher.predict_list(loaded, self.out_size)


class _FrameLoader(Dataset):
    def __init__(self, frames: Sequence[SplitLine], predictor: Predictor):
        self.frames, self.predictor = list(frames), predictor

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> Tuple[SplitLine, Any]:
        return self.frames[i], self.predictor.load(self.frames[i])


def comparable_manifest(manifest: Dict[str, Any]) -> Dict[str, Any]:
    """``manifest`` with ``teacher_args``' ``--data_path`` made absolute (old manifests: resolved
    from the current folder), so every spelling of one folder matches."""
    args = manifest.get("teacher_args")
    try:
        words = shlex.split(args) if isinstance(args, str) else None
    except ValueError:  # unbalanced quotes: compare the text as it is
        words = None
    if not words or "--data_path" not in words[:-1]:
        return manifest
    at = words.index("--data_path") + 1
    words[at] = str(Path(words[at]).resolve())
    return {**manifest, "teacher_args": words}


def check_manifest(root: Union[str, Path], manifest: Dict[str, Any]) -> bool:
    """True when ``root`` already has this ``manifest.json``.

    Raises:
        DataError: naming the differing settings."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return False
    old = json.loads(path.read_text())
    old_cmp, new_cmp = comparable_manifest(old), comparable_manifest(manifest)
    diff = sorted(k for k in set(old) | set(manifest) if old_cmp.get(k) != new_cmp.get(k))
    if diff:
        details = ", ".join(f"{k}: {old.get(k)!r} -> {manifest.get(k)!r}" for k in diff)
        raise DataError(f"--teacher_dir {root} was made with other settings ({details}); "
                        "use a new --teacher_dir or delete the old one")
    return True


def ensure_manifest(root: Union[str, Path], manifest: Dict[str, Any]) -> None:
    """Write ``manifest.json``, or refuse a folder whose existing manifest differs."""
    if not check_manifest(root, manifest):
        write_json(Path(root) / MANIFEST_NAME, manifest)


def run_precompute(predictor: Predictor, frames: Sequence[SplitLine], root: Union[str, Path],
                   manifest: Dict[str, Any], shard: Tuple[int, int] = (0, 1), batch_size: int = 4,
                   num_workers: int = 0, progress: bool = True) -> Dict[str, int]:
    """Compute this shard's missing maps (``shard`` ``(K, N)``: ``frames[K::N]``) into ``root``.

    ``manifest`` must hold ``output_size`` [H, W] (``version``, ``num_frames`` are added).
    Returns ``{"computed", "skipped", "shard_frames"}``; ``statistics.json`` is (re)written once
    every frame has a map."""
    height, width = manifest["output_size"]
    manifest = {**manifest, "version": FORMAT_VERSION, "num_frames": len(frames),
                "key": ARRAY_KEY, "dtype": "float16"}
    has_manifest = check_manifest(root, manifest)  # refuse another run's folder up front
    index, count = shard
    mine = list(frames)[index::count]
    remove_own_leftovers(root, mine, whole_root=count == 1)
    todo = [f for f in mine if not is_valid_file(teacher_path(root, *f), height, width)]
    loader = DataLoader(_FrameLoader(todo, predictor), batch_size=batch_size,
                        num_workers=num_workers, collate_fn=list)
    from tqdm import tqdm

    with tqdm(total=len(todo), unit="frame", disable=not progress,
              desc=f"teacher shard {index}/{count}") as bar:
        for batch in loader:
            disps = predictor.predict([item for _, item in batch])
            for (frame, _), disp in zip(batch, disps):
                disp = torch.as_tensor(disp).detach().float().cpu().numpy()
                if disp.shape != (height, width):
                    raise RuntimeError(f"teacher returned {disp.shape} for {frame}, "
                                       f"expected {(height, width)}")
                disp = np.clip(disp, 0.0, FLOAT16_MAX).astype(np.float16)
                save_npz(teacher_path(root, *frame), **{ARRAY_KEY: disp})
            if not has_manifest:  # only once a map exists: a failed run leaves no manifest
                ensure_manifest(root, manifest)
                has_manifest = True
            bar.update(len(batch))
    if not has_manifest and mine and not todo:  # every map was there already (older folder)
        ensure_manifest(root, manifest)
    if all(teacher_path(root, *f).is_file() for f in frames):
        write_json(Path(root) / STATISTICS_NAME, compute_statistics(root, frames))
    return {"computed": len(todo), "skipped": len(mine) - len(todo), "shard_frames": len(mine)}


def remove_own_leftovers(root: Union[str, Path], frames: Sequence[SplitLine],
                         whole_root: bool) -> None:
    """Delete a killed run's temporaries for ``frames`` (this shard's only), and with ``whole_root``
    those of the manifest and statistics."""
    by_folder: Dict[Path, List[str]] = {}
    for frame in frames:
        path = teacher_path(root, *frame)
        by_folder.setdefault(path.parent, []).append(path.name)
    for folder, names in by_folder.items():
        remove_leftovers(folder, names)
    if whole_root:
        remove_leftovers(root, [MANIFEST_NAME, STATISTICS_NAME])


def compute_statistics(root: Union[str, Path], frames: Sequence[SplitLine]) -> Dict[str, Any]:
    """Stored disparity distribution: ``zero_fraction``, ``min``/``max``/``mean``/``std``,
    ``percentiles`` of non-zero values (fixed-stride sample), and a ``histogram`` (``edges``,
    ``counts``) of non-zero values over their frame's median."""
    total, zeros, value_sum, square_sum = 0, 0, 0.0, 0.0
    low, high = np.inf, -np.inf
    samples, ratios = [], []
    edges = np.linspace(0.0, 4.0, HISTOGRAM_BINS + 1)
    counts = np.zeros(HISTOGRAM_BINS, dtype=np.int64)
    for frame in frames:
        disp = read_teacher_file(teacher_path(root, *frame)).astype(np.float64).ravel()
        total, zeros = total + disp.size, zeros + int((disp == 0).sum())
        value_sum, square_sum = value_sum + disp.sum(), square_sum + (disp ** 2).sum()
        low, high = min(low, disp.min()), max(high, disp.max())
        nonzero = disp[disp > 0]
        if nonzero.size:
            stride = max(1, nonzero.size // STATS_SAMPLES_PER_FRAME)
            samples.append(nonzero[::stride])
            ratio = nonzero / np.median(nonzero)
            counts += np.histogram(np.minimum(ratio, edges[-1]), bins=edges)[0]
            ratios.append(ratio[::stride])
    mean = value_sum / max(total, 1)
    pooled = np.concatenate(samples) if samples else np.zeros(1)
    pooled_ratio = np.concatenate(ratios) if ratios else np.zeros(1)
    return {
        "frames": len(frames), "pixels": total, "zero_fraction": zeros / max(total, 1),
        "min": float(low), "max": float(high), "mean": float(mean),
        "std": float(np.sqrt(max(square_sum / max(total, 1) - mean ** 2, 0.0))),
        "percentiles": {str(p): float(v) for p, v in zip(PERCENTILES,
                                                         np.percentile(pooled, PERCENTILES))},
        "median_ratio_percentiles": {str(p): float(v) for p, v in zip(
            PERCENTILES, np.percentile(pooled_ratio, PERCENTILES))},
        "histogram": {"of": "disparity / frame median (non-zero pixels; last bin holds >= 4)",
                      "edges": edges.tolist(), "counts": counts.tolist()},
    }
