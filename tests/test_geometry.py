"""litemono.geometry against independent numpy / scipy computations."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from litemono.geometry import (backproject, disp_to_depth, pixel_grid, project,
                               transformation_from_parameters, warp)

# KITTI's normalised intrinsics (fx, fy, cx, cy as fractions of width / height)
NORMALISED = (0.58, 1.92, 0.5, 0.5)


def intrinsics(batch, height, width):
    fx, fy, cx, cy = NORMALISED
    K = np.eye(4, dtype=np.float64)
    K[0, 0], K[0, 2] = fx * width, cx * width
    K[1, 1], K[1, 2] = fy * height, cy * height
    K_t = torch.tensor(K, dtype=torch.float32).expand(batch, 4, 4).contiguous()
    inv_t = torch.tensor(np.linalg.inv(K), dtype=torch.float32).expand(batch, 4, 4).contiguous()
    return K, K_t, inv_t


def test_disp_to_depth_range_and_inverse():
    disp = torch.tensor([0.0, 0.25, 1.0]).view(1, 1, 1, 3)
    scaled, depth = disp_to_depth(disp, 0.1, 100.0)
    expected_scaled = 0.01 + (10.0 - 0.01) * np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(scaled.flatten().numpy(), expected_scaled, rtol=1e-6)
    np.testing.assert_allclose(depth.flatten().numpy(), 1 / expected_scaled, rtol=1e-6)
    assert depth.flatten()[0].item() == pytest.approx(100.0)
    assert depth.flatten()[2].item() == pytest.approx(0.1)


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_identity_round_trip_gives_pixel_grid(batch):
    height, width = 6, 10
    _, K, inv_K = intrinsics(batch, height, width)
    depth = torch.rand(batch, 1, height, width) * 50 + 0.5
    sample = project(backproject(depth, inv_K), K, torch.eye(4).expand(batch, 4, 4))
    assert sample.shape == (batch, height, width, 2)
    xs, ys = np.meshgrid(np.linspace(-1, 1, width), np.linspace(-1, 1, height))
    expected = np.broadcast_to(np.stack([xs, ys], axis=-1), (batch, height, width, 2))
    np.testing.assert_allclose(sample.numpy(), expected, atol=1e-5)


def test_backproject_and_project_match_pinhole_model():
    batch, height, width = 3, 5, 7
    K_np, K, inv_K = intrinsics(batch, height, width)
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 20.0, size=(batch, 1, height, width))
    rotvec = rng.normal(scale=0.05, size=(batch, 3))
    shift = rng.normal(scale=0.2, size=(batch, 3))
    T = transformation_from_parameters(torch.tensor(rotvec, dtype=torch.float32).view(batch, 1, 3),
                                       torch.tensor(shift, dtype=torch.float32).view(batch, 1, 3))
    points = backproject(torch.tensor(depth, dtype=torch.float32), inv_K)
    sample = project(points, K, T).numpy()
    fx, fy, cx, cy = K_np[0, 0], K_np[1, 1], K_np[0, 2], K_np[1, 2]
    for b in range(batch):
        R = Rotation.from_rotvec(rotvec[b]).as_matrix()
        for v in range(height):
            for u in range(width):
                z = depth[b, 0, v, u]
                point = np.array([(u - cx) / fx * z, (v - cy) / fy * z, z])
                np.testing.assert_allclose(points[b, :, v, u].numpy(), [*point, 1.0], rtol=1e-5)
                moved = R @ point + shift[b]
                px, py = fx * moved[0] / moved[2] + cx, fy * moved[1] / moved[2] + cy
                expected = [2 * px / (width - 1) - 1, 2 * py / (height - 1) - 1]
                np.testing.assert_allclose(sample[b, v, u], expected, atol=2e-5)


def test_pose_matches_scipy_rotation_and_inverse():
    rng = np.random.default_rng(1)
    rotvec = rng.normal(scale=0.5, size=(4, 3))
    rotvec[0] = 0.0  # zero rotation must give the identity, not NaN
    shift = rng.normal(size=(4, 3))
    axisangle = torch.tensor(rotvec, dtype=torch.float32).view(4, 1, 3)
    translation = torch.tensor(shift, dtype=torch.float32).view(4, 1, 3)
    forward = transformation_from_parameters(axisangle, translation).double().numpy()
    inverse = transformation_from_parameters(axisangle, translation, invert=True).double().numpy()
    for b in range(4):
        expected = np.eye(4)
        expected[:3, :3] = Rotation.from_rotvec(rotvec[b]).as_matrix()
        expected[:3, 3] = shift[b]
        np.testing.assert_allclose(forward[b], expected, atol=1e-6)
        np.testing.assert_allclose(inverse[b], np.linalg.inv(expected), atol=1e-5)


def test_pixel_grid_is_cached_per_size_not_per_batch():
    pixel_grid.cache_clear()
    _, K, inv_K = intrinsics(5, 4, 6)
    backproject(torch.ones(1, 1, 4, 6), inv_K[:1])
    backproject(torch.ones(5, 1, 4, 6), inv_K)
    info = pixel_grid.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    grid = pixel_grid(4, 6, torch.device("cpu"), torch.float32)
    assert grid.shape == (3, 24)
    np.testing.assert_array_equal(grid[:, 7].numpy(), [1.0, 1.0, 1.0])  # u=1, v=1


def test_grid_built_in_inference_mode_still_allows_backward():
    pixel_grid.cache_clear()
    _, K, inv_K = intrinsics(1, 3, 4)
    with torch.inference_mode():
        backproject(torch.ones(1, 1, 3, 4), inv_K)
    depth = torch.ones(1, 1, 3, 4, requires_grad=True)
    backproject(depth, inv_K).sum().backward()
    assert depth.grad is not None


def test_warp_shifts_and_repeats_border():
    image = torch.arange(12, dtype=torch.float32).view(1, 1, 3, 4)
    xs, ys = np.meshgrid(np.linspace(-1, 1, 4), np.linspace(-1, 1, 3))
    step = 2 / 3  # one pixel in normalised x
    grid = torch.tensor(np.stack([xs + step, ys], axis=-1), dtype=torch.float32)[None]
    shifted = warp(image, grid)[0, 0].numpy()
    expected = np.concatenate([image[0, 0, :, 1:].numpy(), image[0, 0, :, 3:].numpy()], axis=1)
    np.testing.assert_allclose(shifted, expected, atol=1e-5)
