"""Distillation and Chamfer terms against independent numpy computations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from litemono.config import ConfigError, from_dict
from litemono.losses.chamfer import ChamferTerm, chamfer_1d, sample_points
from litemono.losses.distill import (ALIGNERS, DistillationTerm, align_median, masked_l1,
                                     teacher_mask)


def _teacher_and_student(seed=0, shape=(2, 1, 6, 8)):
    gen = torch.Generator().manual_seed(seed)
    teacher = torch.rand(shape, generator=gen, dtype=torch.float64) * 3 + 0.5
    teacher[:, :, :2, :3] = 0.0  # "sky"
    student = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.3 + 0.01
    return teacher, student


def _np_align(kind, t, s):
    """Align valid teacher values ``t`` to student values ``s`` (1-D numpy arrays)."""
    if kind in ("median", "si"):
        return t * np.median(s) / np.median(t)
    if kind == "normalized":
        centred = t - np.median(t)
        return 0.5 + centred / (2 * np.abs(centred).max())
    if kind == "minmax":  # centre on the median, then the whole range to [0, 1]
        centred = t - np.median(t)
        return (centred - centred.min()) / (centred.max() - centred.min())
    assert kind == "ssi", kind
    return np.median(s) + np.abs(s - np.median(s)).mean() * _np_normalize(t)


def _np_normalize(x):
    return (x - np.median(x)) / np.abs(x - np.median(x)).mean()


def _np_distill(kind, teacher, student, zero_below=0.0, masked=True):
    losses = []
    for t_img, s_img in zip(teacher.numpy(), student.numpy()):
        valid = t_img > zero_below if masked else np.ones_like(t_img, dtype=bool)
        t, s = t_img[valid], s_img[valid]
        if kind == "ssi":  # MiDaS: both sides normalised, weighted by the student's spread
            spread = np.abs(s - np.median(s)).mean()
            losses.append(spread * np.abs(_np_normalize(s) - _np_normalize(t)).mean())
            continue
        losses.append(np.abs(s - _np_align(kind, t, s)).mean())
    return float(np.mean(losses))


def _cfg(**options):
    return from_dict({"teacher_dir": "unused", **options})


@pytest.mark.parametrize("kind", sorted(ALIGNERS))
def test_alignment_matches_numpy(kind):
    teacher, student = _teacher_and_student()
    mask = teacher > 0
    aligned = ALIGNERS[kind](teacher, student, mask)
    for b in range(teacher.shape[0]):
        valid = mask[b].numpy()
        expected = _np_align(kind, teacher[b].numpy()[valid], student[b].numpy()[valid])
        np.testing.assert_allclose(aligned[b].numpy()[valid], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", sorted(ALIGNERS))
def test_distillation_value_matches_numpy(kind):
    teacher, student = _teacher_and_student(seed=1)
    term = DistillationTerm(_cfg(distill_weight=0.5, distill_align=kind))
    assert term.name == "distill" and term.weight == 0.5
    loss = term({"teacher_disp": teacher}, {("disp", 0): student})
    assert loss.item() == pytest.approx(_np_distill(kind, teacher, student), rel=1e-9)


def test_removed_alignments_and_flags_are_rejected():
    assert sorted(ALIGNERS) == ["minmax", "normalized", "si", "ssi"]
    assert from_dict({}).loss.distill_align == "normalized"  # the report's; it trains
    for options in ({"distill_align": "median"}, {"distill_align": "lstsq"},
                    {"distill_relative": True}):
        with pytest.raises(ConfigError):
            from_dict(options)


def _directional_slopes(kind, seed=6):
    """Gradient of the distillation term along 'scale the student' and 'shift the student'."""
    teacher, student = _teacher_and_student(seed=seed)
    student.requires_grad_(True)
    term = DistillationTerm(_cfg(distill_weight=1.0, distill_align=kind))
    term({"teacher_disp": teacher}, {("disp", 0): student}).backward()
    mask = teacher > 0
    scale_slope = (student.grad * student.detach() * mask).sum().item()
    shift_slope = (student.grad * mask).sum().item()
    return scale_slope, shift_slope, student.grad.abs().sum().item()


@pytest.mark.parametrize("kind", ["si", "ssi"])
def test_invariant_distillation_has_no_slope_along_the_student_scale(kind):
    teacher, student = _teacher_and_student(seed=4)
    term = DistillationTerm(_cfg(distill_weight=1.0, distill_align=kind))
    base = term({"teacher_disp": teacher}, {("disp", 0): student}).item()
    shifted = term({"teacher_disp": teacher}, {("disp", 0): student + 0.3}).item()
    scaled = term({"teacher_disp": teacher}, {("disp", 0): 7.0 * student}).item()
    assert scaled == pytest.approx(7.0 * base, rel=1e-9)  # only the detached units factor
    # si keeps the teacher's disparity ratios, so a shifted student is farther from them;
    # ssi does not see a shift at all
    assert shifted == pytest.approx(base, rel=1e-9) if kind == "ssi" else shifted > 1.1 * base
    # no slope along the scale (nor, for ssi, the shift), though the gradient is not 0
    scale_slope, shift_slope, total = _directional_slopes(kind)
    assert total > 1e-3 and abs(scale_slope) < 1e-9 * total
    assert abs(shift_slope) < 1e-9 * total if kind == "ssi" else abs(shift_slope) > 1e-3 * total


def test_detached_median_alignment_rewards_shrinking_the_student():
    """Why ``median`` was removed (module docstring): with its target following the detached
    student, a positive slope along 'scale up' means gradient descent scales every disparity
    down (si and ssi have none, see the test above)."""
    for seed in range(6):
        teacher, student = _teacher_and_student(seed=seed)
        student.requires_grad_(True)
        mask = teacher > 0
        masked_l1(student, align_median(teacher, student.detach(), mask), mask).backward()
        assert (student.grad * student.detach() * mask).sum().item() > 0


def test_distillation_masks_sky_and_has_a_fixed_target_by_default():
    teacher, student = _teacher_and_student(seed=2)
    student.requires_grad_(True)
    term = DistillationTerm(_cfg(distill_weight=1.0))  # default: the report's normalized
    loss = term({"teacher_disp": teacher}, {("disp", 0): student})
    loss.backward()
    mask = teacher > 0
    # the target does not follow the student: the gradient is sign(s - t') / (count * batch)
    aligned = ALIGNERS["normalized"](teacher, student.detach(), mask)
    count = mask.sum(dim=(1, 2, 3), keepdim=True).double()
    expected = torch.sign(student.detach() - aligned) * mask / count / teacher.shape[0]
    torch.testing.assert_close(student.grad, expected)
    changed = student.detach().clone()
    changed[~mask] = 0.9  # sky pixels of the student do not matter
    again = term({"teacher_disp": teacher}, {("disp", 0): changed})
    assert again.item() == pytest.approx(loss.item(), rel=1e-12)


@pytest.mark.parametrize("kind, expected", [
    # median 15, farthest value 150 - 15 = 135: 0.5 + (t - 15) / 270; only 150 reaches an end
    ("normalized", [0.5 - 13 / 270, 0.5 - 10 / 270, 0.5 - 5 / 270, 0.5 + 5 / 270, 0.5 + 25 / 270,
                    1.0]),
    ("minmax", [0.0, 3 / 148, 8 / 148, 18 / 148, 38 / 148, 1.0]),  # (t - 2) / 148
])
def test_the_two_readings_of_the_reports_alignment_by_hand(kind, expected):
    # a right-skewed teacher: normalized spans [0.45, 1], minmax [0, 1]
    teacher = torch.tensor([2.0, 5.0, 10.0, 20.0, 40.0, 150.0], dtype=torch.float64)
    teacher = teacher.view(1, 1, 2, 3)
    aligned = ALIGNERS[kind](teacher, torch.zeros_like(teacher), teacher > 0)
    np.testing.assert_allclose(aligned.flatten().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("kind", ["minmax", "si"])
@pytest.mark.parametrize("options, zero_below, masked", [
    ({}, 0.0, True), ({"teacher_zero_below": 1.0}, 1.0, True),
    ({"teacher_mask": False}, 0.0, False)])
def test_teacher_mask_options_choose_the_pixels_of_both_terms(kind, options, zero_below, masked):
    teacher, student = _teacher_and_student(seed=5)  # values in [0.5, 3.5] and exact zeros
    cfg = _cfg(distill_weight=1.0, chamfer_weight=1.0, bins=6, chamfer_points=8,
               distill_align=kind, **options)
    mask = teacher_mask(teacher, cfg.loss)
    assert torch.equal(mask, teacher > zero_below if masked else torch.ones_like(mask))
    loss = DistillationTerm(cfg)({"teacher_disp": teacher}, {("disp", 0): student})
    want = _np_distill(kind, teacher, student, zero_below, masked)
    assert loss.item() == pytest.approx(want, rel=1e-9)
    outputs = {("disp", 0): student, "bin_centers": torch.rand(2, 6, dtype=torch.float64)}
    ChamferTerm(cfg)({"teacher_disp": teacher}, outputs)
    for b in range(2):  # Chamfer's points: the aligned valid pixels, 8 at a fixed stride
        valid = mask[b].numpy()
        aligned = _np_align(kind, teacher[b].numpy()[valid], student[b].numpy()[valid])
        np.testing.assert_allclose(outputs["chamfer_points"][b].numpy(),
                                   aligned[(np.arange(8) * aligned.size) // 8], rtol=1e-9)
    assert outputs["chamfer_point_mask"].all()


def test_distillation_averages_upsampled_scales():
    teacher, student = _teacher_and_student(seed=3, shape=(2, 1, 8, 8))
    coarse = student[:, :, ::2, ::2].clone()
    term = DistillationTerm(_cfg(distill_weight=1.0, distill_scales=[0, 1]))
    loss = term({"teacher_disp": teacher}, {("disp", 0): student, ("disp", 1): coarse})
    upsampled = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    expected = (_np_distill("normalized", teacher, student)
                + _np_distill("normalized", teacher, upsampled)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def _np_chamfer(points, centers, reduction="mean"):
    reduce = np.mean if reduction == "mean" else np.sum
    d2 = (points[:, None] - centers[None, :]) ** 2
    return reduce(d2.min(axis=1)) + reduce(d2.min(axis=0))


def _np_chamfer_loops(points, centers, reduction):
    """The report's Eq. 1 written as loops (independent of the broadcasting above)."""
    to_centres = [min((p - c) ** 2 for c in centers) for p in points]
    to_points = [min((c - p) ** 2 for p in points) for c in centers]
    if reduction == "sum":
        return sum(to_centres) + sum(to_points)
    return sum(to_centres) / len(points) + sum(to_points) / len(centers)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_chamfer_reductions_against_numpy_both_directions(reduction):
    rng = np.random.default_rng(1)
    points, centers = rng.random((3, 23)), rng.random((3, 7))
    mask = np.ones((3, 23), dtype=bool)
    mask[1, 15:] = False  # padding: image 1 has 15 points
    mask[2, :] = False  # an image without points does not count
    value = chamfer_1d(torch.from_numpy(points), torch.from_numpy(centers),
                       torch.from_numpy(mask), reduction=reduction).item()
    expected = [_np_chamfer_loops(p[m], c, reduction)
                for p, c, m in zip(points[:2], centers[:2], mask[:2])]
    assert value == pytest.approx(np.mean(expected), rel=1e-12)
    # each direction alone: a point far from every centre, a centre far from every point
    near = torch.tensor([[0.5, 0.5, 0.5]], dtype=torch.float64)
    one_point_off = chamfer_1d(torch.tensor([[0.5, 0.5, 0.9]], dtype=torch.float64), near,
                               reduction=reduction).item()
    one_centre_off = chamfer_1d(near, torch.tensor([[0.5, 0.5, 0.9]], dtype=torch.float64),
                                reduction=reduction).item()
    scale = 1.0 if reduction == "sum" else 1 / 3
    assert one_point_off == pytest.approx(0.16 * scale) and one_centre_off == pytest.approx(
        0.16 * scale)
    # the library's two reductions of one image: mean = a + b, sum = N a + K b, where a and b
    # are the point side's and the centre side's mean squared distances
    p, c = rng.random(11), rng.random(4)
    d2 = (p[:, None] - c[None, :]) ** 2
    a, b = d2.min(axis=1).mean(), d2.min(axis=0).mean()
    p_t, c_t = torch.from_numpy(p)[None], torch.from_numpy(c)[None]
    assert chamfer_1d(p_t, c_t, reduction="mean").item() == pytest.approx(a + b, rel=1e-12)
    assert chamfer_1d(p_t, c_t, reduction="sum").item() == pytest.approx(11 * a + 4 * b,
                                                                         rel=1e-12)
    with pytest.raises(ValueError, match="--chamfer_reduction"):
        chamfer_1d(near, near, reduction="max")


