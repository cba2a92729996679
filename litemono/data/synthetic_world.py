"""A small textured driving world with known depth, ray cast with vectorised numpy.

A KITTI raw stand-in: road, pavements, grass, buildings, poles, parked boxes, a closing wall,
sky at infinity, and two cars moving with the camera (the case of monodepth2's automasking,
ICCV 2019, section 3.3). World frame: rectified camera 2 of the car at the road start (x right,
y down, z forward, metres), ground ``y = CAMERA_HEIGHT``; "rig" frame: camera 2 of the current
frame, camera 3 ``KITTI_STEREO_BASELINE`` to its right. Rays have camera-z 1, so the ray
parameter is z-depth. Textures are sampled with trilinear mip-mapping."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Tuple

import numpy as np

CAMERA_HEIGHT = 1.65  # metres, KITTI's colour cameras above the road
KITTI_STEREO_BASELINE = 0.54  # metres, camera 2 -> camera 3
STEP_METRES = 0.8  # forward motion per frame (about 8 m/s at KITTI's 10 Hz)
LANE_CENTRE = 1.8  # the car drives in the right-hand lane
ROAD_HALF_WIDTH, KERB = 4.0, 6.0  # asphalt |x| < 4, pavement |x| < 6, grass beyond
LEAD_CAR_DISTANCE = 20.0  # metres from camera 2 to the rear of the car ahead (rides along)
TEXTURE_SIZE = 512
NEAR = 1e-3

# material id: (texture name, texels per metre, RGB tint); box tints are drawn per box
ASPHALT, MARKING, PAVEMENT, GRASS, BRICK, PLASTER, METAL = range(7)
MATERIALS = (("gravel", 200.0, (0.55, 0.55, 0.58)), ("gravel", 200.0, (1.0, 1.0, 0.95)),
             ("tiles", 256.0, (0.85, 0.8, 0.72)), ("grass", 160.0, (0.45, 0.75, 0.3)),
             ("brick", 170.0, (1.0, 1.0, 1.0)), ("plaster", 128.0, (1.0, 1.0, 1.0)),
             ("metal", 256.0, (1.0, 1.0, 1.0)))
FACE_SHADE = np.array([0.8, 1.0, 0.62], np.float32)  # lighting of faces whose normal is x, y, z


def _spectral_noise(rng: np.random.Generator, slope: float) -> np.ndarray:
    """Tileable (TEXTURE_SIZE, TEXTURE_SIZE) noise with a 1/f^slope spectrum, mean 0, std 1."""
    freq = np.fft.fftfreq(TEXTURE_SIZE)
    radius = np.hypot(freq[:, None], freq[None, :])
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((TEXTURE_SIZE, TEXTURE_SIZE))) / radius ** slope
    noise = np.fft.ifft2(spectrum).real
    return (noise - noise.mean()) / noise.std()


def _normalise(gray: np.ndarray, contrast: float = 0.22) -> np.ndarray:
    gray = gray.astype(np.float64)
    return np.clip(0.5 + contrast * (gray - gray.mean()) / gray.std(), 0.02, 1.0)


@functools.lru_cache(maxsize=1)
def texture_atlas() -> Tuple[np.ndarray, np.ndarray, dict]:
    """All mip pyramids in one float32 array: ``flat`` (gray in [0, 1]), ``offsets``
    (n_textures, n_levels) int64 level starts, ``index`` (name -> row)."""
    import skimage.data

    rng = np.random.default_rng(20230601)  # fixed: textures do not depend on the scene seed
    grid = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE))
    grid[:, :6] = grid[:6, :] = -2.5  # pavement joints every 2 m at 256 texels/m
    # the asphalt photo's stones are finer than a pixel beyond a few metres, so it gets a 1/f
    # component (contrast at every scale) that keeps the road textured at training sizes
    gravel = _normalise(skimage.data.gravel(), 1.0) - 0.5
    images = {"gravel": _normalise(gravel + 0.8 * _spectral_noise(rng, 1.0), 0.25),
              "grass": _normalise(skimage.data.grass()), "brick": _normalise(skimage.data.brick()),
              "tiles": _normalise(_spectral_noise(rng, 1.2) + grid, 0.12),
              "plaster": _normalise(_spectral_noise(rng, 1.4), 0.12),
              "metal": _normalise(_spectral_noise(rng, 0.9), 0.1)}
    levels = int(np.log2(TEXTURE_SIZE)) + 1
    chunks, offsets, start = [], np.zeros((len(images), levels), np.int64), 0
    for row, image in enumerate(images.values()):
        level = image
        for k in range(levels):
            offsets[row, k] = start
            chunks.append(level.astype(np.float32).ravel())
            start += level.size
            if level.shape[0] > 1:  # 2x2 box filter to the next level
                level = level.reshape(level.shape[0] // 2, 2, -1, 2).mean(axis=(1, 3))
    return np.concatenate(chunks), offsets, {name: i for i, name in enumerate(images)}


@dataclass(frozen=True)
class World:
    """One drive's static layout, the camera path and the boxes that move with the camera.

    ``boxes_lo/hi``: (N, 3) world axis-aligned boxes; ``rig_lo/hi``: (M, 3) boxes in the rig
    frame; ``material``/``tint``: per object, index 0 = ground, then world boxes, then rig boxes.
    ``path``: (F, 3) camera-2 centre per frame (world); ``yaw``: (F,) radians, positive = right.
    """

    boxes_lo: np.ndarray
    boxes_hi: np.ndarray
    rig_lo: np.ndarray
    rig_hi: np.ndarray
    material: np.ndarray
    tint: np.ndarray
    path: np.ndarray
    yaw: np.ndarray

    def camera_to_world(self, frame: int) -> np.ndarray:
        """(4, 4) rectified camera-2 -> world transform of ``frame``."""
        c, s = np.cos(self.yaw[frame]), np.sin(self.yaw[frame])
        pose = np.eye(4)
        pose[:3, :3] = [[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]
        pose[:3, 3] = self.path[frame]
        return pose


def build_world(seed: int, drive: int, frames: int) -> World:
    """Draw the layout of drive ``drive`` (deterministic in ``seed`` and ``drive``)."""
    rng = np.random.default_rng([seed, drive])
    z = STEP_METRES * np.arange(frames) * rng.uniform(0.85, 1.15)
    amplitude, wavelength, phase = rng.uniform(0.6, 1.2), rng.uniform(45, 80), rng.uniform(0, 6.3)
    angle = 2 * np.pi * z / wavelength + phase
    path = np.stack([LANE_CENTRE + amplitude * np.sin(angle), np.zeros(frames), z], axis=1)
    yaw = np.arctan(amplitude * 2 * np.pi / wavelength * np.cos(angle))
    end = z[-1] + rng.uniform(60, 90)
    lo, hi, material, tint = [], [], [], []

    def add(box_lo, box_hi, mat, colour):
        lo.append(box_lo), hi.append(box_hi), material.append(mat), tint.append(colour)

    ground = CAMERA_HEIGHT
    for side in (-1.0, 1.0):
        start = -30.0
        while start < end:  # building blocks, some with an alley after them
            length, setback = rng.uniform(8, 25), rng.uniform(6.5, 11)
            height, x_far = rng.uniform(5, 13), setback + 8
            xs = sorted((side * setback, side * x_far))
            add((xs[0], ground - height, start), (xs[1], ground, start + length),
                BRICK if rng.random() < 0.5 else PLASTER, rng.uniform(0.55, 1.0, 3))
            start += length + (rng.uniform(3, 8) if rng.random() < 0.3 else 0.0)
        for pole_z in np.cumsum(rng.uniform(10, 20, int(end // 10) + 4)) - 20:  # poles
            x = side * rng.uniform(4.6, 5.2)
            add((x - 0.1, ground - 4.5, pole_z - 0.1), (x + 0.1, ground, pole_z + 0.1), METAL,
                np.full(3, 0.6))
        for box_z in np.cumsum(rng.uniform(8, 30, int(end // 8) + 2)) - 10:  # parked boxes
            width, tall, long = rng.choice([(1.7, 1.4, 4.0), (0.8, 0.9, 0.8), (1.1, 1.2, 1.1)])
            inner = rng.uniform(4.3, 5.0)  # kerb-side face; the box extends away from the road
            xs = sorted((side * inner, side * (inner + width)))
            add((xs[0], ground - tall, box_z), (xs[1], ground, box_z + long), METAL,
                rng.uniform(0.2, 1.0, 3))
    add((-40.0, ground - 8, end), (40.0, ground, end + 5), PLASTER, rng.uniform(0.6, 1.0, 3))
    world_count = len(lo)
    # the two cars keep station ahead (as a followed car does): a few percent of the pixels,
    # enough to exercise automasking without dominating the evaluation as a car 10 m ahead did
    lead = LEAD_CAR_DISTANCE
    add((-0.85, ground - 1.45, lead), (0.85, ground, lead + 4.0), METAL, (0.8, 0.15, 0.1))  # lead car
    add((-4.4, ground - 1.5, 26.0), (-2.7, ground, 30.5), METAL, (0.15, 0.3, 0.8))  # left lane
    lo, hi = np.array(lo, np.float64), np.array(hi, np.float64)
    return World(lo[:world_count], hi[:world_count], lo[world_count:], hi[world_count:],
                 np.array([ASPHALT] + material), np.array([(1.0, 1.0, 1.0)] + tint, np.float32),
                 path, yaw)


def intrinsics(height: int, width: int) -> Tuple[float, float, float, float]:
    """fx, fy, cx, cy in pixels: KITTI's normalised K (0.58, 1.92, 0.5, 0.5) at this size."""
    return 0.58 * width, 1.92 * height, 0.5 * width, 0.5 * height


