"""``train.py --check_data``: decode every frame and teacher map a run reads, in a thread pool,
reporting all corrupt files at once instead of hours into training."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import DataError
from .teacher_store import read_teacher_file
from .transforms import read_rgb

SHOWN_IN_ERROR = 3  # bad files named in the error line (all of them are printed before it)


def files_to_check(datasets: Sequence) -> Dict[str, Tuple[str, str]]:
    """Every file the datasets read: path -> (``"image"`` / ``"teacher"``, split line)."""
    found: Dict[str, Tuple[str, str]] = {}
    for dataset in datasets:
        for entry in dataset.entries:
            where = f"{dataset.source} line {entry.line_number}"
            for _, frame_index, side in dataset._frame_keys(entry.line):
                found.setdefault(dataset.image_path(entry.line.folder, frame_index, side),
                                 ("image", where))
            store = dataset.teacher_store
            if store is not None and hasattr(store, "path_for"):
                path = store.path_for(entry.line.folder, entry.line.frame_index, entry.line.side)
                found.setdefault(str(path), ("teacher", where))
    return found


def check_file(path: str, kind: str, size: Tuple[int, int]) -> Optional[str]:
    """None if ``path`` decodes (a teacher map: a finite (H, W) array), else the reason."""
    try:
        if kind == "image":
            read_rgb(path)
            return None
        disp = read_teacher_file(path)
    except (OSError, ValueError) as exc:
        return " ".join(str(exc).split())
    if disp.shape != tuple(size):
        return f"teacher map of shape {disp.shape}, the run needs {tuple(size)}"
    if not np.isfinite(disp).all():
        return "teacher map holds NaN or inf values"
    return None


def check_datasets(datasets: Sequence, workers: int, progress: bool = True,
                   report: Callable[[str], None] = print) -> int:
    """Decode every file (``workers`` >= 1), print each bad one to ``report``; returns the count.

    Raises:
        DataError: naming how many files are bad and the first ones."""
    from tqdm import tqdm

    files = files_to_check(datasets)
    size = (datasets[0].height, datasets[0].width)
    bad: List[Tuple[str, str, str]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(files), unit="file", desc="check_data", disable=not progress,
                 leave=False) as bar:
        results = pool.map(lambda item: (item, check_file(item[0], item[1][0], size)),
                           files.items())
        for (path, (_, where)), reason in results:
            if reason is not None:
                bad.append((path, where, reason))
            bar.update(1)
    for path, where, reason in bad:
        report(f"bad file {path} ({where}): {reason}")
    if bad:
        shown = "; ".join(path for path, _, _ in bad[:SHOWN_IN_ERROR])
        more = f" and {len(bad) - SHOWN_IN_ERROR} more" if len(bad) > SHOWN_IN_ERROR else ""
        raise DataError(f"--check_data found {len(bad)} bad file(s) of {len(files)}",
                        f"{shown}{more}", "replace them (each is listed above with its split line)")
    report(f"--check_data: {len(files)} files decode")
    return len(files)
