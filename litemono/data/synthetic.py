"""A synthetic KITTI raw recording with known depth, in KITTI raw's exact on-disk layout::

    <root>/<date>/calib_{cam_to_cam,velo_to_cam,imu_to_velo}.txt
    <root>/<date>/<date>_drive_<NNNN>_sync/image_0{2,3}/{data/*.jpg,true_depth/*.npy}
    <root>/<date>/<date>_drive_<NNNN>_sync/{velodyne_points/data/*.bin,poses.txt}
    <root>/splits/synthetic/{train,val,test}_files.txt and <root>/manifest.json (written last)

Renders :mod:`litemono.data.synthetic_world`; files ``<frame:010d>``. ``true_depth``: float32
z-depth in metres, 0 = sky; ``poses.txt``: row-major 3x4 camera-2-to-world relative to frame 0
(KITTI odometry). Velodyne points are true-depth pixels, so ``generate_depth_map`` returns the
true depth (one pixel up-left, KITTI's quirk). Atomic writes; a manifest means complete; a rerun
renders only missing or invalid frames."""
from __future__ import annotations

import io
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from .. import io as atomic
from . import kitti_utils
from .synthetic_world import (KITTI_STEREO_BASELINE, build_world, intrinsics, render_view,
                              texture_atlas)

# 2: road texture with a 1/f component and filtered along the footprint's long axis; the
# two cars that ride with the camera 20-30 m ahead instead of 6-14 m (images differ from 1)
FORMAT_VERSION = 2
SYNTHETIC_DATE = "2000_01_01"  # clearly not a real KITTI recording day
MANIFEST, PENDING = "manifest.json", ".synthetic_pending.json"
SPLIT_FOLDER = Path("splits") / "synthetic"
JPEG_QUALITY = 92  # monodepth2's PNG -> JPEG conversion (mogrify -quality 92, 4:2:0 chroma)
LIDAR_RANGE = 120.0  # metres, an HDL-64E's reach
CAMERA_X_IN_RECT0 = {0: 0.0, 1: KITTI_STEREO_BASELINE, 2: -0.06, 3: KITTI_STEREO_BASELINE - 0.06}
VELO_TO_CAM_T = (-0.004, -0.076, -0.272)  # metres, close to KITTI's 2011_09_26 rig
SIDES = {"l": 2, "r": 3}


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """(3, 3) rotation Rz @ Ry @ Rx for small angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
            @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))


# A slightly tilted rig, so that calibration must be composed correctly to reproject the points.
RECTIFY = _rotation(0.004, -0.009, 0.0015)
VELO_TO_CAM_R = _rotation(-0.006, 0.003, 0.002) @ np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]])


@dataclass(frozen=True)
class SceneInfo:
    """Where a synthetic scene lies and how it was made; ``drives`` are ``<date>/<drive>_sync``."""

    root: Path
    split_dir: Path
    height: int
    width: int
    drives: List[str]
    frames_per_drive: int
    seed: int
    png: bool = False
    stereo: bool = True
    settings: Dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def calib_dir(self) -> Path:
        return self.root / SYNTHETIC_DATE

    def image_path(self, drive: str, frame: int, side: str = "l") -> Path:
        ext = "png" if self.png else "jpg"
        return self.root / drive / f"image_0{SIDES[side]}" / "data" / f"{frame:010d}.{ext}"

    def true_depth_path(self, drive: str, frame: int, side: str = "l") -> Path:
        return self.root / drive / f"image_0{SIDES[side]}" / "true_depth" / f"{frame:010d}.npy"

    def velodyne_path(self, drive: str, frame: int) -> Path:
        return self.root / drive / "velodyne_points" / "data" / f"{frame:010d}.bin"

    def poses_path(self, drive: str) -> Path:
        return self.root / drive / "poses.txt"


def write_calibration(date_dir: Path, height: int, width: int) -> None:
    """Write the three KITTI calibration files of a rig with KITTI's normalised intrinsics."""
    fx, fy, cx, cy = intrinsics(height, width)
    camera = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    cam_to_cam = {"calib_time": "01-Jan-2000 00:00:00", "corner_dist": np.array([0.0995])}
    for cam, centre_x in CAMERA_X_IN_RECT0.items():
        projection = np.concatenate([camera, [[-fx * centre_x], [0], [0]]], axis=1)
        cam_to_cam.update({
            f"S_0{cam}": np.array([width, height]), f"K_0{cam}": camera, f"D_0{cam}": np.zeros(5),
            f"R_0{cam}": np.eye(3), f"T_0{cam}": np.array([-centre_x, 0.0, 0.0]),
            f"S_rect_0{cam}": np.array([width, height]), f"R_rect_0{cam}": RECTIFY,
            f"P_rect_0{cam}": projection})
    velo = {"calib_time": "01-Jan-2000 00:00:00", "R": VELO_TO_CAM_R, "T": np.array(VELO_TO_CAM_T),
            "delta_f": np.zeros(2), "delta_c": np.zeros(2)}
    imu = {"calib_time": "01-Jan-2000 00:00:00", "R": np.eye(3), "T": np.array([-0.81, 0.32, -0.8])}
    for name, entries in ((kitti_utils.CAM_TO_CAM, cam_to_cam), (kitti_utils.VELO_TO_CAM, velo),
                          (kitti_utils.IMU_TO_VELO, imu)):
        kitti_utils.write_calib_file(date_dir / name, entries)