@functools.lru_cache(maxsize=4)
def _directions(height: int, width: int, factor: int) -> Tuple[np.ndarray, ...]:
    """Ray directions (x, y; z = 1) and norms, ``factor``^2 samples per pixel; pixel (i, j) is
    (u, v) = (j, i) (monodepth2), samples at u = j + (k + 0.5) / factor - 0.5."""
    fx, fy, cx, cy = intrinsics(height, width)
    u = (np.arange(width * factor) + 0.5) / factor - 0.5
    v = (np.arange(height * factor) + 0.5) / factor - 0.5
    shape = (height * factor, width * factor)
    dx = np.broadcast_to(((u - cx) / fx).astype(np.float32), shape)
    dy = np.broadcast_to(((v - cy) / fy).astype(np.float32)[:, None], shape)
    return dx, dy, np.sqrt(dx * dx + dy * dy + 1)


def _windows(lo, hi, origin, rotation, height, width, factor):
    """Sample-grid rectangle (r0, r1, c0, c1) covering each box's image; None when behind."""
    fx, fy, cx, cy = intrinsics(height, width)
    corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
    points = np.where(corners[None], hi[:, None], lo[:, None])  # (N, 8, 3)
    cam = (points - origin) @ rotation  # world -> camera: R^T (p - o), row-vector form
    full = (0, height * factor, 0, width * factor)
    windows = []
    for box in cam:
        in_front = box[:, 2] > NEAR
        if not in_front.any():
            windows.append(None)
            continue
        if not in_front.all():  # straddles the camera plane: no finite image bounds
            windows.append(full)
            continue
        cols = ((fx * box[:, 0] / box[:, 2] + cx) + 0.5) * factor - 0.5
        rows = ((fy * box[:, 1] / box[:, 2] + cy) + 0.5) * factor - 0.5
        r0, r1 = max(int(rows.min()) - 1, 0), min(int(np.ceil(rows.max())) + 2, full[1])
        c0, c1 = max(int(cols.min()) - 1, 0), min(int(np.ceil(cols.max())) + 2, full[3])
        windows.append((r0, r1, c0, c1) if r0 < r1 and c0 < c1 else None)
    return windows


