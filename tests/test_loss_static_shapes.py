"""The static-shape masked medians and Chamfer sampling equal the boolean-indexing versions.

The reference functions below are the loop-over-images implementations the losses used before
they were rewritten for torch.compile (issue 22): boolean indexing per image, torch.quantile,
a Python loop in the point sampling. The batches include an image with no valid pixel, one with
a single valid pixel and one with fewer valid pixels than sampled points.
"""
import pytest
import torch

from litemono.config import from_dict
from litemono.losses import chamfer, distill
from litemono.losses.chamfer import ChamferTerm
from litemono.losses.distill import DistillationTerm


# ------------------------------------------------------------ the previous implementations

def _ref_per_image(values, mask, reduce):
    out = [reduce(v[m]) if m.any() else v.new_zeros(()) for v, m in zip(values, mask)]
    return torch.stack(out).view(-1, 1, 1, 1)


def ref_median(values, mask):
    def median(v):
        return torch.quantile(v if v.dtype == torch.float64 else v.float(), 0.5)
    return _ref_per_image(values, mask, median)


def ref_max(values, mask):
    return _ref_per_image(values, mask, torch.max)


def ref_masked_l1(prediction, target, mask):
    weight = mask.to(prediction.dtype)
    count = weight.sum(dim=(1, 2, 3))
    per_image = ((prediction - target).abs() * weight).sum(dim=(1, 2, 3)) / count.clamp_min(1.0)
    if not (count > 0).any():
        return prediction.sum() * 0.0
    return per_image[count > 0].mean()


def ref_sample_points(values, mask, count):
    points = values.new_zeros(values.shape[0], count)
    point_mask = torch.zeros(values.shape[0], count, dtype=torch.bool)
    for b in range(values.shape[0]):
        valid = values[b][mask[b]]
        taken = min(count, valid.numel())
        if taken:
            points[b, :taken] = valid[torch.arange(taken) * valid.numel() // taken]
            point_mask[b, :taken] = True
    return points, point_mask


def ref_chamfer_1d(points, centers, mask, reduction="mean"):
    sq_dist = (points.unsqueeze(2) - centers.unsqueeze(1)) ** 2
    weight = mask.to(sq_dist.dtype)
    count = weight.sum(dim=1)
    point_term = (sq_dist.min(dim=2).values * weight).sum(dim=1)
    center_term = sq_dist.masked_fill(~mask.unsqueeze(2), float("inf")).min(dim=1).values
    has = count > 0
    if not has.any():
        return centers.sum() * 0.0
    if reduction == "mean":
        point_term = point_term / count.clamp_min(1.0)
        center_term = center_term[has].mean(dim=1)
    else:
        center_term = center_term[has].sum(dim=1)
    return (point_term[has] + center_term).mean()


# ------------------------------------------------------------------------------- inputs

def _batch(seed, dtype=torch.float32, shape=(5, 1, 6, 8)):
    """Values and a mask: image 1 has no valid pixel, 2 one, 3 three, 4 an even count."""
    gen = torch.Generator().manual_seed(seed)
    values = torch.rand(shape, generator=gen, dtype=dtype) * 3 + 0.1
    mask = torch.rand(shape, generator=gen) > 0.4
    mask[1] = False
    mask[2] = False
    mask[2, 0, 3, 2] = True
    mask[3] = False
    mask[3, 0, 0, :3] = True
    mask[4] = False
    mask[4, 0, 2:4, :5] = True
    return values, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_median_and_max_equal_the_boolean_indexing_versions(seed, dtype):
    values, mask = _batch(seed, dtype)
    assert mask[4].sum() % 2 == 0 and mask[0].sum() > 10  # interpolated medians are covered
    for ours, ref in ((distill.masked_median, ref_median), (distill.masked_max, ref_max)):
        grads = []
        for fn in (ours, ref):
            leaf = values.clone().requires_grad_(True)
            out = fn(leaf, mask)
            (out * torch.arange(1.0, 6.0, dtype=out.dtype).view(-1, 1, 1, 1)).sum().backward()
            grads.append((out.detach(), leaf.grad))
        (got, got_grad), (want, want_grad) = grads
        assert got.shape == (5, 1, 1, 1) and got.dtype == want.dtype
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_grad, want_grad)
        assert got[1].item() == 0.0  # no valid pixel


