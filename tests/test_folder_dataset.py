"""Folder-of-sequences dataset: intrinsics YAML, frame order, start-up checks, build_dataset."""
import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from litemono.config import from_dict
from litemono.data import build_dataset
from litemono.data.folder import FolderDataset, load_intrinsics, sequence_split_lines

H, W = 32, 64


def write_sequences(root, counts={"walk": 4, "drive": 3}):
    """Sequences of mixed .jpg / .png frames next to a non-image file; returns the names."""
    rng = np.random.default_rng(0)
    names = {}
    for sequence, count in counts.items():
        (root / sequence).mkdir(parents=True)
        names[sequence] = [f"img_{100 + 7 * i}.png" if i % 2 else f"img_{100 + 7 * i}.jpg"
                           for i in range(count)]
        for name in names[sequence]:
            coarse = rng.integers(0, 256, (3, 5, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((90, 30)).save(root / sequence / name)
        (root / sequence / "notes.txt").write_text("not a frame")
    return names


def write_yaml(path, text):
    path.write_text(text)
    return str(path)


def test_intrinsics_normalised_and_pixels(tmp_path):
    text = "fx: 0.6\nfy: 1.9\ncx: 0.5\ncy: 0.45\n"
    normalised = load_intrinsics(write_yaml(tmp_path / "a.yaml", text))
    expected = np.array([[0.6, 0, 0.5, 0], [0, 1.9, 0.45, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                        np.float32)
    np.testing.assert_allclose(normalised, expected, rtol=1e-6)
    pixels = load_intrinsics(write_yaml(
        tmp_path / "b.yaml", "fx: 720\nfy: 720\ncx: 640\ncy: 360\nwidth: 1280\nheight: 720\n"))
    np.testing.assert_allclose(pixels[:2, :3], [[0.5625, 0, 0.5], [0, 1.0, 0.5]], rtol=1e-6)
    assert pixels.dtype == np.float32


@pytest.mark.parametrize("text, match", [
    ("fx: 0.6\nfy: 1.9\ncx: 0.5\n", "needs the keys"),
    ("fx: 0.6\nfy: one\ncx: 0.5\ncy: 0.5\n", "fy must be a number"),
    ("fx: 600\nfy: 600\ncx: 320\ncy: 96\nwidth: 640\n", "both width and height"),
    ("fx: -1\nfy: 1\ncx: 0.5\ncy: 0.5\n", "positive"),
    ("fx: [1, 2\n", "not valid YAML"),
])
def test_bad_intrinsics_name_the_flag_and_file(tmp_path, text, match):
    path = write_yaml(tmp_path / "K.yaml", text)
    with pytest.raises(ValueError, match=match) as info:
        load_intrinsics(path)
    assert f"--intrinsics {path}" in str(info.value)


def test_missing_intrinsics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="--intrinsics .*nope.yaml"):
        load_intrinsics(str(tmp_path / "nope.yaml"))


def test_frames_follow_sorted_names_and_K_uses_the_yaml(tmp_path):
    names = write_sequences(tmp_path / "data")
    K_file = write_yaml(tmp_path / "K.yaml", "fx: 0.7\nfy: 2.0\ncx: 0.5\ncy: 0.4\n")
    ds = FolderDataset(str(tmp_path / "data"), ["walk 2"], H, W, [0, -1, 1], intrinsics=K_file)
    sample = ds[0]
    ordered = sorted(names["walk"])
    for frame_id in (0, -1, 1):
        native = Image.open(tmp_path / "data/walk" / ordered[2 + frame_id]).convert("RGB")
        expected = T.ToTensor()(native.resize((W, H), Image.Resampling.LANCZOS))
        assert torch.equal(sample["color", frame_id, 0], expected)
    w, h = W / 2, H / 2  # scale 1
    expected_K = torch.tensor([[0.7 * w, 0, 0.5 * w], [0, 2.0 * h, 0.4 * h]])
    torch.testing.assert_close(sample["K", 1][:2, :3], expected_K)
    assert "depth_gt" not in sample and "stereo_T" not in sample


def test_out_of_range_frames_are_reported(tmp_path):
    write_sequences(tmp_path / "data")
    K_file = write_yaml(tmp_path / "K.yaml", "fx: 0.7\nfy: 2.0\ncx: 0.5\ncy: 0.4\n")
    with pytest.raises(FileNotFoundError) as info:
        FolderDataset(str(tmp_path / "data"), ["drive 1", "drive 2", "bike 1"], H, W,
                      intrinsics=K_file, source="own.txt")
    message = str(info.value)
    assert "own.txt line 2 ('drive 2')" in message
    assert "<frame 3: the folder has 3 images>" in message
    assert "own.txt line 3 ('bike 1')" in message and "line 1 " not in message
    with pytest.raises(ValueError, match="--use_stereo"):
        FolderDataset(str(tmp_path / "data"), ["drive 1"], H, W, [0, "s"], intrinsics=K_file)
    with pytest.raises(ValueError, match="--intrinsics"):
        FolderDataset(str(tmp_path / "data"), ["drive 1"], H, W, intrinsics=None)


def test_sequence_split_lines_and_build_dataset(tmp_path):
    write_sequences(tmp_path / "data")
    lines = sequence_split_lines(str(tmp_path / "data"), [0, -1, 1])
    assert lines == ["drive 1", "walk 1", "walk 2"]
    split = tmp_path / "own_split"
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(lines) + "\n")
    K_file = write_yaml(tmp_path / "K.yaml", "fx: 0.7\nfy: 2.0\ncx: 0.5\ncy: 0.4\n")
    cfg = from_dict({"data_path": str(tmp_path / "data"), "split": str(split), "dataset": "folder",
                     "intrinsics": K_file, "height": H, "width": W, "jitter": "per_item"})
    ds = build_dataset(cfg, "train", is_train=True)
    assert isinstance(ds, FolderDataset) and len(ds) == 3 and ds.jitter == "per_item"
    batch = torch.utils.data.default_collate([ds[0], ds[2]])
    assert batch["color_aug", -1, 0].shape == (2, 3, H, W)
