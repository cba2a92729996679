"""KITTI datasets: sample schema, pyramid, augmentation, flips, start-up checks, cache, loader."""
import itertools
import random
import time

import numpy as np
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from litemono.config import from_dict
from litemono.data import build_dataset, kitti
from litemono.data.kitti import KITTIOdomDataset, KITTIRawDataset
from litemono.errors import DataError
from litemono.data.transforms import CorruptImageError, adjust_hue, to_tensor

DRIVE = "2011_09_26/2011_09_26_drive_0001_sync"
NATIVE = (37, 122)  # (h, w): not a multiple of the training size, so every scale resizes
H, W = 32, 64


def smooth_image(rng, shape):
    """A random but smooth RGB uint8 image (JPEG-friendly, with structure to resize)."""
    coarse = rng.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    return np.array(Image.fromarray(coarse).resize(shape[::-1], Image.Resampling.BILINEAR))


def write_kitti_tree(root, frames=6, ext=".jpg", folder=DRIVE, seed=0):
    """KITTI raw layout with both cameras; returns the native arrays {(side, frame): array}."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for side in ("l", "r"):
        for frame in range(frames):
            path = kitti.raw_image_path(str(root), folder, frame, side, ext)
            arrays[side, frame] = smooth_image(rng, NATIVE)
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arrays[side, frame]).save(path)
    return arrays


def raw(root, lines, **kwargs):
    return KITTIRawDataset(str(root), lines, H, W, **kwargs)


def upstream_pyramid(path, flip=False):
    """The upstream way: PIL open/convert, optional flip, torchvision Resize chain (LANCZOS)."""
    image = Image.open(path).convert("RGB")
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = []
    for s in range(4):
        image = T.Resize((H // 2 ** s, W // 2 ** s), interpolation=Image.Resampling.LANCZOS)(image)
        out.append(image)
    return out


def test_schema_shapes_and_intrinsics(tmp_path):
    write_kitti_tree(tmp_path)
    sample = raw(tmp_path, [f"{DRIVE} 2 l", f"{DRIVE} 3 r"], frame_ids=[0, -1, 1])[1]
    colors = {(n, f, s) for n in ("color", "color_aug") for f in (0, -1, 1) for s in range(4)}
    intrinsics = {(n, s) for n in ("K", "inv_K") for s in range(4)}
    assert set(sample) == colors | intrinsics | {"index"}  # no depth_gt: no velodyne here
    assert sample["index"] == 1
    for (name, f, s) in colors:
        value = sample[name, f, s]
        assert value.dtype == torch.float32 and value.shape == (3, H // 2 ** s, W // 2 ** s)
        assert 0 <= value.min() and value.max() <= 1
        torch.testing.assert_close(sample["color_aug", f, s], sample["color", f, s], rtol=0, atol=0)
    for s in range(4):
        w, h = W // 2 ** s, H // 2 ** s
        expected = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0],
                                 [0, 0, 1, 0], [0, 0, 0, 1]])
        torch.testing.assert_close(sample["K", s], expected)
        identity = sample["inv_K", s] @ sample["K", s]
        torch.testing.assert_close(identity, torch.eye(4), atol=1e-5, rtol=0)


def test_pyramid_and_frames_match_upstream_resize_chain(tmp_path):
    write_kitti_tree(tmp_path)
    sample = raw(tmp_path, [f"{DRIVE} 2 r"], frame_ids=[0, -1, 1, "s"])[0]
    for frame_id, (side, frame) in {0: ("r", 2), -1: ("r", 1), 1: ("r", 3), "s": ("l", 2)}.items():
        expected = upstream_pyramid(kitti.raw_image_path(str(tmp_path), DRIVE, frame, side))
        for s in range(4):
            assert torch.equal(sample["color", frame_id, s], T.ToTensor()(expected[s]))


def test_to_tensor_matches_torchvision():
    array = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert torch.equal(to_tensor(Image.fromarray(array)), T.ToTensor()(Image.fromarray(array)))


def coins(monkeypatch, values):
    """Make the dataset's coin tosses (colour aug first, then flip) return ``values``."""
    stream = itertools.cycle(values)
    monkeypatch.setattr(kitti.random, "random", lambda: next(stream))


