"""KITTI datasets for self-supervised training: abstract :class:`MonoDataset`, raw and odometry.

Sample schema, augmentation and intrinsics are monodepth2's (ICCV 2019, section 4, appendix) as
used by Lite-Mono (CVPR 2023, section 4.1); the one upstream difference, per-frame colour
jitter, is ``--jitter``. Subclasses give file paths and gt reading. Randomness: flip / augment
coins use ``random``, jitter factors torch's global RNG, numpy none (seed per worker)."""
from __future__ import annotations

import os
import random
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .cache import ResizedFrameCache
from .splits import SplitLine, parse_split_line
from .transforms import (JITTER_MODES, ColorAugmenter, flip_image, prepare_hue_tables, read_rgb,
                         resize_pyramid, to_tensor)

# monodepth2's KITTI intrinsics normalised by image width (row 0) and height (row 1); shared by
# all KITTI drives (the true values differ by ~1%)
KITTI_K = np.array([[0.58, 0, 0.5, 0],
                    [0, 1.92, 0.5, 0],
                    [0, 0, 1, 0],
                    [0, 0, 0, 1]], dtype=np.float32)
# |t_x| of stereo_T: KITTI's 0.54 m baseline divided by 5.4, the scale of monocular training
STEREO_BASELINE = 0.1
DEPTH_GT_SHAPE = (375, 1242)  # (h, w) every depth_gt map is resized to, as upstream
SIDE_TO_CAMERA = {"l": 2, "r": 3}
OTHER_SIDE = {"l": "r", "r": "l"}
NUM_SCALES = 4  # the trainer builds 4 scales even though the loss uses 3
MISSING_SHOWN = 5  # missing files listed in the start-up error

FrameId = Union[int, str]


def raw_image_path(data_path: str, folder: str, frame_index: int, side: str,
                   ext: str = ".jpg") -> str:
    """``<data_path>/<folder>/image_0{2|3}/data/{frame:010d}<ext>`` of KITTI raw."""
    return os.path.join(data_path, folder, f"image_0{SIDE_TO_CAMERA[side]}", "data",
                        f"{frame_index:010d}{ext}")


def odom_image_path(data_path: str, folder: str, frame_index: int, side: str,
                    ext: str = ".jpg") -> str:
    """``<data_path>/sequences/{seq:02d}/image_{2|3}/{frame:06d}<ext>`` of KITTI odometry."""
    if not folder.isdigit():
        raise ValueError(f"--dataset kitti_odom: split lines start with a sequence number, got "
                         f"{folder!r} (a KITTI raw split needs --dataset kitti)")
    return os.path.join(data_path, "sequences", f"{int(folder):02d}",
                        f"image_{SIDE_TO_CAMERA[side]}", f"{frame_index:06d}{ext}")


class _Entry(NamedTuple):
    line_number: int  # 1-based, among the non-empty lines of the split file
    text: str
    line: SplitLine


