"""KITTI split files: where they live, how they are verified, how their lines are read.

monodepth2's public splits, not shipped: ``scripts/download_splits.py`` fetches them at a
pinned commit (or copies a folder) into ``splits/``, checked against the SHA-256 values below.
A line is ``<folder> <frame_index> [<side>]``: ``2011_09_26/2011_09_26_drive_0022_sync 473 r``
(raw; eigen test lines zero-pad), ``9 0 l`` (odometry)."""
from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, NamedTuple, Optional, Union

from ..errors import DataError
from ..io import sha256_file, write_bytes

MONODEPTH2_REPO = "nianticlabs/monodepth2"
MONODEPTH2_COMMIT = "b676244e5a1ca55564eb5d16ab521a48f823af31"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/splits/{name}"

# SHA-256 of every split file at MONODEPTH2_COMMIT (relative path -> hex digest).
SPLIT_SHA256: Dict[str, str] = {
    "benchmark/eigen_to_benchmark_ids.npy":
        "1c1ac4ea84c938622f228a4438661fdb66ec07a2380a54bd21cd28b6eeb1a4e8",
    "benchmark/test_files.txt": "b9b0746d2e5263d975fd082d6e82d592971adc9e6a2fdf370a8cf78519161d28",
    "benchmark/train_files.txt": "060fdce26c5cd0681b6cc7620a856c697caa78fd23ab7a9ba41fb39c70ae3860",
    "benchmark/val_files.txt": "5c65577de234037bec0c792d7bf44c60b7fb367449266054eb4612a5e92bfa08",
    "eigen/test_files.txt": "e226d4ca16e0e6e9695435014347dcf973588531330536fd8a68d298ef091a6b",
    "eigen_benchmark/test_files.txt":
        "d56e5e509e6960a01fb93795f85028ac6e4a82ad40e64b6e968988e4db95b9be",
    "eigen_full/train_files.txt": "1b491141d87b7af9e6706609b7ce858c198c3a4ca61d180c7dc90815d5f2a986",
    "eigen_full/val_files.txt": "9c4446772ec58aaa60acbeef0fa6d1e8ef1b346ad4f78272d056d10cf1993af9",
    "eigen_zhou/train_files.txt": "00173a231642151c4693274e701ddd4cae7916520a757c7a94eae8e1173f7b0c",
    "eigen_zhou/val_files.txt": "64a868b8d2c66c3979a2d74c22ea2e9146850d5b9f5786ed8e5f92201ba1ad04",
    "kitti_archives_to_download.txt":
        "9899630a856ea2661a06d223440561395792e15538ebe97f3b719a04b91e4386",
    "odom/test_files_09.txt": "8b999b6f974041663ba2f8aa6456ea338089a272119b7edd702f352278f43d26",
    "odom/test_files_10.txt": "f39c47e0c21f65d4503476375f2a786def34f54bd5d1cabf28c7e68f002986a1",
    "odom/train_files.txt": "ced6c5fd1b0b76e2a28d68e046421c1f0df08de8fb713ca305684d263af6d0e2",
    "odom/val_files.txt": "9cf46e1b873d6f9883015b1f77fcace51db424a1f0a765324957f46399b6db99",
}
KNOWN_SPLITS = sorted({name.split("/")[0] for name in SPLIT_SHA256 if "/" in name})
HOW_TO_GET = ("run `python scripts/download_splits.py` (or `--from DIR` with a copy of "
              "monodepth2's splits folder)")


class SplitError(FileNotFoundError):
    """A split file is missing or does not match its published checksum."""


class SplitLine(NamedTuple):
    folder: str
    frame_index: int
    side: Optional[str]