class FakeTeacher:
    def __init__(self):
        self.maps = {}

    def load(self, folder, frame_index, side):
        key = (folder, frame_index, side)
        self.maps.setdefault(key, np.random.default_rng(frame_index).random((H, W), np.float32))
        return self.maps[key]


def test_flip_consistency(tmp_path, monkeypatch):
    write_kitti_tree(tmp_path)
    for frame in range(6):  # velodyne scans present -> depth_gt; read_depth is stubbed below
        path = tmp_path / DRIVE / "velodyne_points/data" / f"{frame:010d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    depth = np.random.default_rng(3).random(kitti.DEPTH_GT_SHAPE).astype(np.float32)
    monkeypatch.setattr(KITTIRawDataset, "read_depth", lambda self, f, i, s: depth)
    teacher = FakeTeacher()
    ds = raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1, "s"], is_train=True,
             teacher_store=teacher)
    assert ds.load_depth
    coins(monkeypatch, [0.0, 0.0])  # no colour aug, no flip
    plain = ds[0]
    coins(monkeypatch, [0.0, 0.9])  # no colour aug, flip
    flipped = ds[0]
    for key, value in plain.items():
        if key[0] in ("color", "color_aug"):
            assert torch.equal(flipped[key], torch.flip(value, dims=[-1])), key
            path = kitti.raw_image_path(str(tmp_path), DRIVE, 2 + (0 if key[1] == "s" else key[1]),
                                        "r" if key[1] == "s" else "l")
            assert torch.equal(flipped[key], T.ToTensor()(upstream_pyramid(path, True)[key[2]]))
        elif key[0] in ("K", "inv_K"):
            assert torch.equal(flipped[key], value)
    assert torch.equal(plain["depth_gt"][0], torch.from_numpy(depth))
    assert torch.equal(flipped["depth_gt"][0], torch.from_numpy(depth[:, ::-1].copy()))
    teacher_map = torch.from_numpy(teacher.maps[DRIVE, 2, "l"])
    assert torch.equal(plain["teacher_disp"], teacher_map[None])
    assert torch.equal(flipped["teacher_disp"], torch.flip(teacher_map, dims=[-1])[None])
    # stereo_T: left camera -> -0.1, flipped -> +0.1; right camera the opposite
    assert plain["stereo_T"][0, 3] == pytest.approx(-0.1)
    assert flipped["stereo_T"][0, 3] == pytest.approx(0.1)
    right = raw(tmp_path, [f"{DRIVE} 2 r"], frame_ids=[0, "s"], is_train=True)
    assert right[0]["stereo_T"][0, 3] == pytest.approx(-0.1)  # coins still [0.0, 0.9]: flipped
    expected_T = torch.eye(4)
    expected_T[0, 3] = 0.1
    torch.testing.assert_close(plain["stereo_T"].abs(), expected_T)


def upstream_jitter(path_by_frame, seed):
    """Lite-Mono's order of ColorJitter calls: every native frame, then each frame's scales."""
    jitter = T.ColorJitter(brightness=(0.8, 1.2), contrast=(0.8, 1.2), saturation=(0.8, 1.2),
                           hue=(-0.1, 0.1))
    torch.manual_seed(seed)
    natives = {f: Image.open(p).convert("RGB") for f, p in path_by_frame.items()}
    for image in natives.values():
        jitter(image)
    return {(f, s): T.ToTensor()(jitter(scaled)) for f, p in path_by_frame.items()
            for s, scaled in enumerate(upstream_pyramid(p))}


