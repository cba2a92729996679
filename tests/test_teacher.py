"""Teacher precompute (tiny random Depth Anything V2, synthetic stand-in) and the teacher store."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import precompute_teacher
from litemono.data.splits import SplitLine
from litemono.data.teacher_store import TeacherStore, read_teacher_file
from litemono.teacher.depth_anything import (TeacherUnavailableError,
                                             load_teacher, lower_bound_size)
from litemono.teacher.depth_anything import random_depth_anything
from litemono.teacher.precompute import parse_shard, run_precompute, target_frames

HEIGHT, WIDTH, INPUT_SIZE = 32, 96, 28
DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A random DepthAnything saved with save_pretrained, re-initialised to give varied output."""
    model = random_depth_anything("tiny", seed=0)
    folder = tmp_path_factory.mktemp("tiny_da")
    model.save_pretrained(folder)
    return folder


@pytest.fixture()
def kitti(tmp_path):
    """Tiny KITTI raw tree (two image sizes) and a split folder with train/val lists."""
    data, split = tmp_path / "kitti", tmp_path / "split"
    rng = np.random.default_rng(0)
    lines = [f"{DRIVE} {i} {'l' if i % 2 else 'r'}" for i in range(1, 8)]
    for i, line in enumerate(lines):
        folder, frame, side = line.split()
        size = (40, 130) if i % 3 else (42, 128)
        path = data / folder / ("image_02" if side == "l" else "image_03") / "data"
        path.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size + (3,), dtype=np.uint8)
        Image.fromarray(pixels).save(path / f"{int(frame):010d}.png")
    split.mkdir()
    (split / "train_files.txt").write_text("\n".join(lines[:5] + lines[:1]) + "\n")  # a repeat
    (split / "val_files.txt").write_text("\n".join(lines[5:]) + "\n")
    return data, split, lines


def _argv(kitti, out, *extra):
    data, split, _ = kitti
    return ["--teacher_dir", str(out), "--data_path", str(data), "--split", str(split),
            "--png", "--height", str(HEIGHT), "--width", str(WIDTH), "--num_workers", "0",
            "--batch_size", "3", "--no_progress", *extra]


def test_lower_bound_size_follows_the_original_inference():
    assert lower_bound_size(192, 640) == (518, 1722)
    assert lower_bound_size(375, 1242) == (518, 1722)
    assert lower_bound_size(370, 1224) == (518, 1708)  # 1713.6 -> nearest multiple of 14
    assert lower_bound_size(640, 192) == (1722, 518)
    assert lower_bound_size(40, 130, 28) == (28, 84)  # 91 = 6.5 patches: ties round to even
    assert lower_bound_size(20, 20, 28) == (28, 28)


def test_teacher_output_matches_manual_pipeline(tiny_model_dir):
    teacher = load_teacher(teacher_path=str(tiny_model_dir), input_size=INPUT_SIZE)
    images = torch.rand(2, 3, 40, 130)
    disp = teacher(images, (HEIGHT, WIDTH))
    resized = F.interpolate(images, size=(28, 84), mode="bicubic", align_corners=False)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    raw = teacher.model(pixel_values=(resized - mean) / std).predicted_depth
    expected = F.interpolate(raw[:, None], size=(HEIGHT, WIDTH), mode="bilinear",
                             align_corners=True)[:, 0].clamp_min(0)
    torch.testing.assert_close(disp, expected)
    assert disp.shape == (2, HEIGHT, WIDTH) and (disp == 0).float().mean() < 0.5
    assert disp.std() > 0
    listed = teacher.predict_list([images[0], images[1, :, :38, :120]], (HEIGHT, WIDTH))
    torch.testing.assert_close(listed[0], disp[0])
    torch.testing.assert_close(listed[1], teacher(images[1:, :, :38, :120], (HEIGHT, WIDTH))[0])


def test_missing_weights_explain_what_to_download(tmp_path):
    with pytest.raises(TeacherUnavailableError, match="--teacher_path"):
        load_teacher(teacher_path=str(tmp_path))
    with pytest.raises(TeacherUnavailableError) as info:
        load_teacher("small", local_files_only=True)
    message = str(info.value)
    assert "hf download depth-anything/Depth-Anything-V2-Small-hf" in message
    assert "huggingface-cli" not in message  # huggingface_hub 1.x no longer ships it
    assert "--teacher_path" in message and "model.safetensors" in message


