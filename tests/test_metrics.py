"""litemono.metrics against an independent numpy implementation on hand-made maps."""
import numpy as np
import pytest
import torch

from litemono import metrics as M


def numpy_metrics(gt, pred):
    """Straightforward numpy version of the seven metrics (loops over thresholds by hand)."""
    gt, pred = np.asarray(gt, np.float64), np.asarray(pred, np.float64)
    ratio = np.where(gt / pred > pred / gt, gt / pred, pred / gt)
    return {
        "abs_rel": np.sum(np.abs(gt - pred) / gt) / gt.size,
        "sq_rel": np.sum((gt - pred) ** 2 / gt) / gt.size,
        "rmse": np.sqrt(np.sum((gt - pred) ** 2) / gt.size),
        "rmse_log": np.sqrt(np.sum(np.log(gt / pred) ** 2) / gt.size),
        "a1": np.count_nonzero(ratio < 1.25) / gt.size,
        "a2": np.count_nonzero(ratio < 1.5625) / gt.size,
        "a3": np.count_nonzero(ratio < 1.953125) / gt.size,
    }


def test_metrics_hand_values():
    gt = np.array([2.0, 4.0, 10.0, 1.0])
    pred = np.array([2.0, 5.0, 8.0, 1.6])
    got = M.compute_depth_metrics(gt, pred)
    # a1: ratios 1, 1.25, 1.25, 1.6 -> only the first is strictly below 1.25
    assert got["a1"] == 0.25 and got["a2"] == 0.75 and got["a3"] == 1.0
    assert got["abs_rel"] == pytest.approx((0 + 0.25 + 0.2 + 0.6) / 4)
    assert got["rmse"] == pytest.approx(np.sqrt((0 + 1 + 4 + 0.36) / 4))
    assert list(got) == list(M.METRIC_NAMES)


def test_metrics_match_numpy_on_random_maps():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1, 80, 5000)
    pred = gt * rng.uniform(0.6, 1.6, gt.size)
    got = M.compute_depth_metrics(torch.from_numpy(gt).float(), pred.astype(np.float32))
    want = numpy_metrics(gt.astype(np.float32), pred.astype(np.float32))
    for name in M.METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-6), name


def test_eigen_crop_on_kitti_size():
    mask = M.eigen_crop_mask(375, 1242).numpy()
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (153, 371, 44, 1197)
    assert mask.sum() == (371 - 153) * (1197 - 44)


def test_median_is_numpy_median_for_even_counts():
    values = np.array([5.0, 1.0, 3.0, 10.0])
    assert float(M.median(values)) == np.median(values) == 4.0
    assert float(M.median(values[:3])) == 3.0
    with pytest.raises(ValueError, match="no valid ground-truth"):
        M.median(np.zeros(0))


def hand_protocol(gt, pred, eigen, median, factor):
    """The protocol written out with explicit index ranges and numpy only."""
    h, w = gt.shape
    keep = np.zeros_like(gt, dtype=bool)
    if eigen:
        r0, r1 = int(0.40810811 * h), int(0.99189189 * h)
        c0, c1 = int(0.03594771 * w), int(0.96405229 * w)
        keep[r0:r1, c0:c1] = (gt[r0:r1, c0:c1] > 1e-3) & (gt[r0:r1, c0:c1] < 80)
    else:
        keep = gt > 0
    g, p = gt[keep], pred[keep] * factor
    ratio = np.median(g) / np.median(p) if median else None
    if median:
        p = p * ratio
    return numpy_metrics(g, np.clip(p, 1e-3, 80)), ratio


@pytest.mark.parametrize("eigen,median,factor", [(True, True, 1.0), (True, False, 5.4),
                                                 (False, True, 1.0), (False, False, 1.0)])
def test_protocol_crop_median_and_caps(eigen, median, factor):
    rng = np.random.default_rng(1)
    h, w = 40, 100
    gt = rng.uniform(0.5, 120, (h, w))  # some beyond the 80 m cap
    gt[rng.random((h, w)) < 0.5] = 0.0  # sparse, like projected velodyne
    pred = rng.uniform(0.0001, 30, (h, w))  # some below the 1e-3 cap after scaling
    pred[0, :] = 500.0  # outside the crop: only the benchmark protocol sees it
    got, ratio = M.evaluate_depth_map(gt, pred, eigen_crop=eigen, median_scaling=median,
                                      scale_factor=factor)
    want, want_ratio = hand_protocol(gt, pred, eigen, median, factor)
    for name in M.METRIC_NAMES:
        assert got[name] == pytest.approx(want[name], rel=1e-9), name
    assert ratio == (pytest.approx(want_ratio) if median else None)


def test_perfect_prediction_up_to_scale():
    gt = np.zeros((30, 60))
    gt[15:, 5:55] = np.linspace(2, 70, 50)
    got, ratio = M.evaluate_depth_map(gt, gt / 7.0)
    assert ratio == pytest.approx(7.0)
    assert got["abs_rel"] == pytest.approx(0, abs=1e-12) and got["a1"] == 1.0


def test_batch_uses_one_ratio():
    gt = np.full((2, 1, 20, 40), 10.0)
    pred = np.stack([np.full((1, 20, 40), 1.0), np.full((1, 20, 40), 3.0)])
    _, ratio = M.evaluate_depth_map(gt, pred)
    assert ratio == pytest.approx(10.0 / 2.0)  # median of {1, 3} (equal counts) is 2


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="resize the prediction"):
        M.evaluate_depth_map(np.ones((4, 4)), np.ones((4, 5)))
