"""Atomic file writing and small file helpers.

Every file the tools write (checkpoints, teacher ``.npz`` maps, ground truth, manifests, the
synthetic scene) goes through :func:`atomic_write`: the bytes land in a temporary file in the
same folder, are flushed and fsync'ed, and only then renamed over the target with
``os.replace``. A run killed half-way therefore leaves either the previous file or no file,
never a truncated one that a later run would trust.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Union

import numpy as np

PathLike = Union[str, os.PathLike]

# Prefix of the temporary files; a leftover one (from a kill) is never read as a result.
TMP_PREFIX = ".tmp-"


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on clean exit rename it to ``path``.

    Args:
        path: the final file name. Its parent folder is created if missing.
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    On an exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write supports modes 'wb' and 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
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