def test_precompute_layout_manifest_fp16_and_store(kitti, tiny_model_dir, tmp_path):
    out = tmp_path / "teacher"
    summary = precompute_teacher.main(_argv(kitti, out, "--teacher_path", str(tiny_model_dir),
                                            "--input_size", str(INPUT_SIZE)))
    assert summary == {"computed": 7, "skipped": 0, "shard_frames": 7}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["output_size"] == [HEIGHT, WIDTH] and manifest["input_size"] == INPUT_SIZE
    assert manifest["teacher"] == str(tiny_model_dir) and manifest["num_frames"] == 7
    assert manifest["split"] == str(kitti[1]) and manifest["version"] == 1
    teacher = load_teacher(teacher_path=str(tiny_model_dir), input_size=INPUT_SIZE)
    store = TeacherStore(out)
    for line in kitti[2]:
        folder, frame, side = line.split()
        camera = "image_02" if side == "l" else "image_03"
        stored = read_teacher_file(out / folder / camera / "data" / f"{int(frame):010d}.npz")
        assert stored.dtype == np.float16 and stored.shape == (HEIGHT, WIDTH)
        image = np.asarray(Image.open(kitti[0] / folder / camera / "data"
                                      / f"{int(frame):010d}.png"))
        expected = teacher(torch.from_numpy(image / 255.0).permute(2, 0, 1)[None].float(),
                           (HEIGHT, WIDTH))[0].numpy()
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=2e-3, atol=2e-3)
        np.testing.assert_array_equal(store.load(folder, int(frame), side),
                                      stored.astype(np.float32))
    stats = json.loads((out / "statistics.json").read_text())
    all_maps = np.concatenate([read_teacher_file(p).ravel() for p in sorted(out.rglob("*.npz"))])
    assert stats["zero_fraction"] == pytest.approx(float((all_maps == 0).mean()))
    assert stats["max"] == pytest.approx(float(all_maps.max()))
    store.check(HEIGHT, WIDTH, kitti[2], split=str(kitti[1]))


class _Recorder:
    """Fake predictor: records the frames it computes; can fail after some batches ("kill")."""

    def __init__(self, fail_after=None):
        self.frames, self.calls, self.fail_after = [], 0, fail_after

    def load(self, frame):
        return frame

    def predict(self, loaded):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated kill")
        self.calls += 1
        self.frames.extend(loaded)
        return [np.full((HEIGHT, WIDTH), 1.0 + f.frame_index, np.float32) for f in loaded]


def _frames(n=10):
    return [SplitLine(DRIVE, i, "l" if i % 2 else "r") for i in range(n)]


def test_resume_after_kill_redoes_only_missing_or_broken(tmp_path):
    frames, manifest = _frames(), {"output_size": [HEIGHT, WIDTH], "split": "s"}
    with pytest.raises(KeyboardInterrupt):
        run_precompute(_Recorder(fail_after=2), frames, tmp_path, manifest, batch_size=3,
                       progress=False)
    assert len(list(tmp_path.rglob("*.npz"))) == 6 and not (tmp_path / "statistics.json").exists()
    broken = tmp_path / DRIVE / "image_03" / "data" / f"{0:010d}.npz"
    broken.write_bytes(broken.read_bytes()[:20])  # a truncated file left by some other tool
    recorder = _Recorder()
    summary = run_precompute(recorder, frames, tmp_path, manifest, batch_size=3, progress=False)
    assert sorted(f.frame_index for f in recorder.frames) == [0, 6, 7, 8, 9]
    assert summary == {"computed": 5, "skipped": 5, "shard_frames": 10}
    assert (tmp_path / "statistics.json").is_file()
    store = TeacherStore(tmp_path)
    assert all(store.load(*f)[0, 0] == 1.0 + f.frame_index for f in frames)