def _cast_boxes(depth, obj, dirs, origin, rotation, lo, hi, first_id, size):
    """Slab-test every box against the rays of its image window; nearest hit wins in place."""
    windows = _windows(lo, hi, origin, rotation, *size)
    inverse = [1.0 / np.where(d == 0, np.float32(1e-9), d) for d in dirs]
    origin, lo, hi = origin.tolist(), lo.tolist(), hi.tolist()  # python floats keep float32 maths
    for i, window in enumerate(windows):
        if window is None:
            continue
        cut = np.s_[window[0]:window[1], window[2]:window[3]]
        enter, leave = None, None
        for k in range(3):
            near = (lo[i][k] - origin[k]) * inverse[k][cut]
            far = (hi[i][k] - origin[k]) * inverse[k][cut]
            lower, upper = np.minimum(near, far), np.maximum(near, far)
            enter = lower if enter is None else np.maximum(enter, lower)
            leave = upper if leave is None else np.minimum(leave, upper)
        depth_cut, obj_cut = depth[cut], obj[cut]
        hit = (enter <= leave) & (enter > NEAR) & (enter < depth_cut)
        depth_cut[hit] = enter[hit]
        obj_cut[hit] = first_id + i


def _sample_texture(material, a, b, metres_per_sample):
    """Trilinear mip-mapped gray value of ``material`` at face coordinates (a, b) in metres."""
    flat, offsets, index = texture_atlas()
    levels = offsets.shape[1]
    row = np.array([index[m[0]] for m in MATERIALS], np.int32)[material]
    density = np.array([m[1] for m in MATERIALS], np.float32)[material]  # texels per metre
    level = np.clip(np.log2(np.maximum(metres_per_sample * density, 1.0)), 0, levels - 1.001)
    base = level.astype(np.int32)  # level >= 0: truncation is floor
    scale = (0.5 ** np.arange(levels)).astype(np.float32)
    size = (TEXTURE_SIZE >> np.arange(levels)).astype(np.int32)
    u, v = a * density, b * density
    values = []
    for lvl in (base, base + 1):
        mask = size[lvl] - 1  # power-of-two sizes: "& mask" wraps negative coordinates too
        col = np.floor(u * scale[lvl]).astype(np.int32) & mask
        line = np.floor(v * scale[lvl]).astype(np.int32) & mask
        values.append(flat.take(offsets[row, lvl] + line * size[lvl] + col))
    frac = level - base
    return values[0] * (1 - frac) + values[1] * frac


