"""Photometric / smoothness terms against numpy + scipy, and the criterion's switches and wiring."""

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from litemono.config import from_dict
from litemono.losses import criterion as criterion_module
from litemono.losses import (Criterion, build_criterion, edge_aware_smoothness, photometric_error,
                             select_reprojection, ssim_error)

HEIGHT, WIDTH = 16, 32


def numpy_dssim(x, y):
    """(1 - SSIM) / 2 with 3x3 box windows over a mirrored border, in float64."""
    def box(a):
        return uniform_filter(a, size=(1, 1, 3, 3), mode="mirror")
    x, y = x.astype(np.float64), y.astype(np.float64)
    mx, my = box(x), box(y)
    vx, vy, cxy = box(x ** 2) - mx ** 2, box(y ** 2) - my ** 2, box(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    ssim = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return np.clip((1 - ssim) / 2, 0, 1)


def numpy_smoothness(disp, image):
    """Edge-aware smoothness of the mean-normalised disparity, one image at a time."""
    total_x, total_y = [], []
    for d, img in zip(disp[:, 0].astype(np.float64), image.astype(np.float64)):
        d = d / (d.mean() + 1e-7)
        weight_x = np.exp(-np.abs(np.diff(img, axis=2)).mean(axis=0))
        weight_y = np.exp(-np.abs(np.diff(img, axis=1)).mean(axis=0))
        total_x.append(np.abs(np.diff(d, axis=1)) * weight_x)
        total_y.append(np.abs(np.diff(d, axis=0)) * weight_y)
    return np.mean(total_x) + np.mean(total_y)


def test_ssim_matches_numpy():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 7, 9, generator=gen)
    y = (x + 0.2 * torch.rand(2, 3, 7, 9, generator=gen)).clamp(0, 1)
    # float32 E[x^2] - mu^2 loses ~1e-5 against float64 (upstream computes it the same way)
    np.testing.assert_allclose(ssim_error(x, y).numpy(), numpy_dssim(x.numpy(), y.numpy()),
                               atol=5e-5)
    assert ssim_error(x, x).abs().max().item() < 1e-5


@pytest.mark.parametrize("use_ssim", [True, False])
def test_photometric_error_mixes_ssim_and_l1(use_ssim):
    gen = torch.Generator().manual_seed(1)
    pred, target = torch.rand(2, 3, 6, 8, generator=gen), torch.rand(2, 3, 6, 8, generator=gen)
    l1 = np.abs(pred.numpy() - target.numpy()).mean(axis=1, keepdims=True)
    expected = l1
    if use_ssim:
        dssim = numpy_dssim(pred.numpy(), target.numpy()).mean(axis=1, keepdims=True)
        expected = 0.85 * dssim + 0.15 * l1
    got = photometric_error(pred, target, use_ssim=use_ssim)
    np.testing.assert_allclose(got.numpy(), expected, atol=5e-5)


def test_several_images_per_target_equal_separate_calls():
    """N warped images share one target: frame-major stacking, target moments computed once."""
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(2, 3, 6, 8, generator=gen)
    preds = [torch.rand(2, 3, 6, 8, generator=gen) for _ in range(3)]
    together = photometric_error(torch.cat(preds), target)
    separate = torch.cat([photometric_error(p, target) for p in preds])
    torch.testing.assert_close(together, separate, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ssim_error(torch.cat(preds), target)[2:4].numpy(),
                               numpy_dssim(preds[1].numpy(), target.numpy()), atol=5e-5)
    with pytest.raises(ValueError, match="not a multiple"):
        ssim_error(torch.rand(3, 3, 6, 8), target)


def test_shared_target_moments_give_the_same_errors_bit_for_bit():
    from litemono.losses.photometric import target_moments

    gen = torch.Generator().manual_seed(4)
    target = torch.rand(2, 3, 6, 8, generator=gen)
    preds = torch.rand(4, 3, 6, 8, generator=gen, requires_grad=True)
    moments = target_moments(target)
    shared = photometric_error(preds, target, moments=moments)
    assert torch.equal(shared, photometric_error(preds, target))
    (grad_shared,) = torch.autograd.grad(shared.sum(), preds)
    (grad_own,) = torch.autograd.grad(photometric_error(preds, target).sum(), preds)
    assert torch.equal(grad_shared, grad_own)
    with pytest.raises(ValueError, match="do not fit"):
        ssim_error(preds, target[:, :, :4], moments)