class MonoDataset(Dataset):
    """Frames of monocular (optionally stereo) videos listed by split lines.

    ``dataset[i]`` (monodepth2's keys), for f in ``frame_ids`` and s in 0..num_scales-1:

    * ``("color", f, s)``: float32 (3, H/2^s, W/2^s) in [0, 1], frame ``frame_index + f`` (``"s"``:
      the other camera), LANCZOS-resized from the previous scale;
    * ``("color_aug", f, s)``: colour-jittered, s in ``augmented_scales`` (None: all, as upstream,
      whose draws are made for every scale so the kept images match under the same seed);
    * ``("K", s)``, ``("inv_K", s)``: float32 (4, 4), rows scaled by W // 2^s, H // 2^s;
    * ``"stereo_T"``: (4, 4) with t_x = side_sign * flip_sign * 0.1 (left / flipped: -1);
    * ``"depth_gt"``: (1, 375, 1242) velodyne depth in metres (0 = none), with ``with_depth_gt``
      when every line has its scan; ``"teacher_disp"``: (1, H, W), with a ``teacher_store``;
      ``"index"``: i.

    Training flips (all of it) and jitters, each with probability 0.5. ``jitter``: ``per_frame``
    (Lite-Mono) or ``per_item`` (monodepth2); ``cache_dir``: resized-frame cache (None: off).

    Raises:
        FileNotFoundError: at construction, when frames needed by some lines are missing.
        ValueError: a malformed split line (named with its line number)."""

    needs_side = True  # the layout has two cameras and split lines must say which
    layout_name = "kitti"  # the --dataset value, for messages

    def __init__(self, data_path: str, lines: Sequence[str], height: int, width: int,
                 frame_ids: Sequence[FrameId] = (0, -1, 1), num_scales: int = NUM_SCALES,
                 is_train: bool = False, img_ext: str = ".jpg", jitter: str = "per_frame",
                 teacher_store=None, cache_dir: Optional[str] = None, source: str = "split",
                 augmented_scales: Optional[Sequence[int]] = None, with_depth_gt: bool = True):
        super().__init__()
        self.data_path = str(data_path)
        self.height, self.width = height, width
        self.frame_ids = list(frame_ids)
        self.num_scales = num_scales
        self.is_train = is_train
        self.img_ext = img_ext
        if jitter not in JITTER_MODES:  # here, not in a worker process
            raise ValueError(f"--jitter must be one of {list(JITTER_MODES)}, got {jitter!r}")
        self.jitter = jitter
        self.teacher_store = teacher_store
        self.cache = ResizedFrameCache(cache_dir, height, width, num_scales) if cache_dir else None
        self.source = source
        scales = range(num_scales) if augmented_scales is None else augmented_scales
        self.augmented_scales = sorted({int(s) for s in scales})
        bad = [s for s in self.augmented_scales if not 0 <= s < num_scales]
        if bad:
            raise ValueError(f"augmented_scales {bad} outside the pyramid's 0..{num_scales - 1}")
        self.with_depth_gt = with_depth_gt
        self.entries = [self._parse(n, text) for n, text in enumerate(lines, start=1)]
        self.load_depth = False
        self._K_cache: Dict[str, Dict] = {}
        self.check_files()
        if is_train:
            prepare_hue_tables()  # once, before DataLoader workers fork (they share it)

    # ---- layout hooks -------------------------------------------------------------------------
    def image_path(self, folder: str, frame_index: int, side: Optional[str]) -> str:
        """Path of one frame."""
        raise NotImplementedError

    def velodyne_path(self, folder: str, frame_index: int) -> Optional[str]:
        """Path of the velodyne scan of a frame, or None when the layout has no ground truth."""
        return None

    def read_depth(self, folder: str, frame_index: int, side: Optional[str]) -> np.ndarray:
        """Ground-truth depth (h, w) in metres (0 = no measurement), unflipped."""
        raise NotImplementedError

    def normalised_K(self, folder: str) -> np.ndarray:
        """float32 (4, 4) intrinsics divided by image width (row 0) and height (row 1)."""
        return KITTI_K

    # ---- start-up checks ----------------------------------------------------------------------
    def _parse(self, line_number: int, text: str) -> _Entry:
        # split files are checked as they are read (splits.read_split_lines); this catches
        # lines handed over directly, named the same way
        where = f"{self.source}:{line_number}"
        try:
            line = parse_split_line(text)
        except ValueError as exc:
            raise DataError(str(exc), where, "fix that line") from None
        if self.needs_side and line.side is None:
            raise DataError(f"split line {text!r} has no side (l or r), needed by --dataset "
                            f"{self.layout_name}", where, "add l or r to that line")
        return _Entry(line_number, text, line)

    def _frame_keys(self, line: SplitLine) -> Iterator[Tuple[FrameId, int, Optional[str]]]:
        """(frame id, frame index, side) of every frame an item of ``line`` reads."""
        for frame_id in self.frame_ids:
            if frame_id == "s":
                yield frame_id, line.frame_index, OTHER_SIDE[line.side]
            else:
                yield frame_id, line.frame_index + int(frame_id), line.side

    def check_files(self) -> None:
        """Stat every needed frame; decide whether ``depth_gt`` is available.

        Raises:
            FileNotFoundError: listing the first missing paths, their line numbers and counts."""
        exists: Dict[str, bool] = {}
        missing: List[Tuple[_Entry, str]] = []
        for entry in self.entries:
            for _, frame_index, side in self._frame_keys(entry.line):
                path = self.image_path(entry.line.folder, frame_index, side)
                if path not in exists:
                    exists[path] = os.path.exists(path)
                if not exists[path]:
                    missing.append((entry, path))
        if missing:
            raise FileNotFoundError(self._missing_message(missing))
        scans = ([self.velodyne_path(e.line.folder, e.line.frame_index) for e in self.entries]
                 if self.with_depth_gt else [])
        self.load_depth = bool(scans) and all(p is not None and os.path.isfile(p) for p in scans)

    def _missing_message(self, missing: List[Tuple[_Entry, str]]) -> str:
        files = {path for _, path in missing}
        lines = {entry.line_number for entry, _ in missing}
        shown = "\n".join(f"  {self.source} line {entry.line_number} ({entry.text!r}): {path}"
                          for entry, path in missing[:MISSING_SHOWN])
        stem, ext = os.path.splitext(missing[0][1])
        other = {".jpg": ".png", ".png": ".jpg"}.get(ext)
        hint = ""
        if other and os.path.exists(stem + other):
            hint = f"\n{stem + other} exists: use {'--png' if other == '.png' else '--no-png'}"
        return (f"{len(files)} image file(s) needed by {len(lines)} line(s) of {self.source} "
                f"are missing under --data_path {self.data_path}:\n{shown}{hint}")

    # ---- items --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.entries)

    def load_pyramid(self, folder: str, frame_index: int, side: Optional[str],
                     do_flip: bool = False) -> List:
        """One frame's ``num_scales`` RGB PIL images at the training sizes, largest first."""
        path = self.image_path(folder, frame_index, side)
        if self.cache is not None:
            levels = self.cache.load_pyramid(path)
        else:
            image = read_rgb(path)
            if do_flip:  # upstream's order: flip the native image, then resize
                image = flip_image(image)
                do_flip = False
            levels = resize_pyramid(image, self.height, self.width, self.num_scales)
        return [flip_image(level) for level in levels] if do_flip else levels

    def __getitem__(self, index: int) -> Dict:
        try:
            return self._load_item(index)
        except (OSError, ValueError) as exc:  # a frame / map / scan that cannot be read
            entry = self.entries[index]
            raise DataError(f"{' '.join(str(exc).split())}, while loading {self.source} line "
                            f"{entry.line_number} ({entry.text!r}), fix or replace that file "
                            "(train.py --check_data lists every bad file)") from exc

    def _load_item(self, index: int) -> Dict:
        line = self.entries[index].line
        # same order of coin tosses as upstream: colour first, then flip
        do_color_aug = self.is_train and random.random() > 0.5
        do_flip = self.is_train and random.random() > 0.5

        pyramids = {frame_id: self.load_pyramid(line.folder, frame_index, side, do_flip)
                    for frame_id, frame_index, side in self._frame_keys(line)}
        sample: Dict = {"index": index}
        sample.update(self._intrinsics(line.folder))
        augment = ColorAugmenter(self.jitter, enabled=do_color_aug)
        for _ in pyramids:
            augment.skip()  # upstream jitters the native images too, then discards them
        for frame_id, levels in pyramids.items():
            for scale, scaled in enumerate(levels):
                color = to_tensor(scaled)
                sample[("color", frame_id, scale)] = color
                if scale not in self.augmented_scales:
                    augment.skip()  # upstream's draw for an image its trainer never reads
                elif augment.enabled:
                    sample[("color_aug", frame_id, scale)] = to_tensor(augment(scaled))
                else:
                    sample[("color_aug", frame_id, scale)] = color.clone()

        if "s" in self.frame_ids:
            stereo_T = np.eye(4, dtype=np.float32)
            side_sign = -1 if line.side == "l" else 1
            flip_sign = -1 if do_flip else 1
            stereo_T[0, 3] = side_sign * flip_sign * STEREO_BASELINE
            sample["stereo_T"] = torch.from_numpy(stereo_T)
        if self.load_depth:
            depth = self.read_depth(line.folder, line.frame_index, line.side)
            sample["depth_gt"] = _flipped_map(depth, do_flip)
        if self.teacher_store is not None:
            disp = np.asarray(self.teacher_store.load(line.folder, line.frame_index, line.side),
                              dtype=np.float32)
            if disp.shape != (self.height, self.width):
                # name the .npz (the split line is added by __getitem__)
                path_for = getattr(self.teacher_store, "path_for", None)
                which = (path_for(line.folder, line.frame_index, line.side) if path_for
                         else f"of {self.entries[index].text!r}")
                raise DataError(f"teacher map {which} has shape {disp.shape}, expected "
                                f"({self.height}, {self.width}): recompute --teacher_dir at "
                                "this --height/--width")
            sample["teacher_disp"] = _flipped_map(disp, do_flip)
        return sample

    def _intrinsics(self, folder: str) -> Dict:
        """``("K", s)`` and ``("inv_K", s)`` of a folder (computed once per folder, copied out)."""
        if folder not in self._K_cache:
            out = {}
            for scale in range(self.num_scales):
                K = self.normalised_K(folder).copy()
                K[0, :] *= self.width // 2 ** scale
                K[1, :] *= self.height // 2 ** scale
                out[("K", scale)] = torch.from_numpy(K)
                out[("inv_K", scale)] = torch.from_numpy(np.linalg.pinv(K))
            self._K_cache[folder] = out
        return {key: value.clone() for key, value in self._K_cache[folder].items()}