def _sky(dirs, sky):
    """Sky colour (K, 3) for the world directions of the K sky samples: gradient and clouds."""
    x, y, z = (d[sky] for d in dirs)
    elevation = -y / np.sqrt(x * x + y * y + z * z)
    mix = np.clip(elevation * 3, 0, 1)[:, None]
    colour = (1 - mix) * np.array([0.78, 0.84, 0.92]) + mix * np.array([0.35, 0.55, 0.85])
    azimuth = np.arctan2(x, z)
    clouds = _sample_texture(np.full(x.shape, PLASTER), azimuth * 40, elevation * 40, 4.0 / 128)
    cover = np.clip((clouds - 0.55) * 4, 0, 0.8)[:, None]
    return colour * (1 - cover) + cover


def _cast(world, frame, camera, height, width, factor):
    """Ray cast one camera: depth (h, w) float32 (inf: sky), obj (h, w) int32 (0 ground, -1 sky),
    rays."""
    dx, dy, _ = _directions(height, width, factor)
    pose = world.camera_to_world(frame)
    rotation = pose[:3, :3]
    rig_origin = np.array([KITTI_STEREO_BASELINE if camera == 3 else 0.0, 0.0, 0.0])
    world_origin = rotation @ rig_origin + pose[:3, 3]
    rig_dirs = (dx, dy, np.broadcast_to(np.float32(1), dx.shape))
    world_dirs = tuple(float(r[0]) * dx + float(r[1]) * dy + float(r[2]) for r in rotation)
    depth = np.full(dx.shape, np.inf, np.float32)
    obj = np.full(dx.shape, -1, np.int32)
    ground = world_dirs[1] > 0
    depth[ground] = float(CAMERA_HEIGHT - world_origin[1]) / world_dirs[1][ground]
    obj[ground] = 0
    size = (height, width, factor)
    _cast_boxes(depth, obj, world_dirs, world_origin, rotation, world.boxes_lo, world.boxes_hi, 1, size)
    _cast_boxes(depth, obj, rig_dirs, rig_origin, np.eye(3), world.rig_lo, world.rig_hi,
                1 + len(world.boxes_lo), size)
    return depth, obj, ((world_origin, world_dirs), (rig_origin, rig_dirs))