def test_smoothness_matches_numpy():
    gen = torch.Generator().manual_seed(2)
    disp, image = torch.rand(3, 1, 5, 11, generator=gen), torch.rand(3, 3, 5, 11, generator=gen)
    got = edge_aware_smoothness(disp, image).item()
    assert got == pytest.approx(numpy_smoothness(disp.numpy(), image.numpy()), rel=1e-5)
    # a flat disparity has no smoothness cost, whatever the image
    assert edge_aware_smoothness(torch.full_like(disp, 0.3), image).item() == pytest.approx(0.0)


def test_select_reprojection_min_automask_and_average():
    reprojection = torch.tensor([[0.5, 0.1], [0.3, 0.9]]).view(1, 2, 1, 2)  # (B, N, H, W)
    identity = torch.tensor([[0.2, 0.4], [0.6, 0.05]]).view(1, 2, 1, 2)
    error, automask = select_reprojection(reprojection, identity)
    np.testing.assert_allclose(error.flatten().numpy(), [0.2, 0.05], atol=1e-4)
    assert automask.flatten().tolist() == [False, False]
    error, automask = select_reprojection(reprojection, identity * 10)
    np.testing.assert_allclose(error.flatten().numpy(), [0.3, 0.1], atol=1e-6)
    assert automask.shape == (1, 1, 1, 2) and automask.all()
    # averages: reprojection (0.4, 0.5) vs identity (0.4, 0.225)
    error, _ = select_reprojection(reprojection, None, average=True)
    np.testing.assert_allclose(error.flatten().numpy(), [0.4, 0.5], atol=1e-6)
    error, automask = select_reprojection(reprojection, identity, average=True)
    np.testing.assert_allclose(error.flatten().numpy(), [0.4, 0.225], atol=1e-4)
    assert automask.flatten().tolist()[1] is False


def test_tie_break_noise_uses_the_global_generator():
    values = torch.rand(2, 2, 4, 4)
    torch.manual_seed(5)
    first, _ = select_reprojection(values + 1, values)
    torch.manual_seed(5)
    second, _ = select_reprojection(values + 1, values)
    assert torch.equal(first, second)
    assert 0 < (first - values.min(dim=1).values).abs().max().item() < 1e-4


def make_batch(batch=2, frames=(0, -1, 1), seed=0):
    """A random batch in the sample schema plus decoder outputs with identity poses."""
    gen = torch.Generator().manual_seed(seed)
    inputs, outputs = {}, {}
    for scale in range(4):
        h, w = HEIGHT // 2 ** scale, WIDTH // 2 ** scale
        K = torch.tensor([[0.58 * w, 0, 0.5 * w, 0], [0, 1.92 * h, 0.5 * h, 0],
                          [0, 0, 1, 0], [0, 0, 0, 1]])
        inputs[("K", scale)] = K.expand(batch, 4, 4)
        inputs[("inv_K", scale)] = torch.linalg.inv(K).expand(batch, 4, 4)
        for frame in frames:
            inputs[("color", frame, scale)] = torch.rand(batch, 3, h, w, generator=gen)
        if scale < 3:
            outputs[("disp", scale)] = torch.rand(batch, 1, h, w, generator=gen).requires_grad_()
    for frame in frames[1:]:
        outputs[("cam_T_cam", 0, frame)] = torch.eye(4).expand(batch, 4, 4)
    return inputs, outputs


def config(**options):
    return from_dict({"height": 32, "width": 32, **options})


def test_identity_pose_without_automasking_is_min_of_plain_errors():
    inputs, outputs = make_batch()
    criterion = build_criterion(config(automasking=False, ssim=False, disparity_smoothness=0.0))
    total, terms = criterion(inputs, outputs)
    target = inputs[("color", 0, 0)].numpy()
    per_frame = [np.abs(inputs[("color", f, 0)].numpy() - target).mean(axis=1) for f in (-1, 1)]
    expected = np.minimum(*per_frame).mean()  # identity pose: each warp returns its source
    assert total.item() == pytest.approx(expected, rel=1e-4)
    assert terms["photometric"].item() == pytest.approx(expected, rel=1e-4)
    assert terms["smoothness"].item() == 0.0
    assert all(outputs[("automask", s)].all() for s in (0, 1, 2))


def test_avg_reprojection_averages_frames():
    inputs, outputs = make_batch()
    criterion = build_criterion(config(automasking=False, ssim=False, avg_reprojection=True,
                                       disparity_smoothness=0.0))
    total, _ = criterion(inputs, outputs)
    target = inputs[("color", 0, 0)].numpy()
    per_frame = [np.abs(inputs[("color", f, 0)].numpy() - target).mean(axis=1) for f in (-1, 1)]
    assert total.item() == pytest.approx(np.mean(per_frame), rel=1e-4)