def test_shards_cover_every_frame_exactly_once(tmp_path, monkeypatch):
    frames, manifest = _frames(11), {"output_size": [HEIGHT, WIDTH], "split": "s"}
    seen = []
    for k in range(3):
        recorder = _Recorder()
        run_precompute(recorder, frames, tmp_path, manifest, shard=parse_shard(f"{k}/3"),
                       progress=False)
        seen.extend(recorder.frames)
    assert sorted(seen) == sorted(frames) and len(seen) == len(frames)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard(None) == (2, 4)
    for bad in ("3/3", "1-2", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)


def test_stale_manifest_and_missing_frames_are_refused(tmp_path):
    frames = _frames(4)
    run_precompute(_Recorder(), frames, tmp_path, {"output_size": [HEIGHT, WIDTH], "split": "s"},
                   progress=False)
    with pytest.raises(ValueError, match="output_size"):
        run_precompute(_Recorder(), frames, tmp_path, {"output_size": [64, 192], "split": "s"},
                       progress=False)
    store = TeacherStore(tmp_path)
    lines = [f"{f.folder} {f.frame_index} {f.side}" for f in frames]
    with pytest.raises(ValueError, match="--height 64 --width 192"):
        store.check(64, 192, lines)
    with pytest.raises(ValueError, match="--split 'other'"):
        store.check(HEIGHT, WIDTH, lines, split="other")
    extra = [f"{DRIVE} 99 l", f"{DRIVE} 98 r"]
    with pytest.raises(ValueError, match=r"lacks 2 of 6 frames .*drive_0001_sync 99 l"):
        store.check(HEIGHT, WIDTH, lines + extra)
    with pytest.raises(FileNotFoundError, match="precompute_teacher.py"):
        TeacherStore(tmp_path / "nowhere")


def test_synthetic_teacher_is_affine_in_true_disparity(kitti, tmp_path):
    data, split, lines = kitti
    rng = np.random.default_rng(1)
    for line in lines:
        folder, frame, side = line.split()
        depth = rng.uniform(2.0, 60.0, (HEIGHT, WIDTH)).astype(np.float32)
        depth[:6] = 0.0  # sky rows (the synthetic scene's convention)
        target = data / folder / ("image_02" if side == "l" else "image_03") / "true_depth"
        target.mkdir(exist_ok=True)
        np.save(target / f"{int(frame):010d}.npy", depth)
    first, second = tmp_path / "a", tmp_path / "b"
    precompute_teacher.main(_argv(kitti, first, "--teacher", "synthetic", "--seed", "3"))
    precompute_teacher.main(_argv(kitti, second, "--teacher", "synthetic", "--seed", "3"))
    assert json.loads((first / "manifest.json").read_text())["teacher"].startswith("synthetic")
    scales = set()
    for line in lines:
        folder, frame, side = line.split()
        disp = TeacherStore(first).load(folder, int(frame), side)
        np.testing.assert_array_equal(disp, TeacherStore(second).load(folder, int(frame), side))
        camera = "image_02" if side == "l" else "image_03"
        depth = np.load(data / folder / camera / "true_depth" / f"{int(frame):010d}.npy")
        assert (disp[:6] == 0).all() and (disp[6:] > 0).all()
        truth = 1.0 / depth[6:].ravel()
        (a, b), *_ = np.linalg.lstsq(np.stack([truth, np.ones_like(truth)], 1), disp[6:].ravel(),
                                     rcond=None)
        residual = disp[6:].ravel() - (a * truth + b)
        assert 0.5 <= a <= 2.0 and np.abs(residual).mean() < 0.05 * np.median(disp[6:])
        scales.add(round(float(a), 3))
    assert len(scales) == len(lines)  # a different random scale per frame


def test_target_frames_deduplicates_train_and_val(kitti):
    _, split, lines = kitti
    frames = target_frames(str(split), "unused")
    assert [f"{f.folder} {f.frame_index} {f.side}" for f in frames] == lines


def test_random_stand_ins_have_the_published_sizes():
    """The "small" stand-in has DA-V2 Small's architecture (24,785,089 parameters,
    measurements.md section 6); the tiny one 164,105 and gives varied, mostly non-zero output."""
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(random_depth_anything("small")) == 24_785_089
    tiny = random_depth_anything("tiny")
    assert count(tiny) == 164_105
    with torch.no_grad():
        out = tiny(pixel_values=torch.rand(1, 3, 56, 84)).predicted_depth
    assert (out == 0).float().mean() < 0.2 and out.std() > 0