def test_per_frame_jitter_reproduces_upstream_stream(tmp_path, monkeypatch):
    write_kitti_tree(tmp_path)
    ds = raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1], is_train=True)
    coins(monkeypatch, [0.9, 0.0])  # colour aug, no flip
    torch.manual_seed(5)
    sample = ds[0]
    paths = {f: kitti.raw_image_path(str(tmp_path), DRIVE, 2 + f, "l") for f in (0, -1, 1)}
    expected = upstream_jitter(paths, 5)
    for (f, s), value in expected.items():
        assert torch.equal(sample["color_aug", f, s], value), (f, s)
    assert not torch.equal(sample["color_aug", 0, 0], sample["color", 0, 0])


def test_augmented_scales_keep_the_upstream_images_and_stream(tmp_path, monkeypatch):
    """Jittering scale 0 only gives upstream's scale-0 images and leaves torch's RNG where the
    full pipeline leaves it (the skipped scales' draws are still made)."""
    write_kitti_tree(tmp_path)
    full = raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1], is_train=True)
    lean = raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1], is_train=True,
               augmented_scales=[0])
    coins(monkeypatch, [0.9, 0.0])
    torch.manual_seed(5)
    reference = full[0]
    after_full = torch.get_rng_state()
    torch.manual_seed(5)
    sample = lean[0]
    assert torch.equal(torch.get_rng_state(), after_full)
    paths = {f: kitti.raw_image_path(str(tmp_path), DRIVE, 2 + f, "l") for f in (0, -1, 1)}
    expected = upstream_jitter(paths, 5)
    for f in (0, -1, 1):
        assert torch.equal(sample["color_aug", f, 0], expected[f, 0])
        assert all(("color_aug", f, s) not in sample for s in (1, 2, 3))
        for s in range(4):
            assert torch.equal(sample["color", f, s], reference["color", f, s])
    coins(monkeypatch, [0.0, 0.0])  # no augmentation: the same holds for the plain copy
    plain = lean[0]
    assert torch.equal(plain["color_aug", 0, 0], plain["color", 0, 0])
    assert ("color_aug", 0, 1) not in plain
    with pytest.raises(ValueError, match="augmented_scales"):
        raw(tmp_path, [f"{DRIVE} 2 l"], augmented_scales=[4])


def test_depth_gt_only_when_asked(tmp_path, monkeypatch):
    write_kitti_tree(tmp_path)
    for frame in range(6):
        path = tmp_path / DRIVE / "velodyne_points/data" / f"{frame:010d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    calls = []
    monkeypatch.setattr(KITTIRawDataset, "read_depth",
                        lambda self, f, i, s: calls.append(i) or np.ones(kitti.DEPTH_GT_SHAPE))
    assert "depth_gt" in raw(tmp_path, [f"{DRIVE} 2 l"])[0] and calls == [2]
    skipped = raw(tmp_path, [f"{DRIVE} 2 l"], with_depth_gt=False)
    assert not skipped.load_depth and "depth_gt" not in skipped[0] and calls == [2]


@pytest.mark.parametrize("factor", [-0.5, -0.1, -0.0391, 0.0, 0.0039, 0.07, 0.1, 0.5])
def test_adjust_hue_equals_torchvision_on_random_images(factor):
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (37, 61, 3), np.uint8))
    expected = T.functional.adjust_hue(image, factor)
    assert np.array_equal(np.asarray(adjust_hue(image, factor)), np.asarray(expected))


def test_adjust_hue_equals_torchvision_for_every_colour():
    """Every one of the 2^24 RGB colours, for shifts of both signs (the tables are PIL's own
    conversions, so this checks the packing, the H-only shift and its wrap-around)."""
    codes = np.arange(1 << 24, dtype="<u4").view(np.uint8).reshape(4096, 4096, 4)[..., :3]
    image = Image.fromarray(np.ascontiguousarray(codes))
    for factor in (-0.1, 0.0745):
        expected = np.asarray(T.functional.adjust_hue(image, factor))
        assert np.array_equal(np.asarray(adjust_hue(image, factor)), expected), factor
    gray = Image.fromarray(codes[:8, :8, 0])  # not RGB: torchvision's answer (unchanged)
    assert np.array_equal(np.asarray(adjust_hue(gray, 0.1)), np.asarray(gray))
    with pytest.raises(ValueError, match="hue_factor"):
        adjust_hue(image, 0.6)