def _flipped_map(array: np.ndarray, do_flip: bool) -> torch.Tensor:
    """(h, w) array -> float32 (1, h, w) tensor, mirrored left-right when ``do_flip``."""
    if do_flip:
        array = array[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None]


class KITTIRawDataset(MonoDataset):
    """KITTI raw drives (eigen_zhou, eigen_full, benchmark and eigen test splits)."""

    def image_path(self, folder, frame_index, side):
        return raw_image_path(self.data_path, folder, frame_index, side, self.img_ext)

    def velodyne_path(self, folder, frame_index):
        return os.path.join(self.data_path, folder, "velodyne_points", "data",
                            f"{frame_index:010d}.bin")

    def read_depth(self, folder, frame_index, side):
        import skimage.transform

        from .kitti_utils import generate_depth_map

        calib_dir = os.path.join(self.data_path, folder.split("/")[0])
        depth = generate_depth_map(calib_dir, self.velodyne_path(folder, frame_index),
                                   SIDE_TO_CAMERA[side])
        # upstream's call, kept as is: nearest-neighbour, except that skimage adds its
        # anti-aliasing blur when a drive's maps are larger than 375x1242 (2011_10_03)
        return skimage.transform.resize(depth, DEPTH_GT_SHAPE, order=0, preserve_range=True,
                                        mode="constant")


class KITTIOdomDataset(MonoDataset):
    """KITTI odometry sequences (the odom split); no ground-truth depth."""

    layout_name = "kitti_odom"

    def image_path(self, folder, frame_index, side):
        return odom_image_path(self.data_path, folder, frame_index, side, self.img_ext)