def test_chamfer_both_directions_against_numpy():
    points = torch.tensor([[0.1, 0.2, 0.9, 0.0], [0.5, 0.6, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    centers = torch.tensor([[0.1, 0.2, 0.9], [0.05, 0.55, 0.95]], dtype=torch.float64)
    # image 0: every point is a centre and vice versa -> 0; image 1 has distances both ways
    expected = (0.0 + _np_chamfer(np.array([0.5, 0.6]), np.array([0.05, 0.55, 0.95]))) / 2
    assert chamfer_1d(points, centers, mask).item() == pytest.approx(expected, rel=1e-12)
    # one direction only: extra centres far from the points are penalised by centre -> point
    one = chamfer_1d(torch.tensor([[0.2]]), torch.tensor([[0.2, 0.7]]))
    assert one.item() == pytest.approx(0.25 / 2)
    rng = np.random.default_rng(0)
    p, c = rng.random((3, 17)), rng.random((3, 5))
    value = chamfer_1d(torch.from_numpy(p), torch.from_numpy(c)).item()
    assert value == pytest.approx(np.mean([_np_chamfer(a, b) for a, b in zip(p, c)]), rel=1e-12)


def test_sample_points_fixed_stride_without_sky():
    values = torch.arange(1, 11, dtype=torch.float64).view(1, 1, 2, 5)
    values[0, 0, 0, 0] = 0.0
    points, mask = sample_points(values, values > 0, 4)
    valid = np.arange(2, 11)  # raster order, the zero dropped
    np.testing.assert_array_equal(points[0].numpy(), valid[(np.arange(4) * 9) // 4])
    assert mask.all()
    few, few_mask = sample_points(values, values > 0, 20)
    assert few_mask.sum() == 9 and few[0, :9].tolist() == valid.tolist()


@pytest.mark.parametrize("kind,reduction", [(k, r) for k in sorted(ALIGNERS)
                                            for r in ("mean", "sum")])
def test_chamfer_term_value_and_gradient_reach_centres(kind, reduction):
    teacher, student = _teacher_and_student(seed=4, shape=(2, 1, 8, 10))
    centers = torch.linspace(0.05, 0.95, 6, dtype=torch.float64).repeat(2, 1).requires_grad_(True)
    student.requires_grad_(True)
    cfg = _cfg(chamfer_weight=0.1, bins=6, chamfer_points=16, distill_align=kind,
               chamfer_reduction=reduction)
    term = ChamferTerm(cfg)
    assert term.name == "chamfer" and term.weight == 0.1
    loss = term({"teacher_disp": teacher}, {"bin_centers": centers, ("disp", 0): student})
    expected = []
    for b in range(2):
        valid = teacher[b].numpy() > 0
        aligned = _np_align(kind, teacher[b].numpy()[valid], student[b].detach().numpy()[valid])
        sampled = aligned[(np.arange(16) * aligned.size) // 16]
        expected.append(_np_chamfer(sampled, centers[b].detach().numpy(), reduction))
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-9)
    loss.backward()
    assert centers.grad is not None and centers.grad.abs().sum() > 0
    assert torch.isfinite(centers.grad).all()
    assert student.grad is None  # the student only provides the alignment statistics


def test_terms_name_the_missing_inputs():
    teacher, student = _teacher_and_student()
    with pytest.raises(KeyError, match="--teacher_dir"):
        DistillationTerm(_cfg(distill_weight=1.0))({}, {("disp", 0): student})
    term = ChamferTerm(_cfg(chamfer_weight=1.0, bins=4))
    with pytest.raises(KeyError, match="--bins"):
        term({"teacher_disp": teacher}, {("disp", 0): student})


def test_all_sky_batch_gives_zero_with_graph():
    teacher = torch.zeros(1, 1, 4, 4)
    student = torch.rand(1, 1, 4, 4, requires_grad=True)
    loss = DistillationTerm(_cfg(distill_weight=1.0))({"teacher_disp": teacher},
                                                      {("disp", 0): student})
    assert loss.item() == 0.0
    loss.backward()
    centers = torch.rand(1, 4, requires_grad=True)
    empty = chamfer_1d(torch.zeros(1, 3), centers, torch.zeros(1, 3, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad
