"""KITTI raw calibration files, velodyne scans and projected ground-truth depth.

KITTI raw formats (Geiger et al., IJRR 2013): ``calib_cam_to_cam.txt`` (``S_rect_0c``,
``R_rect_00``, ``P_rect_0c``: rectified camera 0 -> camera c), ``calib_velo_to_cam.txt`` (``R``,
``T``: velodyne -> camera 0), lines ``key: v1 v2 ...``; a ``.bin`` scan is float32 ``x y z
reflectance`` rows (metres, x forward, y left, z up). :func:`generate_depth_map` is monodepth2's
``export_gt_depth.py`` projection (upstream.md section 10): nearest point wins; ``vel_depth``
stores velodyne forward distance instead of z-depth."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import numpy as np

from ..io import write_bytes, write_text

PathLike = Union[str, os.PathLike]
CalibValue = Union[np.ndarray, str]

CAM_TO_CAM = "calib_cam_to_cam.txt"
VELO_TO_CAM = "calib_velo_to_cam.txt"
IMU_TO_VELO = "calib_imu_to_velo.txt"
VELODYNE_COLUMNS = 4  # x, y, z, reflectance


def read_calib_file(path: PathLike) -> Dict[str, CalibValue]:
    """``calib_*.txt`` -> key: float64 1-D array, or stripped text for non-numeric lines
    (``calib_time``)."""
    entries: Dict[str, CalibValue] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"{path}:{number}: expected 'key: values', got {line!r}")
        value = value.strip()
        try:
            entries[key.strip()] = np.array([float(v) for v in value.split()], dtype=np.float64)
        except ValueError:
            entries[key.strip()] = value
    return entries


def format_calib(entries: Mapping[str, CalibValue]) -> str:
    """Render calibration entries as KITTI text (numbers as ``%e``, single spaces)."""
    lines = []
    for key, value in entries.items():
        if not isinstance(value, str):
            value = " ".join(f"{v:e}" for v in np.asarray(value, dtype=np.float64).ravel())
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def write_calib_file(path: PathLike, entries: Mapping[str, CalibValue]) -> None:
    """Write ``entries`` atomically in KITTI's calibration text format."""
    write_text(path, format_calib(entries))


def read_velodyne(path: PathLike) -> np.ndarray:
    """Velodyne scan -> (N, 4) float32: x, y, z in metres (velodyne frame), reflectance."""
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % VELODYNE_COLUMNS:
        raise ValueError(f"{path}: {raw.size} floats is not a whole number of x,y,z,r points")
    return raw.reshape(-1, VELODYNE_COLUMNS)


def write_velodyne(path: PathLike, points: np.ndarray) -> None:
    """Write (N, 4) x, y, z, reflectance points as a float32 ``.bin``, atomically."""
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != VELODYNE_COLUMNS:
        raise ValueError(f"velodyne points must be (N, 4), got {points.shape} for {path}")
    write_bytes(path, np.ascontiguousarray(points).tobytes())


def velo_to_cam_matrix(calib_dir: PathLike) -> np.ndarray:
    """(4, 4) rigid transform from velodyne to unrectified camera-0 coordinates."""
    velo = read_calib_file(Path(calib_dir) / VELO_TO_CAM)
    transform = np.eye(4)
    transform[:3, :3] = velo["R"].reshape(3, 3)
    transform[:3, 3] = velo["T"]
    return transform


def velo_to_image_matrix(calib_dir: PathLike, cam: int = 2) -> Tuple[np.ndarray, Tuple[int, int]]:
    """(3, 4) P with ``P @ [x, y, z, 1]`` = (u * d, v * d, d) into rectified camera ``cam``, and the
    native ``(height, width)`` (``S_rect_0<cam>``)."""
    cam2cam = read_calib_file(Path(calib_dir) / CAM_TO_CAM)
    rectify = np.eye(4)
    rectify[:3, :3] = cam2cam["R_rect_00"].reshape(3, 3)
    projection = cam2cam[f"P_rect_0{cam}"].reshape(3, 4)
    width, height = (int(round(v)) for v in cam2cam[f"S_rect_0{cam}"])
    return projection @ rectify @ velo_to_cam_matrix(calib_dir), (height, width)


def generate_depth_map(calib_dir: PathLike, velo_path: PathLike, cam: int = 2,
                       vel_depth: bool = False) -> np.ndarray:
    """Velodyne scan -> (H, W) float32 sparse depth in metres for camera ``cam`` (2 / 3), 0 = none.

    As monodepth2: x < 0 and non-positive projective depth dropped, (u, v) lands in pixel
    ``(round(v) - 1, round(u) - 1)`` (KITTI's MATLAB shift, kept to match the published gt), nearest
    point wins; ``vel_depth=True`` (``export_gt_depth.py``) stores velodyne x instead of z-depth."""
    projection, (height, width) = velo_to_image_matrix(calib_dir, cam)
    points = read_velodyne(velo_path).astype(np.float64)
    points = points[points[:, 0] >= 0]
    homogeneous = np.concatenate([points[:, :3], np.ones((len(points), 1))], axis=1)
    image = homogeneous @ projection.T  # (N, 3): u*d, v*d, d
    keep = image[:, 2] > 0
    image, points = image[keep], points[keep]
    col = np.round(image[:, 0] / image[:, 2]).astype(np.int64) - 1
    row = np.round(image[:, 1] / image[:, 2]).astype(np.int64) - 1
    depth = points[:, 0] if vel_depth else image[:, 2]
    inside = (col >= 0) & (row >= 0) & (col < width) & (row < height)
    nearest = np.full(height * width, np.inf)
    np.minimum.at(nearest, row[inside] * width + col[inside], depth[inside])
    nearest[~np.isfinite(nearest) | (nearest < 0)] = 0.0
    return nearest.reshape(height, width).astype(np.float32)