def test_per_item_jitter_shares_one_draw(tmp_path, monkeypatch):
    write_kitti_tree(tmp_path)
    ds = raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1], is_train=True, jitter="per_item")
    coins(monkeypatch, [0.9, 0.0])
    torch.manual_seed(11)
    sample = ds[0]
    torch.manual_seed(11)
    ranges = ([0.8, 1.2], [0.8, 1.2], [0.8, 1.2], [-0.1, 0.1])
    order, b, c, sat, hue = T.ColorJitter.get_params(*ranges)
    ops = [lambda im: T.functional.adjust_brightness(im, b),
           lambda im: T.functional.adjust_contrast(im, c),
           lambda im: T.functional.adjust_saturation(im, sat),
           lambda im: T.functional.adjust_hue(im, hue)]
    for f in (0, -1, 1):
        path = kitti.raw_image_path(str(tmp_path), DRIVE, 2 + f, "l")
        for s, image in enumerate(upstream_pyramid(path)):
            for i in order:
                image = ops[int(i)](image)
            assert torch.equal(sample["color_aug", f, s], T.ToTensor()(image)), (f, s)


def test_same_seed_same_sample(tmp_path):
    write_kitti_tree(tmp_path)
    ds = raw(tmp_path, [f"{DRIVE} {i} l" for i in range(1, 5)], is_train=True)

    def draw(seed):
        random.seed(seed)
        torch.manual_seed(seed)
        return [ds[i] for i in range(4)]

    first, again, other = draw(3), draw(3), draw(4)
    for a, b in zip(first, again):
        assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))
    assert any(not torch.equal(a[k], b[k]) for a, b in zip(first, other)
               for k in a if k[0] == "color_aug")


def test_missing_frames_reported_at_start_with_line_numbers(tmp_path):
    write_kitti_tree(tmp_path)
    (tmp_path / kitti.raw_image_path("", DRIVE, 5, "l")).unlink()
    lines = [f"{DRIVE} 1 l", f"{DRIVE} 4 l", f"{DRIVE} 5 l", f"{DRIVE} 3 r"]
    with pytest.raises(FileNotFoundError) as info:
        raw(tmp_path, lines, source="my_split/train_files.txt")
    message = str(info.value)
    # frame 5 (line 2's +1 and line 3's 0), frame 6 (line 3's +1) missing: 2 files, 2 lines
    assert "2 image file(s) needed by 2 line(s) of my_split/train_files.txt" in message
    frame_5 = kitti.raw_image_path(str(tmp_path), DRIVE, 5, "l")
    assert f"line 2 ('{DRIVE} 4 l'): {frame_5}" in message
    assert "line 3" in message and "0000000006.jpg" in message and "line 4" not in message


def test_missing_stereo_partner_and_extension_hint(tmp_path):
    write_kitti_tree(tmp_path, ext=".png")
    with pytest.raises(FileNotFoundError, match="use --png"):
        raw(tmp_path, [f"{DRIVE} 2 l"])
    (tmp_path / kitti.raw_image_path("", DRIVE, 2, "r", ".png")).unlink()
    raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1], img_ext=".png")  # mono: fine
    with pytest.raises(FileNotFoundError, match="image_03/data/0000000002.png"):
        raw(tmp_path, [f"{DRIVE} 2 l"], frame_ids=[0, -1, 1, "s"], img_ext=".png")


def test_start_up_check_is_fast_for_a_full_split(tmp_path):
    write_kitti_tree(tmp_path)
    lines = [f"{DRIVE} {1 + i % 4} {'lr'[i % 2]}" for i in range(40000)]
    start = time.perf_counter()
    assert len(raw(tmp_path, lines)) == 40000
    assert time.perf_counter() - start < 10


