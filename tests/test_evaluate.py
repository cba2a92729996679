"""litemono.evaluation and the evaluate_depth.py CLI on hand-made data."""
import json

import numpy as np
import pytest
import torch

import evaluate_depth
from litemono.evaluation import (batch_post_process_disparity, evaluate_predictions,
                                 load_gt_depths, resize_to, save_gt_depths)

GT_SHAPES = [(40, 130), (38, 124), (42, 128)]


def make_gt(seed=0):
    """Sparse ground truth (about a third of the pixels) between 2 and 70 m."""
    rng = np.random.default_rng(seed)
    maps = []
    for h, w in GT_SHAPES:
        depth = rng.uniform(2, 70, (h, w)).astype(np.float32)
        depth[rng.random((h, w)) < 0.66] = 0.0
        maps.append(depth)
    return maps


def test_gt_round_trip_is_pickle_free(tmp_path):
    maps = make_gt()
    path = tmp_path / "gt_depths.npz"
    save_gt_depths(path, maps)
    with np.load(path, allow_pickle=False) as archive:  # readable without unpickling
        assert all(archive[k].dtype != object for k in archive.files)
    loaded = load_gt_depths(path)
    assert [m.shape for m in loaded] == GT_SHAPES
    for a, b in zip(maps, loaded):
        np.testing.assert_array_equal(a, b)


def test_object_array_gt_needs_allow_pickle(tmp_path):
    maps = make_gt()
    path = tmp_path / "upstream.npz"
    np.savez(path, data=np.array(maps, dtype=object))
    with pytest.raises(ValueError, match="--allow_pickle"):
        load_gt_depths(path)
    for a, b in zip(maps, load_gt_depths(path, allow_pickle=True)):
        np.testing.assert_array_equal(a, b)


def test_missing_gt_names_the_export_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="export_gt_depth.py"):
        load_gt_depths(tmp_path / "nope.npz")


def perfect_disps(maps, height=16, width=48):
    """Disparities at network size that resize back to exactly 1 / gt: a constant per map."""
    disps = []
    for depth in maps:
        depth[depth > 0] = 12.5  # constant depth so the bilinear resize is exact
        disps.append(np.full((height, width), 1.0 / 12.5, np.float32))
    return np.stack(disps)


def test_ext_disp_perfect_prediction(tmp_path, capsys):
    maps = make_gt()
    disps = perfect_disps(maps)
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", disps * 3.0)  # depth a third too small: ratio 3
    csv = tmp_path / "per_image.csv"
    evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps.npy"),
                         "--gt_path", str(tmp_path / "gt.npz"), "--per_image_csv", str(csv)])
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["abs_rel"] == pytest.approx(0, abs=1e-6) and result["a1"] == 1.0
    assert any(line.startswith("scaling ratios | median: 3.000") for line in out)
    rows = csv.read_text().splitlines()
    assert rows[0].startswith("index,abs_rel") and len(rows) == 1 + len(maps)


def test_ext_disp_count_mismatch_is_an_error(tmp_path, capsys):
    maps = make_gt()
    save_gt_depths(tmp_path / "gt.npz", maps)
    np.save(tmp_path / "disps.npy", perfect_disps(maps)[:2])
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--ext_disp_to_eval", str(tmp_path / "disps.npy"),
                             "--gt_path", str(tmp_path / "gt.npz")])
    assert "same split" in capsys.readouterr().err


def test_mean_is_over_images_not_pixels():
    maps = make_gt()
    disps = perfect_disps(maps)
    disps[0] *= 2.0  # only image 0 is wrong (depth halved) when median scaling is off
    result = evaluate_predictions(disps, maps, "eigen_benchmark", median_scaling=False)
    assert result.per_image[0]["abs_rel"] == pytest.approx(0.5)
    assert result.mean["abs_rel"] == pytest.approx(0.5 / 3)
    assert result.ratios is None


def test_resize_matches_half_pixel_bilinear():
    src = np.arange(6, dtype=np.float32).reshape(2, 3)
    out = resize_to(src, 4, 6)
    # output pixel x samples source x' = (x + 0.5) / 2 - 0.5, clamped to the border
    xs = np.clip((np.arange(6) + 0.5) / 2 - 0.5, 0, 2)
    np.testing.assert_allclose(out[0], np.interp(xs, np.arange(3), src[0]), atol=1e-6)
    np.testing.assert_allclose(out[:, 0], np.interp(np.clip((np.arange(4) + 0.5) / 2 - 0.5, 0, 1),
                                                    [0, 1], src[:, 0]), atol=1e-6)


def test_post_process_independent():
    rng = np.random.default_rng(3)
    left = rng.random((2, 5, 41)).astype(np.float32)
    right = rng.random((2, 5, 41)).astype(np.float32)
    got = batch_post_process_disparity(torch.from_numpy(left), torch.from_numpy(right)).numpy()
    for x in range(41):
        u = x / 40
        w_right = min(max(20 * (0.1 - u), 0.0), 1.0)  # 1 for u <= 5 %, 0 from 10 % on
        w_left = min(max(20 * (u - 0.9), 0.0), 1.0)
        mix = (w_left * left[..., x] + w_right * right[..., x]
               + (1 - w_left - w_right) * (left[..., x] + right[..., x]) / 2)
        np.testing.assert_allclose(got[..., x], mix, atol=1e-6)