def test_masked_median_is_the_middle_value_or_the_mean_of_the_two():
    values = torch.tensor([5.0, 1.0, 9.0, 3.0, 7.0, 100.0]).view(1, 1, 1, 6)
    odd = torch.tensor([True, True, True, True, True, False]).view(1, 1, 1, 6)
    even = torch.tensor([True, True, False, True, True, False]).view(1, 1, 1, 6)
    assert distill.masked_median(values, odd).item() == 5.0
    assert distill.masked_median(values, even).item() == 4.0  # (3 + 5) / 2


def test_masked_l1_equals_the_previous_version_with_gradients():
    prediction, mask = _batch(3)
    target = torch.rand(prediction.shape, generator=torch.Generator().manual_seed(9))
    for m in (mask, torch.zeros_like(mask)):  # some images empty; the whole batch empty
        results = []
        for fn in (distill.masked_l1, ref_masked_l1):
            leaf = prediction.clone().requires_grad_(True)
            value = fn(leaf, target, m)
            value.backward()
            results.append((value.detach(), leaf.grad))
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(results[0][1], results[1][1])


@pytest.mark.parametrize("count", [1, 4, 7, 30])
def test_sample_points_equals_the_loop_exactly(count):
    values, mask = _batch(4, torch.float64, shape=(5, 1, 7, 9))
    points, point_mask = chamfer.sample_points(values, mask, count)
    want_points, want_mask = ref_sample_points(values, mask, count)
    assert torch.equal(point_mask, want_mask)
    assert torch.equal(points, want_points)  # the same pixels, not just close values
    assert point_mask[2].sum() == 1 and not point_mask[1].any()


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chamfer_1d_equals_the_indexing_version_with_gradients(reduction):
    values, mask = _batch(5, torch.float64, shape=(5, 1, 4, 6))
    points, point_mask = ref_sample_points(values / 3, mask, 6)
    for pm in (point_mask, torch.zeros_like(point_mask)):
        results = []
        for fn in (chamfer.chamfer_1d, ref_chamfer_1d):
            centers = torch.linspace(0.1, 0.9, 4, dtype=torch.float64).repeat(5, 1)
            centers.requires_grad_(True)
            value = fn(points, centers, pm, reduction)
            value.backward()
            results.append((value.detach(), centers.grad))
        torch.testing.assert_close(results[0][0], results[1][0])
        torch.testing.assert_close(results[0][1], results[1][1])
        assert torch.isfinite(results[0][1]).all()


def _cfg(**loss):
    return from_dict({"teacher_dir": "unused", **loss})


@pytest.mark.parametrize("align", ["normalized", "si", "ssi"])
def test_terms_equal_the_previous_implementation(align, monkeypatch):
    """DistillationTerm and ChamferTerm, values and gradients, old functions vs new ones."""
    values, mask = _batch(6, shape=(5, 1, 8, 10))
    teacher = values * mask  # 0 = sky
    distill_term = DistillationTerm(_cfg(distill_weight=1.0, distill_align=align))
    chamfer_term = ChamferTerm(_cfg(chamfer_weight=1.0, bins=4, chamfer_points=16,
                                    distill_align=align, chamfer_reduction="sum"))

    def run():
        student = torch.rand(values.shape, generator=torch.Generator().manual_seed(7)) * 0.3
        student.requires_grad_(True)
        centers = torch.linspace(0.1, 0.9, 4).repeat(5, 1).requires_grad_(True)
        outputs = {("disp", 0): student, "bin_centers": centers}
        inputs = {"teacher_disp": teacher}
        loss = distill_term(inputs, outputs) + chamfer_term(inputs, outputs)
        loss.backward()
        return loss.detach(), student.grad, centers.grad

    ours = run()
    monkeypatch.setattr(distill, "masked_median", ref_median)
    monkeypatch.setattr(distill, "masked_max", ref_max)
    monkeypatch.setattr(distill, "masked_l1", ref_masked_l1)
    monkeypatch.setattr(chamfer, "sample_points", ref_sample_points)
    monkeypatch.setattr(chamfer, "chamfer_1d", ref_chamfer_1d)
    reference = run()
    for got, want in zip(ours, reference):
        torch.testing.assert_close(got, want)
    assert ours[1].abs().sum() > 0 and ours[2].abs().sum() > 0
