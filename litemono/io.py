"""Atomic file writing and small file helpers.

Every file the tools write goes through :func:`atomic_write`: a temporary file in the same
folder, flushed, fsync'ed, then ``os.replace``'d, so a kill leaves the old file or none, never a
truncated one. ``tempfile``'s private modes are reset to what ``open()`` / ``mkdir()`` would give
(0666 / 0777 minus umask). Kills leave ``.tmp-<name>.<random>``; :func:`remove_leftovers`
deletes them in the folders each tool owns (docs/reliability.md)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterable, Iterator, List, Optional, Union

import numpy as np

from .errors import CheckpointError, first_sentence

PathLike = Union[str, os.PathLike]

# Prefix of the temporary files; a leftover one (from a kill) is never read as a result.
TMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it to probe is not atomic)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def make_temp_dir(parent: PathLike, name: str) -> Path:
    """A new folder ``<parent>/.tmp-<name>.<random>`` with the mode ``mkdir`` would give."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + name + ".", dir=parent))
    os.chmod(folder, 0o777 & ~current_umask())
    return folder


def remove_leftovers(folder: PathLike, names: Optional[Iterable[str]] = None) -> List[Path]:
    """Delete (and return) the ``.tmp-*`` leftovers in ``folder`` (missing: none); ``names``: only
    ``.tmp-<name>.*`` of these (for folders shared by concurrent processes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = (TMP_PREFIX,) if names is None else tuple(TMP_PREFIX + n + "." for n in names)
    removed = []
    for entry in folder.iterdir():
        if not entry.name.startswith(wanted):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` (``"wb"`` or ``"w"``, UTF-8; parent created), renamed
    to ``path`` on clean exit; on an exception it is removed and ``path`` untouched."""
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write supports modes 'wb' and 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 would survive the rename
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None:
            # a full disk surfaces as a bare "[Errno 28] No space left on device": name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


def write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as handle:
        handle.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save`` to ``path`` atomically (serialised in memory first)."""
    import torch  # local import: this module is also used by torch-free scripts

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def save_npz(path: PathLike, compressed: bool = True, **arrays: np.ndarray) -> None:
    """``np.savez(_compressed)`` to ``path`` atomically. ``path`` should end in ``.npz``."""
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """``np.save`` to ``path`` atomically (never pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    write_bytes(path, buffer.getvalue())


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


# how torch's weights-only unpickler names a Python object it refuses to rebuild
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def pickled_object(exc: BaseException) -> Optional[str]:
    """The object (``module.Class``) that ``torch.load(weights_only=True)`` refused to unpickle if
    that caused ``exc``; None for other errors (a cut or foreign file)."""
    if not isinstance(exc, pickle.UnpicklingError):
        return None
    found = _REFUSED_GLOBAL.search(str(exc))
    return found.group(1) if found else None


def holds_objects(path: PathLike, name: str) -> str:
    """The words for a file refused by :func:`pickled_object` (``name`` is its object)."""
    return (f"{path} holds pickled Python objects ({name}), not only tensors, and is not "
            "unpickled here because unpickling runs code stored in the file")


def read_torch_file(path: PathLike, flag: str = "", device: Any = "cpu",
                    mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)``: the one reader of weight folders and training states.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: truncated, not a torch file, or pickled objects; named, after ``flag``."""
    import torch

    where = f"{flag}: " if flag else ""
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        name = pickled_object(exc)
        if name is not None:
            raise CheckpointError(f"{where}{holds_objects(path, name)}, save plain tensors "
                                  "(torch.save(module.state_dict(), file)) as train.py does") from exc
        raise CheckpointError(f"{where}cannot read {path} ({first_sentence(str(exc))}), the "
                              "file is truncated or not a torch file: use an intact copy or "
                              "delete it") from exc