def camera2_to_velodyne(points: np.ndarray) -> np.ndarray:
    """(N, 3) rectified camera-2 coordinates -> (N, 3) velodyne coordinates (metres)."""
    rect0 = points + np.array([CAMERA_X_IN_RECT0[2], 0.0, 0.0])
    cam0 = rect0 @ RECTIFY  # R_rect^T applied to row vectors
    return (cam0 - np.array(VELO_TO_CAM_T)) @ VELO_TO_CAM_R


def sample_lidar(depth: np.ndarray, rgb: np.ndarray, fraction: float,
                 rng: np.random.Generator) -> np.ndarray:
    """(N, 4) float32 velodyne points (metres, reflectance from ``rgb`` in [0, 1]) at random pixel
    centres of (H, W) depth (0 = sky), ``fraction`` per pixel."""
    height, width = depth.shape
    fx, fy, cx, cy = intrinsics(height, width)
    rows, cols = np.nonzero((depth > 0) & (depth < LIDAR_RANGE))
    keep = np.sort(rng.choice(len(rows), min(len(rows), round(fraction * height * width)), replace=False))
    rows, cols = rows[keep], cols[keep]
    z = depth[rows, cols].astype(np.float64)
    camera = np.stack([(cols - cx) / fx * z, (rows - cy) / fy * z, z], axis=1)
    reflectance = rgb[rows, cols].mean(axis=1) / 255.0
    return np.concatenate([camera2_to_velodyne(camera), reflectance[:, None]], axis=1).astype(np.float32)


def _is_valid(path: Path, height: int, width: int) -> bool:
    """Whether ``path`` is a complete output of the expected size (cheap header checks)."""
    try:
        if path.stat().st_size == 0:
            return False
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r").shape == (height, width)
        if path.suffix == ".bin":
            return path.stat().st_size % (4 * kitti_utils.VELODYNE_COLUMNS) == 0
        with Image.open(path) as image:
            return image.size == (width, height)
    except (OSError, ValueError):
        return False


def _encode(rgb: np.ndarray, png: bool) -> bytes:
    buffer = io.BytesIO()
    if png:
        Image.fromarray(rgb).save(buffer, format="PNG")
    else:
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0")
    return buffer.getvalue()


@lru_cache(maxsize=8)
def _world(seed: int, drive: int, frames: int):
    return build_world(seed, drive, frames)


def _render_frame(task: Tuple[SceneInfo, int, int, List[Path]]) -> None:
    """Render one frame and write those of its files listed as missing."""
    info, drive_index, frame, missing = task
    world = _world(info.seed, drive_index, info.frames_per_drive)
    supersample, fraction = info.settings["supersample"], info.settings["lidar_fraction"]
    drive = info.drives[drive_index]
    for side in ("l", "r") if info.stereo else ("l",):
        rgb, depth = render_view(world, frame, SIDES[side], info.height, info.width, supersample)
        if info.image_path(drive, frame, side) in missing:
            atomic.write_bytes(info.image_path(drive, frame, side), _encode(rgb, info.png))
        if info.true_depth_path(drive, frame, side) in missing:
            atomic.save_npy(info.true_depth_path(drive, frame, side), depth)
        if side == "l" and info.velodyne_path(drive, frame) in missing:
            rng = np.random.default_rng([info.seed, drive_index, frame])
            kitti_utils.write_velodyne(info.velodyne_path(drive, frame),
                                       sample_lidar(depth, rgb, fraction, rng))


def _frame_files(info: SceneInfo, drive: str, frame: int) -> List[Path]:
    sides = ("l", "r") if info.stereo else ("l",)
    return ([info.image_path(drive, frame, s) for s in sides]
            + [info.true_depth_path(drive, frame, s) for s in sides]
            + [info.velodyne_path(drive, frame)])


def _write_poses(info: SceneInfo, drive_index: int) -> None:
    world = _world(info.seed, drive_index, info.frames_per_drive)
    first_inverse = np.linalg.inv(world.camera_to_world(0))
    rows = [(first_inverse @ world.camera_to_world(f))[:3].ravel()
            for f in range(info.frames_per_drive)]
    atomic.write_text(info.poses_path(info.drives[drive_index]),
                      "".join(" ".join(f"{v:.9e}" for v in row) + "\n" for row in rows))


