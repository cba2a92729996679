"""Pose evaluation: absolute trajectory error (ATE) on short snippets, monodepth2's protocol.

Zhou et al. (CVPR 2017, section 4.3) score KITTI odometry 09 and 10 by the ATE over 5-frame
snippets: chain the 4 motions from the first frame, shift the track onto the gt start, fit one
least-squares scale. monodepth2 (ICCV 2019, table 8) and Lite-Mono report it the same way,
error = sqrt(sum of squared errors) / number of positions. ``T[i]`` (4x4) maps camera ``i`` to
camera ``i + 1`` (``geometry.transformation_from_parameters`` for the pair (i, i+1))."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Tuple, Union

import numpy as np
import torch

from .geometry import transformation_from_parameters

SNIPPET_LENGTH = 5  # frames per snippet, so SNIPPET_LENGTH - 1 relative motions


def read_odometry_poses(path: Union[str, Path]) -> np.ndarray:
    """KITTI odometry gt (a 3x4 camera-to-world matrix per line) -> (N, 4, 4) float64."""
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers per line (a 3x4 pose), got {rows.shape[1]}")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def relative_poses(cam_to_world: np.ndarray) -> np.ndarray:
    """(N, 4, 4) global poses -> (N - 1, 4, 4) motions ``inv(P[i + 1]) @ P[i]`` (camera i -> i +
    1)."""
    return np.linalg.inv(cam_to_world[1:]) @ cam_to_world[:-1]


def snippet_positions(motions: np.ndarray) -> np.ndarray:
    """(K, 4, 4) motions -> (K + 1, 3) positions from the origin, right-multiplied as monodepth2."""
    pose = np.eye(4)
    positions = [pose[:3, 3].copy()]
    for motion in motions:
        pose = pose @ motion
        positions.append(pose[:3, 3].copy())
    return np.stack(positions)


def snippet_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """sqrt(sum ||s * p' - g||^2) / (K + 1) for (K + 1, 3) positions, p' shifted onto the first gt
    position, s the least-squares scale."""
    shifted = pred_xyz + (gt_xyz[0] - pred_xyz[0])
    scale = np.sum(gt_xyz * shifted) / np.sum(shifted ** 2)
    return float(np.sqrt(np.sum((scale * shifted - gt_xyz) ** 2)) / len(gt_xyz))


def evaluate_ate(pred_motions: np.ndarray, gt_motions: np.ndarray,
                 snippet_length: int = SNIPPET_LENGTH) -> Tuple[float, float, np.ndarray]:
    """ATE over every snippet start (motions i .. i + snippet_length - 2, shorter at the end), as
    monodepth2's ``evaluate_pose.py``. Returns (mean, std, (N - 1,) per-snippet ATEs)."""
    if pred_motions.shape != gt_motions.shape:
        raise ValueError(f"{len(pred_motions)} predicted motions for {len(gt_motions)} "
                         "ground-truth ones: the sequence and the poses file do not match")
    steps = snippet_length - 1
    errors = np.array([
        snippet_ate(snippet_positions(gt_motions[i:i + steps]),
                    snippet_positions(pred_motions[i:i + steps]))
        for i in range(len(gt_motions))])
    return float(errors.mean()), float(errors.std()), errors


@torch.no_grad()
def predict_relative_poses(pose_net: torch.nn.Module, loader: Iterable,
                           device: torch.device) -> np.ndarray:
    """Pose network (set to eval; (B, 6, H, W) pair, earlier first) motions over a loader of
    ``("color", 0, 0)`` / ``("color", 1, 0)`` in sequence order -> (N, 4, 4) float64, i -> i + 1."""
    pose_net.eval()
    motions = []
    for batch in loader:
        pair = torch.cat([batch[("color", 0, 0)], batch[("color", 1, 0)]], dim=1).to(device)
        axisangle, translation = pose_net(pair)
        motion = transformation_from_parameters(axisangle[:, 0], translation[:, 0])
        motions.append(motion.double().cpu().numpy())
    return np.concatenate(motions, axis=0)
