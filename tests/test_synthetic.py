"""The synthetic KITTI writer: layout, calibration, known depth, determinism, atomicity."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from litemono.data import kitti_utils, synthetic
from litemono.data.synthetic_world import (CAMERA_HEIGHT, KITTI_STEREO_BASELINE, LEAD_CAR_DISTANCE,
                                           STEP_METRES)
from litemono.io import TMP_PREFIX

TINY = dict(drives=1, frames_per_drive=6, height=32, width=96, seed=3, workers=1)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _split(scene, name):
    return [line.split() for line in (scene.split_dir / f"{name}_files.txt").read_text().splitlines()]


def test_layout_and_splits(synthetic_kitti):
    scene = synthetic_kitti
    date = scene.drives[0].split("/")[0]
    assert {p.name for p in (scene.root / date).glob("calib_*.txt")} == {
        "calib_cam_to_cam.txt", "calib_velo_to_cam.txt", "calib_imu_to_velo.txt"}
    for drive in scene.drives:
        assert drive == f"{date}/{date}_drive_{scene.drives.index(drive) + 1:04d}_sync"
        assert len((scene.root / drive / "poses.txt").read_text().splitlines()) == 12
        for frame in range(12):
            for side, cam in (("l", "image_02"), ("r", "image_03")):
                image = scene.root / drive / cam / "data" / f"{frame:010d}.jpg"
                assert Image.open(image).size == (scene.width, scene.height)
                assert np.load(scene.true_depth_path(drive, frame, side)).shape == (scene.height, scene.width)
            assert (scene.root / drive / "velodyne_points/data" / f"{frame:010d}.bin").stat().st_size % 16 == 0
    train, val, test = (_split(scene, n) for n in ("train", "val", "test"))
    assert len(train) == 2 * 2 * 8 and len(val) == 2 * 2 and len(test) == 2 * 2
    for folder, frame, side in train + val:
        assert side in "lr" and 1 <= int(frame) <= 10  # both neighbours exist
    assert all(len(frame) == 10 and side == "l" for _, frame, side in test)
    assert not {(f, int(i)) for f, i, _ in train + val} & {(f, int(i)) for f, i, _ in test}
    assert json.loads((scene.root / "manifest.json").read_text())["split_lines"]["test"] == 4


def test_intrinsics_are_kittis_normalised_k(synthetic_kitti):
    calib = kitti_utils.read_calib_file(synthetic_kitti.calib_dir / "calib_cam_to_cam.txt")
    h, w = synthetic_kitti.height, synthetic_kitti.width
    for cam in (2, 3):
        p = calib[f"P_rect_0{cam}"].reshape(3, 4)
        np.testing.assert_allclose([p[0, 0] / w, p[1, 1] / h, p[0, 2] / w, p[1, 2] / h],
                                   [0.58, 1.92, 0.5, 0.5], rtol=1e-6)
        assert calib[f"S_rect_0{cam}"].tolist() == [w, h]
    baseline = (calib["P_rect_02"][3] - calib["P_rect_03"][3]) / calib["P_rect_02"][0]
    assert baseline == pytest.approx(KITTI_STEREO_BASELINE, rel=1e-5)


def test_velodyne_reprojects_onto_true_depth(synthetic_kitti):
    scene = synthetic_kitti
    drive = scene.drives[1]
    for frame in (0, 7):
        projection, shape = kitti_utils.velo_to_image_matrix(scene.calib_dir, cam=2)
        points = kitti_utils.read_velodyne(scene.velodyne_path(drive, frame)).astype(np.float64)
        image = np.c_[points[:, :3], np.ones(len(points))] @ projection.T
        u, v = image[:, 0] / image[:, 2], image[:, 1] / image[:, 2]
        col, row = np.round(u).astype(int), np.round(v).astype(int)
        assert np.abs(u - col).max() < 0.01 and np.abs(v - row).max() < 0.01  # within a pixel
        true = np.load(scene.true_depth_path(drive, frame))
        np.testing.assert_allclose(image[:, 2], true[row, col], rtol=1e-4)
        assert 0.04 < len(points) / true.size < 0.07
        sparse = kitti_utils.generate_depth_map(scene.calib_dir, scene.velodyne_path(drive, frame))
        rows, cols = np.nonzero(sparse)
        np.testing.assert_allclose(sparse[rows, cols], true[rows + 1, cols + 1], rtol=1e-4)


def test_true_depth_matches_geometry(synthetic_kitti):
    scene = synthetic_kitti
    h, w = scene.height, scene.width
    fy, cy = 1.92 * h, 0.5 * h
    for drive in scene.drives:
        depths = np.stack([np.load(scene.true_depth_path(drive, f)) for f in range(12)])
        # flat road below the camera: z = camera height * fy / (row - cy)
        assert depths[:, h - 1, w // 2] == pytest.approx(CAMERA_HEIGHT * fy / (h - 1 - cy), rel=1e-4)
        # the car ahead drives with the camera: its rear stays at the same distance in every frame
        car_row = int(round(cy + fy * (CAMERA_HEIGHT - 0.7) / LEAD_CAR_DISTANCE))
        assert np.all(depths[:, car_row, w // 2] == pytest.approx(LEAD_CAR_DISTANCE, rel=1e-4))
        assert (depths == 0).any() and depths.max() < 400  # sky = 0, a closing wall far away


def _sample(image, rows, cols):
    inside = (cols >= 0) & (cols <= image.shape[1] - 1)
    return image[rows[inside], np.round(cols[inside]).astype(int)], inside


def test_stereo_pair_agrees_with_depth(synthetic_kitti):
    scene, drive = synthetic_kitti, synthetic_kitti.drives[0]
    left = np.asarray(Image.open(scene.image_path(drive, 4, "l")), np.float32)
    right = np.asarray(Image.open(scene.image_path(drive, 4, "r")), np.float32)
    depth = np.load(scene.true_depth_path(drive, 4, "l"))
    rows, cols = np.nonzero(depth > 0)
    disparity = 0.58 * scene.width * KITTI_STEREO_BASELINE / depth[rows, cols]
    warped, inside = _sample(right, rows, cols - disparity)
    error = np.abs(warped - left[rows[inside], cols[inside]]).mean()
    identity = np.abs(right - left)[rows, cols].mean()
    assert error < 0.4 * identity


def test_poses_agree_with_depth_and_motion(synthetic_kitti):
    scene, drive = synthetic_kitti, synthetic_kitti.drives[0]
    poses = np.loadtxt(scene.poses_path(drive)).reshape(-1, 3, 4)
    np.testing.assert_allclose(poses[0], np.eye(3, 4), atol=1e-12)
    steps = np.linalg.norm(np.diff(poses[:, :, 3], axis=0), axis=1)
    assert np.all((steps > 0.8 * STEP_METRES * 0.85) & (steps < 1.2 * STEP_METRES * 1.15))
    h, w = scene.height, scene.width
    k = np.array([[0.58 * w, 0, 0.5 * w], [0, 1.92 * h, 0.5 * h], [0, 0, 1]])
    for frame in (2, 5, 9):
        target, source = (np.load(scene.true_depth_path(drive, f)) for f in (frame, frame + 1))
        rows, cols = np.nonzero(target > 0)
        camera = np.linalg.inv(k) @ np.stack([cols, rows, np.ones_like(cols)]) * target[rows, cols]
        world = poses[frame, :, :3] @ camera + poses[frame, :, 3:]
        pixels = k @ (poses[frame + 1, :, :3].T @ (world - poses[frame + 1, :, 3:]))
        col, row = (np.round(pixels[i] / pixels[2]).astype(int) for i in (0, 1))
        inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
        # only pixels whose depth changes between the frames: there a wrong pose cannot agree
        unchanged = np.abs(source[rows, cols] - target[rows, cols]) / target[rows, cols]
        moved = inside & (unchanged > 0.05)
        assert moved.sum() > 0.03 * h * w
        gap = np.abs(source[row[moved], col[moved]] - pixels[2, moved]) / pixels[2, moved]
        assert np.median(gap) < 0.01


def test_textures_carry_detail(synthetic_kitti):
    image = np.asarray(Image.open(synthetic_kitti.image_path(synthetic_kitti.drives[0], 0)), np.float32)
    bottom = image[-6:, image.shape[1] // 3: 2 * image.shape[1] // 3]
    assert bottom.std() > 5 and np.abs(np.diff(bottom, axis=1)).mean() > 3


def test_deterministic_from_seed(tmp_path):
    first = synthetic.make_synthetic_kitti(tmp_path / "a", **TINY)
    synthetic.make_synthetic_kitti(tmp_path / "b", **TINY)
    synthetic.make_synthetic_kitti(tmp_path / "c", **{**TINY, "seed": 4})
    files = _files(first.root)
    assert files == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert files.keys() == other.keys() and any(files[k] != other[k] for k in files)


def test_killed_run_is_completed_by_a_rerun(tmp_path, monkeypatch):
    reference = _files(synthetic.make_synthetic_kitti(tmp_path / "ref", **TINY).root)
    real_write = kitti_utils.write_velodyne
    calls = []

    def dying_write(path, points):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill while the third frame is being written
        real_write(path, points)

    monkeypatch.setattr(kitti_utils, "write_velodyne", dying_write)
    with pytest.raises(KeyboardInterrupt):
        synthetic.make_synthetic_kitti(tmp_path / "run", **TINY)
    monkeypatch.undo()
    root = tmp_path / "run"
    assert not (root / "manifest.json").exists()
    assert not [p for p in root.rglob(TMP_PREFIX + "*")]
    done = {p: p.stat().st_mtime_ns for p in root.rglob("*.npy")}
    synthetic.make_synthetic_kitti(root, **TINY)
    assert _files(root) == reference
    assert all(p.stat().st_mtime_ns == t for p, t in done.items())  # finished files not redone


def test_invalid_files_are_regenerated_and_settings_checked(tmp_path):
    scene = synthetic.make_synthetic_kitti(tmp_path, **TINY)
    reference = _files(tmp_path)
    drive = scene.drives[0]
    scene.velodyne_path(drive, 2).write_bytes(b"\0" * 7)
    scene.true_depth_path(drive, 3, "r").write_bytes(b"")
    scene.image_path(drive, 4).unlink()
    (tmp_path / "manifest.json").unlink()
    synthetic.make_synthetic_kitti(tmp_path, **TINY)
    assert _files(tmp_path) == reference
    with pytest.raises(ValueError, match="other settings"):
        synthetic.make_synthetic_kitti(tmp_path, **{**TINY, "seed": 5})
    assert synthetic.load_scene(tmp_path) == scene


def test_png_and_mono_options(tmp_path):
    scene = synthetic.make_synthetic_kitti(tmp_path, **{**TINY, "png": True, "stereo": False})
    drive = scene.drives[0]
    assert scene.image_path(drive, 0).suffix == ".png" and scene.image_path(drive, 0).is_file()
    assert not (scene.root / drive / "image_03").exists()
    assert {line[2] for line in _split(scene, "train")} == {"l"}
    with pytest.raises(ValueError, match="--frames_per_drive"):
        synthetic.make_synthetic_kitti(tmp_path / "x", **{**TINY, "frames_per_drive": 2})


def test_cli_renders_and_reports_misuse(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_synthetic_kitti.py"
    spec = importlib.util.spec_from_file_location("make_synthetic_kitti", path)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    args = ["--root", str(tmp_path / "cli"), "--drives", "1", "--frames_per_drive", "6", "--height", "32",
            "--width", "96", "--seed", "3", "--workers", "1"]
    assert cli.main(args) == 0
    assert "6 frames (32x96, stereo)" in capsys.readouterr().out
    api = synthetic.make_synthetic_kitti(tmp_path / "api", **TINY)
    assert _files(tmp_path / "cli") == _files(api.root)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(args[:-4] + ["--seed", "9"])
    assert exit_info.value.code == 2 and "other settings" in capsys.readouterr().err


def test_road_texture_is_stable_between_frames():
    """Warping frame f+1 onto f with the true depth and pose must explain the road's texture.

    A texture sampled at too fine a mip level for the footprint of a pixel on the steep road
    aliases: it flickers from frame to frame and no depth explains it, which leaves a
    self-supervised network nothing to learn from on a third of the image (scene version 1's
    geometric-mean footprint gives a ratio of 0.40 here, the footprint's long axis 0.33).
    """
    from litemono.data import synthetic_world as sw
    from litemono.geometry import backproject, project, warp

    height, width = 96, 320
    world = sw.build_world(0, 0, 12)
    fx, fy, cx, cy = sw.intrinsics(height, width)
    k = torch.tensor([[fx, 0, cx, 0], [0, fy, cy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])[None].float()

    def tensor(rgb):
        return torch.from_numpy(rgb).float().permute(2, 0, 1)[None] / 255

    ratios = []
    for frame in (3, 6, 9):
        target, depth = sw.render_view(world, frame, 2, height, width)
        source, _ = sw.render_view(world, frame + 1, 2, height, width)
        road = sw._cast(world, frame, 2, height, width, 1)[1] == 0
        motion = np.linalg.inv(world.camera_to_world(frame + 1)) @ world.camera_to_world(frame)
        points = backproject(torch.from_numpy(depth)[None, None].clamp(min=1e-3), torch.linalg.inv(k))
        sample = project(points, k, torch.from_numpy(motion).float()[None])
        warped = warp(tensor(source), sample)
        keep = torch.from_numpy(road) & (sample[0].abs() <= 1).all(-1)
        error = (warped - tensor(target)).abs().mean(1)[0][keep].mean()
        identity = (tensor(source) - tensor(target)).abs().mean(1)[0][keep].mean()
        ratios.append(float(error / identity))
    assert np.mean(ratios) < 0.36, ratios
