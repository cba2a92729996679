"""Read access to precomputed teacher disparities (``precompute_teacher.py`` output)::

    <teacher_dir>/manifest.json        teacher id, input size, output size [H, W], split, version
    <teacher_dir>/statistics.json      distribution of the disparities (for the bins)
    <teacher_dir>/<folder>/image_02/data/<frame:010d>.npz     left camera ("l")
    <teacher_dir>/<folder>/image_03/data/<frame:010d>.npz     right camera ("r")

Each ``.npz`` holds ``disp``: float16 relative disparity at training resolution, 0 = sky.
Written by Depth Anything V2 or :mod:`litemono.teacher.synthetic`."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

import numpy as np

from ..errors import DataError
from .kitti import SIDE_TO_CAMERA
from .splits import parse_split_line, split_identity

MANIFEST_NAME = "manifest.json"
STATISTICS_NAME = "statistics.json"
FORMAT_VERSION = 1
ARRAY_KEY = "disp"
CAMERA_FOLDERS = {side: f"image_0{cam}" for side, cam in SIDE_TO_CAMERA.items()}
_MISSING_SHOWN = 5  # how many missing frames an error message lists
DEFAULT_SPLITS = Path(__file__).resolve().parents[2] / "splits"  # --splits_dir's default


def teacher_path(root: Union[str, Path], folder: str, frame_index: int,
                 side: Optional[str]) -> Path:
    """Where the teacher map of one target frame lives under ``root``."""
    if side not in CAMERA_FOLDERS:
        raise ValueError(f"teacher maps need a camera side 'l' or 'r', got {side!r} for "
                         f"{folder} {frame_index}")
    return Path(root) / folder / CAMERA_FOLDERS[side] / "data" / f"{frame_index:010d}.npz"


def read_teacher_file(path: Union[str, Path]) -> np.ndarray:
    """The float16 (H, W) map in ``path``.

    Raises:
        FileNotFoundError: no such file. DataError: truncated or not a teacher map (named)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data[ARRAY_KEY]
    except FileNotFoundError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"unreadable teacher map ({type(exc).__name__}: {exc})", str(path),
                        "delete it and rerun precompute_teacher.py (it recomputes missing "
                        "maps)") from exc


def is_valid_file(path: Union[str, Path], height: int, width: int) -> bool:
    """True when ``path`` holds a finite float16 (height, width) map; False if absent or broken."""
    try:
        disp = read_teacher_file(path)
    except (OSError, DataError):
        return False
    return (disp.dtype == np.float16 and disp.shape == (height, width)
            and bool(np.isfinite(disp).all()))


def fix_command(root: Union[str, Path], manifest: Dict[str, Any]) -> str:
    """The precompute command line that (re)creates or completes ``root``."""
    height, width = manifest.get("output_size", ["H", "W"])
    return (f"python precompute_teacher.py {manifest.get('teacher_args', '--teacher small')} "
            f"--split {manifest.get('split', '<split>')} --height {height} --width {width} "
            f"--teacher_dir {root}")


class TeacherStore:
    """A ``--teacher_dir``: manifest, per-frame paths and maps, consistency check.

    Raises:
        FileNotFoundError: no ``manifest.json``. DataError: another format version."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)
        manifest_path = self.root / MANIFEST_NAME
        if not manifest_path.is_file():
            raise FileNotFoundError(f"--teacher_dir {self.root}: no {MANIFEST_NAME}; create it "
                                    f"with python precompute_teacher.py --teacher_dir {self.root}")
        self.manifest: Dict[str, Any] = json.loads(manifest_path.read_text())
        version = self.manifest.get("version")
        if version != FORMAT_VERSION:
            raise DataError(f"--teacher_dir {self.root}: manifest version {version}, this code "
                             f"reads version {FORMAT_VERSION}; rerun precompute_teacher.py")

    def path_for(self, folder: str, frame_index: int, side: Optional[str]) -> Path:
        """Path of the ``.npz`` map of a target frame (``side`` is ``"l"`` or ``"r"``)."""
        return teacher_path(self.root, folder, frame_index, side)

    def load(self, folder: str, frame_index: int, side: Optional[str]) -> np.ndarray:
        """float32 (H, W) relative disparity >= 0 of a target frame, 0 = sky."""
        path = self.path_for(folder, frame_index, side)
        if not path.is_file():
            raise FileNotFoundError(f"teacher map {path} is missing; complete the folder with: "
                                    + fix_command(self.root, self.manifest))
        return read_teacher_file(path).astype(np.float32)

    def check(self, height: int, width: int, split_lines: Sequence[str],
              split: Optional[str] = None, splits_dir: Union[str, Path] = DEFAULT_SPLITS) -> None:
        """Refuse a folder made for another size or ``split`` (compared as a folder), or lacking
        frame 0 of some of ``split_lines``.

        Raises:
            DataError: naming the field or first missing frames, with a precompute command that
                writes a new folder beside this one (never mixed)."""
        manifest = self.manifest
        stored_size = list(manifest.get("output_size", []))
        same_split = split is None or (split_identity(str(manifest.get("split")), splits_dir)
                                       == split_identity(split, splits_dir))
        if stored_size != [height, width] or not same_split:
            # a new folder beside this one: precompute refuses to mix sizes or splits
            target = self.root.with_name(f"{self.root.name}_{height}x{width}")
            fix = fix_command(target, {**manifest, "output_size": [height, width],
                                       "split": split_identity(split or manifest.get("split"),
                                                               splits_dir)})
            what = (f"holds {stored_size[0]}x{stored_size[1]} maps but the run uses --height "
                    f"{height} --width {width}" if stored_size != [height, width] else
                    f"was computed for --split {manifest.get('split')!r}, the run uses "
                    f"--split {split!r}")
            raise DataError(f"--teacher_dir {self.root} {what}; precompute a new folder with: "
                            f"{fix}, then train with --teacher_dir {target}")
        missing = [line for line in split_lines
                   if not self.path_for(*parse_split_line(line)).is_file()]
        if missing:
            shown = "; ".join(missing[:_MISSING_SHOWN])
            extra = len(missing) - _MISSING_SHOWN
            more = f" and {extra} more" if extra > 0 else ""
            raise DataError(f"--teacher_dir {self.root} lacks {len(missing)} of "
                            f"{len(split_lines)} frames ({shown}{more}); complete it (the "
                            f"command resumes): {fix_command(self.root, manifest)}")