def parse_split_line(line: str) -> SplitLine:
    """``"2011_09_26/..._sync 0000000069 l"`` -> ``SplitLine(folder, 69, "l")``."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise DataError(f"split line must be '<folder> <frame> [l|r]', got {line!r}")
    side = parts[2] if len(parts) == 3 else None
    if side not in (None, "l", "r"):
        raise DataError(f"split line side must be 'l' or 'r', got {line!r}")
    if not parts[1].lstrip("-").isdigit():
        raise DataError(f"split line frame index must be an integer, got {line!r}")
    return SplitLine(parts[0], int(parts[1]), side)


def read_split_lines(path: Union[str, Path], side_needed_by: Optional[str] = None) -> List[str]:
    """The stripped non-empty lines of a split file, each checked; ``side_needed_by`` (who needs it)
    also requires ``l``/``r``.

    Raises:
        SplitError: no such file.
        DataError: the first malformed line, as ``<split file>:<line number>`` (from 1, blanks
            counted)."""
    path = Path(path)
    if not path.is_file():
        raise SplitError(f"split file {path} not found; {HOW_TO_GET}")
    lines = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.strip()
        if not text:
            continue
        where = f"{path}:{number}"
        try:
            entry = parse_split_line(text)
        except DataError as exc:
            raise DataError(str(exc), where, "fix that line") from None
        if side_needed_by and entry.side is None:
            raise DataError(f"split line {text!r} has no side (l or r), needed by "
                            f"{side_needed_by}", where, "add l or r to that line")
        lines.append(text)
    return lines


def read_split(path: Union[str, Path], side_needed_by: Optional[str] = None) -> List[SplitLine]:
    """The lines of a split file parsed (:func:`read_split_lines` checks and names them)."""
    return [parse_split_line(text) for text in read_split_lines(path, side_needed_by)]


def split_folder(split: str, splits_dir: Union[str, Path]) -> Path:
    """The folder of ``split``: a folder path given directly, or ``<splits_dir>/<split>``."""
    direct = Path(split)
    if direct.is_dir() and any(direct.glob("*_files*.txt")):
        return direct
    folder = Path(splits_dir) / split
    if not folder.is_dir():
        raise SplitError(f"--split {split!r}: no folder {folder} (named splits: "
                         f"{', '.join(KNOWN_SPLITS)}); {HOW_TO_GET}")
    return folder


def split_identity(split: str, splits_dir: Union[str, Path]) -> str:
    """One spelling per split folder: its absolute path (``./splits/x``, ``splits/x`` and ``x``
    under ``splits_dir`` match); the text itself when no such folder exists."""
    try:
        return str(split_folder(split, splits_dir).resolve())
    except SplitError:
        return str(split)


def split_file(split: str, splits_dir: Union[str, Path], part: str) -> Path:
    """Path of ``<part>_files.txt`` (part = train, val or test) of ``split``; checked when the
    split is a published one, so a truncated or edited file is never used silently."""
    folder = split_folder(split, splits_dir)
    path = folder / f"{part}_files.txt"
    if not path.is_file():
        raise SplitError(f"--split {split!r}: {path} not found; {HOW_TO_GET}")
    rel = f"{folder.name}/{path.name}"
    if Path(split) == Path(folder.name) and rel in SPLIT_SHA256:
        verify_file(path, rel)
    return path


def verify_file(path: Union[str, Path], rel: str) -> None:
    """Raise :class:`SplitError` unless ``path`` has the published SHA-256 of ``rel``."""
    digest = sha256_file(path)
    if digest != SPLIT_SHA256[rel]:
        raise SplitError(f"{path} does not match the published {rel} (sha256 {digest[:12]}..., "
                         f"expected {SPLIT_SHA256[rel][:12]}...); {HOW_TO_GET}")


def verify_splits(splits_dir: Union[str, Path], names: Optional[Iterable[str]] = None) -> List[str]:
    """Check every published split under ``splits_dir``; returns the relative paths checked.

    Raises:
        SplitError: naming the first missing or mismatching file."""
    splits_dir = Path(splits_dir)
    checked = []
    for rel in names if names is not None else SPLIT_SHA256:
        path = splits_dir / rel
        if not path.is_file():
            raise SplitError(f"split file {path} is missing; {HOW_TO_GET}")
        verify_file(path, rel)
        checked.append(rel)
    return checked


def fetch_splits(dest: Union[str, Path], source: Optional[Union[str, Path]] = None,
                 names: Optional[Iterable[str]] = None, timeout: float = 60.0) -> List[str]:
    """Copy (``source``) or download (monodepth2, pinned commit) splits into ``dest``, each verified
    before its atomic write; correct files are kept. Returns the relative paths written."""
    dest = Path(dest)
    written = []
    for rel in names if names is not None else SPLIT_SHA256:
        target = dest / rel
        if target.is_file() and sha256_file(target) == SPLIT_SHA256[rel]:
            continue
        if source is not None:
            src = Path(source) / rel
            if not src.is_file():
                raise SplitError(f"--from {source}: {rel} is missing there")
            data = src.read_bytes()
        else:
            url = RAW_URL.format(repo=MONODEPTH2_REPO, commit=MONODEPTH2_COMMIT, name=rel)
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    data = response.read()
            except OSError as exc:  # offline, blocked, or the server refused
                reason = getattr(exc, "reason", None) or exc
                raise SplitError(f"could not download {rel} ({reason}), {url}, check the "
                                 "network, or pass --from DIR with a copy of monodepth2's "
                                 "splits folder") from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != SPLIT_SHA256[rel]:
            raise SplitError(f"{rel} from {source or 'download'} has sha256 {digest[:12]}..., "
                             f"expected {SPLIT_SHA256[rel][:12]}...: refusing to write it")
        write_bytes(target, data)
        written.append(rel)
    return written