def test_bad_split_lines_are_named(tmp_path):
    write_kitti_tree(tmp_path)
    with pytest.raises(ValueError, match="no side.*split.txt:2, "):
        raw(tmp_path, [f"{DRIVE} 2 l", f"{DRIVE} 3"], source="split.txt")
    with pytest.raises(ValueError, match="split.txt:1, "):
        raw(tmp_path, [f"{DRIVE} 2 x"], source="split.txt")
    with pytest.raises(ValueError, match="--jitter"):
        raw(tmp_path, [f"{DRIVE} 2 l"], jitter="sometimes")


@pytest.mark.parametrize("payload", [b"not an image at all", "truncated"])
def test_corrupt_image_names_the_file(tmp_path, payload):
    write_kitti_tree(tmp_path)
    path = tmp_path / kitti.raw_image_path("", DRIVE, 3, "l")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if payload == "truncated" else payload)
    ds = raw(tmp_path, [f"{DRIVE} 2 l"])
    with pytest.raises(DataError, match=f"{path}.*split line 1") as info:  # file and line
        ds[0]
    assert isinstance(info.value.__cause__, CorruptImageError)


def test_odometry_layout(tmp_path):
    rng = np.random.default_rng(0)
    for frame in range(3):
        path = tmp_path / "sequences/09/image_3" / f"{frame:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng, NATIVE)).save(path)
    assert kitti.odom_image_path("d", "9", 1, "r", ".png") == "d/sequences/09/image_3/000001.png"
    with pytest.raises(ValueError, match="--dataset kitti"):
        KITTIOdomDataset(str(tmp_path), [f"{DRIVE} 1 r"], H, W)
    ds = KITTIOdomDataset(str(tmp_path), ["9 1 r"], H, W)
    assert not ds.load_depth
    expected = upstream_pyramid(tmp_path / "sequences/09/image_3/000002.jpg")
    assert torch.equal(ds[0]["color", 1, 2], T.ToTensor()(expected[2]))


def test_build_dataset_reads_the_split_and_checks_the_teacher(tmp_path):
    write_kitti_tree(tmp_path)
    split = tmp_path / "mysplit"
    split.mkdir()
    (split / "train_files.txt").write_text(f"{DRIVE} 1 l\n{DRIVE} 2 r\n\n")
    (split / "test_files.txt").write_text(f"{DRIVE} 0 l\n")  # frame 0: no -1 neighbour
    cfg = from_dict({"data_path": str(tmp_path), "split": str(split), "height": H, "width": W,
                     "use_stereo": True})
    checked = []

    class Teacher(FakeTeacher):
        def check(self, height, width, lines, split=None):
            checked.append((height, width, list(lines), split))

    train = build_dataset(cfg, "train", is_train=True, teacher_store=Teacher())
    assert len(train) == 2 and train.frame_ids == [0, -1, 1, "s"] and train.is_train
    assert checked == [(H, W, [f"{DRIVE} 1 l", f"{DRIVE} 2 r"], str(split))]
    assert "teacher_disp" in train[1] and "stereo_T" in train[1]
    test = build_dataset(cfg, "test", is_train=False)
    assert test.frame_ids == [0] and set(k[1] for k in test[0] if k[0] == "color") == {0}
    with pytest.raises(ValueError, match="part"):
        build_dataset(cfg, "training", is_train=True)


@pytest.mark.parametrize("native, size", [((375, 1242), (192, 640)), ((370, 1224), (192, 640)),
                                          ((375, 1242), (320, 1024)), (NATIVE, (H, W)),
                                          ((192, 640), (96, 320)), ((96, 320), (48, 160)),
                                          ((48, 160), (24, 80)), ((320, 1024), (160, 512))])
def test_lanczos_resize_commutes_with_flip(native, size):
    """What the cache relies on: resize(flip(x)) == flip(resize(x)) byte for byte."""
    image = Image.fromarray(np.random.default_rng(7).integers(0, 256, native + (3,), np.uint8))
    mirror = Image.Transpose.FLIP_LEFT_RIGHT
    a = image.transpose(mirror).resize(size[::-1], Image.Resampling.LANCZOS)
    b = image.resize(size[::-1], Image.Resampling.LANCZOS).transpose(mirror)
    assert np.array_equal(np.asarray(a), np.asarray(b))


