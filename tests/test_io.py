"""Atomic writes: a failure mid-write leaves the previous file (or none) and no stray temp file."""
import numpy as np
import pytest
import torch

from litemono import io


def test_round_trips(tmp_path):
    io.save_torch({"a": torch.arange(3)}, tmp_path / "x.pth")
    assert torch.equal(torch.load(tmp_path / "x.pth", weights_only=True)["a"], torch.arange(3))
    io.save_npz(tmp_path / "y.npz", disp=np.ones((2, 3), np.float16))
    with np.load(tmp_path / "y.npz") as data:
        assert data["disp"].dtype == np.float16 and data["disp"].shape == (2, 3)
    io.save_npy(tmp_path / "z.npy", np.eye(2))
    assert np.array_equal(np.load(tmp_path / "z.npy"), np.eye(2))
    io.write_json(tmp_path / "sub/m.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "sub/m.json").read_text().startswith('{\n  "a"')


def test_interrupted_write_keeps_previous_file(tmp_path):
    target = tmp_path / "ckpt.pth"
    io.write_bytes(target, b"good")
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_write(target) as handle:
            handle.write(b"half of a new fi")
            raise KeyboardInterrupt  # a kill in the middle of a save
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pth"]  # temp file cleaned up


def test_interrupted_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_write(tmp_path / "new.txt", "w") as handle:
            handle.write("partial")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_bad_mode(tmp_path):
    with pytest.raises(ValueError, match="modes"):
        with io.atomic_write(tmp_path / "a", "a"):
            pass


def test_sha256(tmp_path):
    import hashlib

    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert io.sha256_file(tmp_path / "f", chunk=7) == hashlib.sha256(b"abc" * 1000).hexdigest()
