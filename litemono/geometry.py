"""Camera geometry for view synthesis: disparity <-> depth, relative poses, reprojection, warping.

monodepth2's image formation (ICCV 2019, section 3), as Lite-Mono trains with (CVPR 2023,
section 3.3): a target pixel is lifted to 3-D with its depth and ``inv_K``, moved by ``T``,
projected with ``K``, and the source image sampled bilinearly there. The pixel grid is cached
per ``(height, width, device, dtype)`` and broadcast over the batch, so a smaller last batch
needs no special case (upstream bakes the batch size into its grids)."""
from __future__ import annotations

import functools
from typing import Tuple

import torch
import torch.nn.functional as F

# Guards the division by the axis-angle norm (a zero rotation gives the identity).
ANGLE_EPS = 1e-7
# Guards the perspective division for points on the camera plane.
PROJECTION_EPS = 1e-7


def disp_to_depth(disp: torch.Tensor, min_depth: float, max_depth: float
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid disparity (B, 1, H, W) in [0, 1] -> ``(scaled_disp, depth = 1 / scaled_disp)``,
    scaled_disp in ``[1/max_depth, 1/min_depth]`` (``disp == 1`` is ``min_depth``)."""
    near_disp, far_disp = 1.0 / min_depth, 1.0 / max_depth
    scaled_disp = far_disp + (near_disp - far_disp) * disp
    return scaled_disp, 1.0 / scaled_disp


def _axis_angle_to_matrix(axisangle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula. ``axisangle``: (B, 3), angle = its L2 norm (radians). Returns (B, 3, 3)."""
    angle = axisangle.norm(p=2, dim=1, keepdim=True)  # (B, 1)
    axis = axisangle / (angle + ANGLE_EPS)  # (B, 3), unit (or zero)
    cos, sin = torch.cos(angle)[..., None], torch.sin(angle)[..., None]  # (B, 1, 1)
    ax, ay, az = axis.unbind(dim=1)
    zero = torch.zeros_like(ax)
    # [axis]_x: the cross-product matrix, rows stacked then reshaped to (B, 3, 3)
    cross = torch.stack([zero, -az, ay, az, zero, -ax, -ay, ax, zero], dim=1).view(-1, 3, 3)
    outer = axis[:, :, None] * axis[:, None, :]  # (B, 3, 3)
    eye = torch.eye(3, dtype=axisangle.dtype, device=axisangle.device)
    return cos * eye + sin * cross + (1.0 - cos) * outer


def transformation_from_parameters(axisangle: torch.Tensor, translation: torch.Tensor,
                                   invert: bool = False) -> torch.Tensor:
    """(B, 1, 3) axis-angle (radians) and translation -> (B, 4, 4) ``[R | t]``, or with ``invert``
    ``[R^T | -R^T t]`` (used for a source frame before the target: pairs are in temporal order)."""
    batch = axisangle.shape[0]
    rotation = _axis_angle_to_matrix(axisangle.reshape(batch, 3))
    shift = translation.reshape(batch, 3, 1)
    if invert:
        rotation = rotation.transpose(1, 2)
        shift = -rotation @ shift
    top = torch.cat([rotation, shift], dim=2)  # (B, 3, 4)
    bottom = torch.zeros(batch, 1, 4, dtype=top.dtype, device=top.device)
    bottom[:, :, 3] = 1.0
    return torch.cat([top, bottom], dim=1)


def make_pixel_grid(height: int, width: int, device: torch.device,
                    dtype: torch.dtype) -> torch.Tensor:
    """(3, height * width) homogeneous ``(u, v, 1)``, row-major, u = column, v = row (centres at
    integers)."""
    rows, cols = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                                torch.arange(width, dtype=dtype, device=device), indexing="ij")
    return torch.stack([cols.reshape(-1), rows.reshape(-1), torch.ones_like(cols).reshape(-1)])


@functools.lru_cache(maxsize=32)
def pixel_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`make_pixel_grid`, cached per ``(height, width, device, dtype)``; the result is
    shared, so never modify it."""
    # a normal tensor even when first built under torch.inference_mode(): an inference tensor
    # in the cache would break every later backward pass through backproject()
    with torch.inference_mode(False):
        return make_pixel_grid(height, width, device, dtype)


def backproject(depth: torch.Tensor, inv_K: torch.Tensor) -> torch.Tensor:
    """Depth (B, 1, H, W) and ``inv_K`` (B, 4, 4) at its resolution -> (B, 4, H, W) ``(X, Y, Z,
    1)``."""
    batch, _, height, width = depth.shape
    # a compiled step builds the grid inside its graph (torch.compile bypasses an lru_cache)
    grid_of = make_pixel_grid if torch.compiler.is_compiling() else pixel_grid
    grid = grid_of(height, width, depth.device, depth.dtype)
    rays = inv_K[:, :3, :3] @ grid  # (B, 3, H*W), rays with z = 1
    points = rays * depth.reshape(batch, 1, -1)
    ones = torch.ones_like(points[:, :1])
    return torch.cat([points, ones], dim=1).view(batch, 4, height, width)


def project(points: torch.Tensor, K: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """Points (B, 4, H, W) -> (B, H, W, 2) ``grid_sample`` coordinates in the camera of ``K`` (B, 4,
    4) via ``T`` (B, 4, 4); -1 and 1 are the first / last pixel centres (``align_corners=True``)."""
    batch, _, height, width = points.shape
    camera = (K @ T)[:, :3, :] @ points.reshape(batch, 4, -1)  # (B, 3, H*W)
    pixels = camera[:, :2] / (camera[:, 2:3] + PROJECTION_EPS)  # (B, 2, H*W)
    pixels = pixels.view(batch, 2, height, width).permute(0, 2, 3, 1)
    extent = torch.tensor([width - 1, height - 1], dtype=pixels.dtype, device=pixels.device)
    return (pixels / extent - 0.5) * 2


def warp(image: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
    """Sample ``image`` (B, C, h, w) bilinearly at ``sample`` (B, H, W, 2), edges repeated: (B, C,
    H, W)."""
    return F.grid_sample(image, sample, mode="bilinear", padding_mode="border",
                         align_corners=True)