def test_cache_gives_identical_samples(tmp_path, monkeypatch):
    write_kitti_tree(tmp_path / "data")
    lines = [f"{DRIVE} 2 l", f"{DRIVE} 3 r"]
    kwargs = dict(frame_ids=[0, -1, 1, "s"], is_train=True)
    plain = raw(tmp_path / "data", lines, **kwargs)
    cached = raw(tmp_path / "data", lines, cache_dir=str(tmp_path / "cache"), **kwargs)
    for index, flip in itertools.product(range(2), (0.0, 0.9)):
        for _ in range(2):  # first read builds the cache file, second reads it
            coins(monkeypatch, [0.9, flip])
            torch.manual_seed(index)
            expected = plain[index]
            coins(monkeypatch, [0.9, flip])
            torch.manual_seed(index)
            got = cached[index]
            assert all(torch.equal(got[k], expected[k]) for k in expected
                       if isinstance(expected[k], torch.Tensor))
    files = sorted((tmp_path / "cache" / f"{H}x{W}_s4").rglob("*.npy"))
    assert len(files) == 6  # frames 1..3 of the left camera, 2..4 of the right
    levels = sum((H >> s) * (W >> s) * 3 for s in range(4))
    assert np.load(files[0]).shape == (levels,)  # the whole pyramid, one file per frame
    files[0].write_bytes(b"garbage")
    corrupt_frame = int(files[0].name.split(".")[0])
    with pytest.raises(CorruptImageError, match=str(files[0])):
        cached.load_pyramid(DRIVE, corrupt_frame, "l")


def true_disp(scene, lines, cfg):
    """Disparity (B, 1, H, W) of the scene's true depth, in the units of stereo_T (KITTI's
    0.54 m baseline is 0.1, so metres / 5.4); sky (depth 0) gets disparity 0."""
    maps = []
    for text in lines:
        folder, frame, side = text.split()
        depth = np.load(scene.true_depth_path(folder, int(frame), side)) / 5.4
        inv = np.where(depth > 0, 1 / np.clip(depth, cfg.loss.min_depth, cfg.loss.max_depth), 0)
        low, high = 1 / cfg.loss.max_depth, 1 / cfg.loss.min_depth
        maps.append(np.clip((inv - low) / (high - low), 0, 1))
    return torch.from_numpy(np.stack(maps)[:, None].astype(np.float32))


def test_loss_on_synthetic_batches_through_the_loader(synthetic_kitti):
    criterion_module = pytest.importorskip("litemono.losses.criterion")
    scene = synthetic_kitti
    cfg = from_dict({"data_path": str(scene.root), "split": str(scene.split_dir),
                     "height": scene.height, "width": scene.width, "frame_ids": [0],
                     "use_stereo": True, "png": scene.png})
    dataset = build_dataset(cfg, "train", is_train=False)
    assert dataset.load_depth  # the scene has velodyne scans and calibration
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, shuffle=False, num_workers=0)
    batch = next(iter(loader))
    assert batch["depth_gt"].shape == (2, 1) + kitti.DEPTH_GT_SHAPE and batch["depth_gt"].max() > 0
    criterion = criterion_module.build_criterion(cfg)
    lines = [dataset.entries[i].text for i in batch["index"].tolist()]
    disp = true_disp(scene, lines, cfg)

    def loss_with(disp_full):
        outputs = {("disp", s): torch.nn.functional.interpolate(
            disp_full, scale_factor=0.5 ** s, mode="bilinear") if s else disp_full
            for s in cfg.model.scales}
        total, terms = criterion(batch, outputs)
        assert torch.isfinite(total) and set(terms) >= {"photometric", "smoothness"}
        return terms["photometric"].item()

    right = loss_with(disp)
    wrong = loss_with(torch.full_like(disp, 0.05))
    assert 0 < right < wrong