def _ground_material(x, z):
    """Material of the ground at world (x, z): lanes, kerb lines, pavement, grass."""
    side = np.abs(x)
    material = np.where(side < ROAD_HALF_WIDTH, ASPHALT, np.where(side < KERB, PAVEMENT, GRASS))
    dashes = (side < 0.1) & (np.mod(z, 6.0) < 3.0)  # 3 m dashes every 6 m on the centre line
    return np.where(dashes | (np.abs(side - 3.8) < 0.1), MARKING, material)


def _shade(world, depth, obj, rays, norm, fx):
    """Colour (h, w, 3) float32 in [0, 1] of the cast samples; ``norm`` = |ray direction|."""
    (world_origin, world_dirs), (rig_origin, rig_dirs) = rays
    sky, rig, index = obj < 0, obj > len(world.boxes_lo), np.maximum(obj, 0)
    t = np.where(sky, np.float32(0), depth)
    dirs = [d.copy() for d in world_dirs]
    for k in range(3):
        dirs[k][rig] = rig_dirs[k][rig]
    point = [float(world_origin[k]) + t * dirs[k] for k in range(3)]
    for k in range(3):  # boxes riding with the camera are textured in the rig frame
        point[k][rig] += float(rig_origin[k] - world_origin[k])
    lo = np.concatenate([np.zeros((1, 3)), world.boxes_lo, world.rig_lo]).astype(np.float32)[index]
    hi = np.concatenate([np.zeros((1, 3)), world.boxes_hi, world.rig_hi]).astype(np.float32)[index]
    gap = np.stack([np.minimum(np.abs(point[k] - lo[..., k]), np.abs(point[k] - hi[..., k]))
                    for k in range(3)])
    axis = np.where(obj == 0, 1, np.argmin(gap, axis=0))  # the face a hit lies on
    a = np.where(axis == 0, point[2], point[0])
    b = np.where(axis == 1, point[2], point[1])
    material = np.where(obj == 0, _ground_material(point[0], point[2]), world.material[index])
    cosine = np.abs(np.choose(axis, dirs)) / norm
    # metres per sample along the footprint's long axis (the slope of the surface to the ray):
    # filtering for the short axis alone leaves the steep road aliased, flickering between
    # frames in a way no depth explains (tests/test_synthetic.py measures it)
    footprint = t * norm / (fx * np.maximum(cosine, 0.05))
    gray = _sample_texture(material, a, b, footprint)
    tint = world.tint[index] * np.array([m[2] for m in MATERIALS], np.float32)[material]
    colour = gray[..., None] * tint * FACE_SHADE[axis][..., None]
    colour[sky] = _sky(world_dirs, sky)
    return colour


def render_view(world: World, frame: int, camera: int, height: int, width: int,
                supersample: int = 1) -> Tuple[np.ndarray, np.ndarray]:
    """Render camera 2 or 3 of ``frame``, ``supersample``^2 samples per pixel: rgb (h, w, 3) uint8,
    depth (h, w) float32 z-depth in metres at pixel centres, 0 for sky."""
    if camera not in (2, 3):
        raise ValueError(f"camera must be 2 or 3, got {camera}")
    fx = intrinsics(height, width)[0] * supersample
    depth, obj, rays = _cast(world, frame, camera, height, width, supersample)
    colour = _shade(world, depth, obj, rays, _directions(height, width, supersample)[2], fx)
    colour = colour.reshape(height, supersample, width, supersample, 3).mean(axis=(1, 3))
    if supersample != 1:
        depth = _cast(world, frame, camera, height, width, 1)[0]
    rgb = np.clip(np.round(colour * 255), 0, 255).astype(np.uint8)
    return rgb, np.where(np.isfinite(depth), depth, 0).astype(np.float32)