def split_lines(info: SceneInfo) -> Dict[str, List[str]]:
    """Per drive 70% train, 10% val, 20% test. Train / val: frames 1 .. N-2, both cameras with
    stereo, shuffled (as eigen_zhou); test: camera 2, zero-padded (as eigen's test file)."""
    lines: Dict[str, List[str]] = {"train": [], "val": [], "test": []}
    sides = ("l", "r") if info.stereo else ("l",)
    count = info.frames_per_drive
    n_test, n_val = max(1, round(0.2 * count)), max(1, round(0.1 * count))
    for drive in info.drives:
        first_val, first_test = count - n_test - n_val, count - n_test
        lines["train"] += [f"{drive} {f} {s}" for f in range(1, first_val) for s in sides]
        lines["val"] += [f"{drive} {f} {s}" for f in range(first_val, first_test) for s in sides]
        lines["test"] += [f"{drive} {f:010d} l" for f in range(first_test, count)]
    rng = np.random.default_rng([info.seed, 1])
    for name in ("train", "val"):
        lines[name] = [lines[name][i] for i in rng.permutation(len(lines[name]))]
    return lines


def make_synthetic_kitti(root, *, drives: int = 2, frames_per_drive: int = 150, height: int = 188,
                         width: int = 621, seed: int = 0, png: bool = False, stereo: bool = True,
                         supersample: int = 1, lidar_fraction: float = 0.06,
                         workers: Optional[int] = None) -> SceneInfo:
    """Render (or complete) a synthetic KITTI raw scene in ``root``; returns its :class:`SceneInfo`.

    Everything follows from ``seed``; K is KITTI's normalised K at ``height`` x ``width``; ``png``:
    instead of ``.jpg`` (quality 92); ``stereo``: camera 3, 0.54 m right; ``supersample``: samples
    per pixel and axis; ``lidar_fraction``: points per pixel (KITTI ~5%); ``workers``: default up to
    2."""
    if frames_per_drive < 5 or drives < 1:
        raise ValueError(f"--frames_per_drive must be >= 5 and --drives >= 1, got "
                         f"{frames_per_drive} and {drives}")
    if min(height, width) < 16 or supersample < 1 or not 0 < lidar_fraction <= 1:
        raise ValueError(f"bad --height/--width/--supersample/--lidar_fraction: {height}, {width}, "
                         f"{supersample}, {lidar_fraction}")
    root = Path(root)
    settings = dict(format="litemono-synthetic-kitti", version=FORMAT_VERSION, drives=drives,
                    frames_per_drive=frames_per_drive, height=height, width=width, seed=seed,
                    png=png, stereo=stereo, supersample=supersample, lidar_fraction=lidar_fraction)
    names = [f"{SYNTHETIC_DATE}/{SYNTHETIC_DATE}_drive_{d + 1:04d}_sync" for d in range(drives)]
    info = SceneInfo(root, root / SPLIT_FOLDER, height, width, names, frames_per_drive, seed, png,
                     stereo, settings)
    for marker in (root / MANIFEST, root / PENDING):
        found = json.loads(marker.read_text()).get("settings") if marker.is_file() else settings
        if found != settings:
            differ = sorted(k for k in set(settings) | set(found or {})
                            if (found or {}).get(k) != settings.get(k))
            raise ValueError(f"{root} already holds a synthetic scene made with other settings "
                             f"({marker.name}: {', '.join(differ)} differ; 'version' = made by "
                             f"another renderer version); delete it or choose another root")
    if (root / MANIFEST).is_file():
        return info
    # temporaries of an earlier, killed render of this scene (one render per root at a time)
    folders = {root, info.split_dir, *(p.parent for d in names
                                       for p in _frame_files(info, d, 0))}
    for folder in folders:
        atomic.remove_leftovers(folder)
    atomic.write_json(root / PENDING, {"settings": settings})
    write_calibration(info.calib_dir, height, width)
    tasks = []
    for d, drive in enumerate(names):
        _write_poses(info, d)
        for frame in range(frames_per_drive):
            missing = [p for p in _frame_files(info, drive, frame) if not _is_valid(p, height, width)]
            if missing:
                tasks.append((info, d, frame, missing))
    _run(tasks, workers)
    for name, lines in split_lines(info).items():
        atomic.write_text(info.split_dir / f"{name}_files.txt", "\n".join(lines) + "\n")
    counts = {name: len(lines) for name, lines in split_lines(info).items()}
    atomic.write_json(root / MANIFEST, {"settings": settings, "drives": names, "split_lines": counts,
                                        "true_depth": "float32 z-depth in metres, 0 = sky"})
    (root / PENDING).unlink()
    return info


def _run(tasks: list, workers: Optional[int]) -> None:
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    if workers <= 1 or len(tasks) < 4:
        for task in tasks:
            _render_frame(task)
        return
    texture_atlas()  # loaded once here; the forked workers inherit it
    context = multiprocessing.get_context("fork" if os.name == "posix" else None)
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        list(pool.map(_render_frame, tasks, chunksize=max(1, len(tasks) // (4 * workers))))


def load_scene(root) -> SceneInfo:
    """The :class:`SceneInfo` of a complete scene (reads ``manifest.json``)."""
    manifest_path = Path(root) / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: not a complete synthetic scene "
                                "(run scripts/make_synthetic_kitti.py)")
    s = json.loads(manifest_path.read_text())["settings"]
    keys = ("drives", "frames_per_drive", "height", "width", "seed", "png", "stereo",
            "supersample", "lidar_fraction")
    return make_synthetic_kitti(root, **{k: s[k] for k in keys}, workers=1)
