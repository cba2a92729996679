"""KITTI calibration text, velodyne .bin and the sparse depth projection (kitti_utils)."""
import numpy as np
import pytest

from litemono.data import kitti_utils

# Three lines of a real KITTI raw calib_cam_to_cam.txt (2011_09_26)
KITTI_LINES = """calib_time: 09-Jan-2012 13:57:47
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
"""


def test_reads_kitti_text(tmp_path):
    (tmp_path / "calib.txt").write_text(KITTI_LINES)
    calib = kitti_utils.read_calib_file(tmp_path / "calib.txt")
    assert calib["calib_time"] == "09-Jan-2012 13:57:47"
    assert calib["S_rect_02"].tolist() == [1242.0, 375.0]
    projection = calib["P_rect_02"].reshape(3, 4)
    assert projection[0, 0] == pytest.approx(721.5377) and projection[1, 3] == pytest.approx(0.2163791)


def test_calib_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    entries = {"calib_time": "01-Jan-2000 00:00:00", "R": rng.normal(size=(3, 3)),
               "T": rng.normal(size=3) * 100, "delta_f": np.zeros(2)}
    kitti_utils.write_calib_file(tmp_path / "c.txt", entries)
    text = (tmp_path / "c.txt").read_text()
    assert "  " not in text and text.splitlines()[1].startswith("R: ")
    back = kitti_utils.read_calib_file(tmp_path / "c.txt")
    assert back["calib_time"] == entries["calib_time"]
    for key in ("R", "T", "delta_f"):
        np.testing.assert_allclose(back[key], np.ravel(entries[key]), rtol=1e-6, atol=1e-12)


def test_bad_calib_line_names_file(tmp_path):
    (tmp_path / "c.txt").write_text("R: 1 2\nno colon here\n")
    with pytest.raises(ValueError, match=r"c.txt:2"):
        kitti_utils.read_calib_file(tmp_path / "c.txt")


def test_velodyne_round_trip(tmp_path):
    points = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    kitti_utils.write_velodyne(tmp_path / "v.bin", points)
    assert (tmp_path / "v.bin").stat().st_size == 50 * 16
    np.testing.assert_array_equal(kitti_utils.read_velodyne(tmp_path / "v.bin"), points)
    (tmp_path / "bad.bin").write_bytes(b"\0" * 20)
    with pytest.raises(ValueError, match="bad.bin"):
        kitti_utils.read_velodyne(tmp_path / "bad.bin")
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        kitti_utils.write_velodyne(tmp_path / "x.bin", points[:, :3])


def _rig(tmp_path, height=20, width=30):
    """A calibration with a tilted rectification and velodyne, written as KITTI text."""
    angle = 0.05
    rect = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    projection = np.array([[25.0, 0, 15, 2.0], [0, 24, 10, 0.5], [0, 0, 1, 0.01]])
    kitti_utils.write_calib_file(tmp_path / kitti_utils.CAM_TO_CAM, {
        "S_rect_02": np.array([width, height]), "R_rect_00": rect, "P_rect_02": projection})
    velo_r = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], float)
    velo_t = np.array([0.1, -0.2, -0.3])
    kitti_utils.write_calib_file(tmp_path / kitti_utils.VELO_TO_CAM, {"R": velo_r, "T": velo_t})
    return projection, rect, velo_r, velo_t, (height, width)


def _brute_force(points, projection, rect, velo_r, velo_t, shape, vel_depth):
    """Per-point loop: project, shift by one pixel, keep the nearest point per pixel."""
    depth = np.zeros(shape)
    for x, y, z, _ in points:
        if x < 0:
            continue
        cam = projection @ np.append(rect @ (velo_r @ np.array([x, y, z]) + velo_t), 1.0)
        if cam[2] <= 0:
            continue
        col, row = int(np.round(cam[0] / cam[2])) - 1, int(np.round(cam[1] / cam[2])) - 1
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            value = x if vel_depth else cam[2]
            depth[row, col] = value if depth[row, col] == 0 else min(depth[row, col], value)
    return depth


@pytest.mark.parametrize("vel_depth", [False, True])
def test_generate_depth_map_matches_brute_force(tmp_path, vel_depth):
    projection, rect, velo_r, velo_t, shape = _rig(tmp_path)
    rng = np.random.default_rng(2)
    points = np.stack([rng.uniform(-2, 30, 3000), rng.uniform(-15, 15, 3000),
                       rng.uniform(-6, 6, 3000), rng.uniform(0, 1, 3000)], 1).astype(np.float32)
    kitti_utils.write_velodyne(tmp_path / "v.bin", points)
    depth = kitti_utils.generate_depth_map(tmp_path, tmp_path / "v.bin", cam=2, vel_depth=vel_depth)
    expected = _brute_force(points.astype(np.float64), projection, rect, velo_r, velo_t, shape,
                            vel_depth)
    assert depth.shape == shape and depth.dtype == np.float32
    assert (expected > 0).sum() > 100  # collisions happen: 3000 points on 600 pixels
    np.testing.assert_allclose(depth, expected, rtol=1e-5)


def test_nearest_point_wins_and_pixel_shift(tmp_path):
    projection, rect, velo_r, velo_t, shape = _rig(tmp_path)
    # camera point on the ray through image position (7, 4), at depths 5 and 3
    rows = []
    for d in (5.0, 3.0):
        rect_point = np.linalg.solve(projection[:, :3], np.array([7 * d, 4 * d, d]) - projection[:, 3])
        velo = velo_r.T @ (rect.T @ rect_point - velo_t)
        rows.append([*velo, 1.0])
    kitti_utils.write_velodyne(tmp_path / "v.bin", np.array(rows))
    depth = kitti_utils.generate_depth_map(tmp_path, tmp_path / "v.bin")
    assert np.count_nonzero(depth) == 1
    assert depth[3, 6] == pytest.approx(3.0, rel=1e-5)  # KITTI's round(.) - 1 convention
