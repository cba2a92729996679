"""Training and evaluation data: split files, KITTI raw / odometry / folder datasets.

:func:`build_dataset` turns a :class:`litemono.config.Config` into a dataset. Dataset modules
import torch lazily, so ``litemono.data.splits`` stays cheap."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

from .splits import read_split_lines, split_file, split_identity

if TYPE_CHECKING:
    from ..config import Config
    from .kitti import MonoDataset

PARTS = ("train", "val", "test")


def build_dataset(cfg: "Config", part: str, is_train: bool, teacher_store=None,
                  cache_dir: Optional[str] = None,
                  augmented_scales: Optional[Sequence[int]] = None,
                  with_depth_gt: bool = True) -> "MonoDataset":
    """Dataset of one ``part`` (``train`` / ``val`` / ``test``) of ``cfg.data.split``, files
    checked.

    The test part loads frame 0 only (as upstream), so drive ends are valid there. Without a
    ``teacher_store``, ``--teacher_dir`` opens a :class:`~litemono.data.teacher_store.TeacherStore`
    for train and val. ``cache_dir`` defaults to ``--cache_dir``; ``augmented_scales`` None: all.

    Raises:
        SplitError: the split file is missing or altered.
        FileNotFoundError: frames needed by split lines are missing (all listed at once).
        ValueError: a malformed split line or teacher folder, or a bad option combination."""
    from .folder import FolderDataset
    from .kitti import KITTIOdomDataset, KITTIRawDataset

    if part not in PARTS:
        raise ValueError(f"part must be one of {list(PARTS)}, got {part!r}")
    data = cfg.data
    layouts = {"kitti": KITTIRawDataset, "kitti_odom": KITTIOdomDataset, "folder": FolderDataset}
    if data.dataset not in layouts:
        raise ValueError(f"--dataset {data.dataset!r} is not one of {', '.join(layouts)}")
    cache_dir = cache_dir if cache_dir is not None else data.cache_dir
    path = split_file(data.split, data.splits_dir, part)
    # a malformed line (or one without l/r where the layout needs it) is named <file>:<line>
    lines = read_split_lines(path, f"--dataset {data.dataset}"
                             if layouts[data.dataset].needs_side else None)
    frame_ids = [0] if part == "test" else list(data.frame_ids)
    if data.use_stereo and part != "test":
        frame_ids.append("s")  # upstream's trainer appends the stereo partner the same way
    if teacher_store is None and data.teacher_dir is not None and part != "test":
        from .teacher_store import TeacherStore

        teacher_store = TeacherStore(data.teacher_dir)
    if teacher_store is not None:
        # the split as its folder's absolute path: any spelling of one folder is one split
        teacher_store.check(cfg.model.height, cfg.model.width, lines,
                            split=split_identity(data.split, data.splits_dir))
    options = dict(frame_ids=frame_ids, is_train=is_train, img_ext=".png" if data.png else ".jpg",
                   jitter=data.jitter, teacher_store=teacher_store, cache_dir=cache_dir,
                   source=str(path), augmented_scales=augmented_scales,
                   with_depth_gt=with_depth_gt)
    size = (cfg.model.height, cfg.model.width)
    if data.dataset == "folder":
        options["intrinsics"] = data.intrinsics
    return layouts[data.dataset](data.data_path, lines, *size, **options)