def test_total_is_mean_of_scales_with_scaled_smoothness():
    inputs, outputs = make_batch()
    torch.manual_seed(0)
    total, terms = build_criterion(config())(inputs, outputs)
    per_scale = [terms[f"loss/scale{s}"].item() for s in (0, 1, 2)]
    assert total.item() == pytest.approx(np.mean(per_scale), rel=1e-6)
    smooth = [1e-3 / 2 ** s * numpy_smoothness(outputs[("disp", s)].detach().numpy(),
                                                inputs[("color", 0, s)].numpy()) for s in (0, 1, 2)]
    assert terms["smoothness"].item() == pytest.approx(np.mean(smooth), rel=1e-5)
    assert terms["photometric"].item() + terms["smoothness"].item() == pytest.approx(total.item())
    for s in (0, 1, 2):  # default: warps and depths at full resolution
        assert outputs[("depth", 0, s)].shape == (2, 1, HEIGHT, WIDTH)
        assert outputs[("color", -1, s)].shape == (2, 3, HEIGHT, WIDTH)
        assert outputs[("automask", s)].dtype == torch.bool
    grads = torch.autograd.grad(total, [outputs[("disp", s)] for s in (0, 1, 2)])
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_v1_multiscale_warps_at_each_scale():
    inputs, outputs = make_batch()
    build_criterion(config(v1_multiscale=True))(inputs, outputs)
    for s in (0, 1, 2):
        assert outputs[("depth", 0, s)].shape == (2, 1, HEIGHT // 2 ** s, WIDTH // 2 ** s)
        assert outputs[("sample", 1, s)].shape == (2, HEIGHT // 2 ** s, WIDTH // 2 ** s, 2)


@pytest.mark.parametrize("v1_multiscale, expected", [(False, [0]), (True, [0, 1, 2])])
def test_target_moments_are_computed_once_per_resolution(v1_multiscale, expected, monkeypatch):
    from litemono.losses import criterion as criterion_module
    from litemono.losses import photometric

    sizes = []

    def counting(target):
        sizes.append(target.shape[-1])
        return photometric.target_moments(target)

    monkeypatch.setattr(criterion_module, "target_moments", counting)
    inputs, outputs = make_batch()
    torch.manual_seed(0)
    shared, _ = build_criterion(config(v1_multiscale=v1_multiscale))(inputs, outputs)
    assert sizes == [WIDTH // 2 ** s for s in expected]  # identity + 3 scales share them
    monkeypatch.setattr(criterion_module, "target_moments", lambda target: None)  # per call
    torch.manual_seed(0)
    own, _ = build_criterion(config(v1_multiscale=v1_multiscale))(*make_batch())
    assert torch.equal(shared, own)


@pytest.mark.parametrize("batch", [1, 3])
def test_stereo_and_any_batch_size(batch):
    inputs, outputs = make_batch(batch=batch, frames=(0, "s"))
    inputs["stereo_T"] = torch.eye(4).expand(batch, 4, 4)
    del outputs[("cam_T_cam", 0, "s")]  # falls back to inputs["stereo_T"]
    criterion = build_criterion(config(frame_ids=[0], use_stereo=True))
    assert criterion.source_frames == ["s"]
    total, _ = criterion(inputs, outputs)
    assert torch.isfinite(total) and outputs[("color", "s", 0)].shape[0] == batch


def test_missing_pose_names_the_key():
    inputs, outputs = make_batch()
    del outputs[("cam_T_cam", 0, 1)]
    with pytest.raises(KeyError, match="cam_T_cam"):
        build_criterion(config())(inputs, outputs)


class ConstantTerm:
    def __init__(self, cfg, name="distill", value=2.0):
        self.name, self.weight, self.value = name, cfg.loss.distill_weight, value

    def __call__(self, inputs, outputs):
        return outputs[("disp", 0)].mean() * 0 + self.value


def test_extra_terms_are_weighted_into_total(monkeypatch):
    # the registered distill term replaced by a constant one: only the weighting is under test
    monkeypatch.setitem(criterion_module.LOSS_TERMS, "distill",
                        criterion_module.LossTerm("distill", ConstantTerm))
    cfg = config(distill_weight=0.25, teacher_dir="unused")
    criterion = build_criterion(cfg)
    plain = Criterion([0, 1, 2], [-1, 1], 0.1, 100.0, 1e-3)
    inputs, outputs = make_batch()
    torch.manual_seed(3)
    total, terms = criterion(inputs, outputs)
    torch.manual_seed(3)
    base, _ = plain(inputs, dict(outputs))
    assert terms["distill"].item() == 2.0
    assert total.item() == pytest.approx(base.item() + 0.25 * 2.0, rel=1e-6)
