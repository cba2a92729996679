"""Pose evaluation: absolute trajectory error (ATE) on short snippets, monodepth2's protocol.

Zhou et al., "Unsupervised Learning of Depth and Ego-Motion from Video" (CVPR 2017, section
4.3) score a monocular pose network on KITTI odometry sequences 09 and 10 by the ATE over
5-frame snippets: chain the 4 relative motions of a snippet from its first frame, shift the
predicted track so it starts where the ground truth starts, fit one scale by least squares,
and take the error. monodepth2 (Godard et al., ICCV 2019, table 8) and Lite-Mono report it the
same way; the numbers below keep its exact definition, including the error being
sqrt(sum of squared errors) / number of positions (not a mean inside the root).

Relative poses follow the training convention: ``T[i]`` (4x4) maps points from camera ``i``
to camera ``i + 1`` (``geometry.transformation_from_parameters`` of the pose network's output
for the pair (i, i+1)).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Tuple, Union

import numpy as np
import torch

from .geometry import transformation_from_parameters

SNIPPET_LENGTH = 5  # frames per snippet, so SNIPPET_LENGTH - 1 relative motions


def read_odometry_poses(path: Union[str, Path]) -> np.ndarray:
    """KITTI odometry ground truth: one camera-to-world 3x4 matrix per line (12 numbers).

    Returns:
        (N, 4, 4) float64 camera-to-world poses.
    """
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    if rows.shape[1] != 12:
        raise ValueError(f"{path}: expected 12 numbers per line (a 3x4 pose), got {rows.shape[1]}")
    poses = np.tile(np.eye(4), (len(rows), 1, 1))
    poses[:, :3, :] = rows.reshape(-1, 3, 4)
    return poses


def relative_poses(cam_to_world: np.ndarray) -> np.ndarray:
    """Motions between consecutive frames in the training convention.

    Args:
        cam_to_world: (N, 4, 4) global poses.

    Returns:
        (N - 1, 4, 4): element i maps points of camera i to camera i + 1, i.e.
        inv(P[i + 1]) @ P[i].
    """
    return np.linalg.inv(cam_to_world[1:]) @ cam_to_world[:-1]


def snippet_positions(motions: np.ndarray) -> np.ndarray:
    """Camera positions along a snippet, with the first camera at the origin.

    Args:
        motions: (K, 4, 4) relative poses, element k maps camera k to camera k + 1.

    Returns:
        (K + 1, 3) positions, accumulated as monodepth2 does (right-multiplying the motions).
    """
    pose = np.eye(4)
    positions = [pose[:3, 3].copy()]
    for motion in motions:
        pose = pose @ motion
        positions.append(pose[:3, 3].copy())
    return np.stack(positions)


def snippet_ate(gt_xyz: np.ndarray, pred_xyz: np.ndarray) -> float:
    """Scale-aligned trajectory error of one snippet.

    Args:
        gt_xyz, pred_xyz: (K + 1, 3) positions (metres / unknown scale).

    Returns:
        sqrt(sum ||s * p' - g||^2) / (K + 1), with p' the prediction shifted onto the first
        ground-truth position and s the least-squares scale.
    """
    shifted = pred_xyz + (gt_xyz[0] - pred_xyz[0])
    scale = np.sum(gt_xyz * shifted) / np.sum(shifted ** 2)
    return float(np.sqrt(np.sum((scale * shifted - gt_xyz) ** 2)) / len(gt_xyz))


def evaluate_ate(pred_motions: np.ndarray, gt_motions: np.ndarray,
                 snippet_length: int = SNIPPET_LENGTH) -> Tuple[float, float, np.ndarray]:
    """ATE over every snippet start, as monodepth2's ``evaluate_pose.py``.

    A snippet starts at each motion index i and holds motions i .. i + snippet_length - 2;
    the last few are shorter (the sequence end), exactly as upstream.

    Args:
        pred_motions, gt_motions: (N - 1, 4, 4) relative poses (see :func:`relative_poses`).
        snippet_length: frames per snippet.

    Returns:
        (mean ATE, std of the ATEs, (N - 1,) per-snippet ATEs).
    """
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
    """Pose network motions for consecutive frame pairs.

    Args:
        pose_net: maps a (B, 6, H, W) pair (earlier frame first) to (axisangle, translation),
            each (B, 2, 1, 3); put in eval mode here.
        loader: yields sample dicts with ``("color", 0, 0)`` and ``("color", 1, 0)``
            (B, 3, H, W) in [0, 1], in sequence order.
        device: where to run the network.

    Returns:
        (N, 4, 4) float64 motions, element i maps camera i to camera i + 1.
    """
    pose_net.eval()
    motions = []
    for batch in loader:
        pair = torch.cat([batch[("color", 0, 0)], batch[("color", 1, 0)]], dim=1).to(device)
        axisangle, translation = pose_net(pair)
        motion = transformation_from_parameters(axisangle[:, 0], translation[:, 0])
        motions.append(motion.double().cpu().numpy())
    return np.concatenate(motions, axis=0)
