"""The criterion against one loss evaluation recorded from the upstream trainer (loss_step/).

For every reference folder holding ``step.npz`` + ``manifest.json``: the stored batch, decoder
disparities and pose-decoder outputs go through our geometry and criterion, built from the
manifest's options, and every recorded intermediate (poses, depths, sampling grids, warped
images), the per-scale and total losses and d loss / d disp must match.
"""
import json
import re

import numpy as np
import pytest
import torch

from conftest import reference_params
from litemono.config import from_dict
from litemono.geometry import transformation_from_parameters
from litemono.losses import build_criterion

MAX_FLIPPED = 0.01  # fraction of gradient elements allowed off by a flipped per-pixel minimum
INPUT_KEY = re.compile(r"^(color|K|inv_K)_(?:(-?\d+|s)_)?(\d+)$")


def frame_id(text):
    return text if text == "s" else int(text)


def load_step(folder):
    """(manifest, arrays as tensors, inputs dict in the sample schema, options)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    with np.load(folder / "step.npz") as data:
        arrays = {key: torch.from_numpy(data[key]) for key in data.files}
    inputs = {}
    for key, value in arrays.items():
        match = INPUT_KEY.match(key)
        if match is None:
            continue
        kind, frame, scale = match.groups()
        if kind == "color":
            inputs[("color", frame_id(frame), int(scale))] = value
        else:
            inputs[(kind, int(scale))] = value
    if "stereo_T" in arrays:
        inputs["stereo_T"] = arrays["stereo_T"]
    return manifest, arrays, inputs, manifest["options"]


def criterion_for(options):
    frames = [f for f in options["frame_ids"] if f != "s"]
    cfg = from_dict({
        "frame_ids": frames, "use_stereo": "s" in options["frame_ids"],
        "scales": options["scales"], "min_depth": options["min_depth"],
        "max_depth": options["max_depth"], "disparity_smoothness": options["disparity_smoothness"],
        "ssim": options["ssim"], "automasking": options["automasking"],
        "avg_reprojection": options["avg_reprojection"],
        "v1_multiscale": options["v1_multiscale"]})
    return build_criterion(cfg)


def noise_seed(manifest):
    match = re.search(r"manual_seed\((\d+)\)", manifest.get("noise", ""))
    assert match or not manifest["options"]["automasking"], \
        "manifest 'noise' names no torch.manual_seed(...) for the tie-breaking noise"
    return int(match.group(1)) if match else 0


@pytest.mark.upstream
@pytest.mark.parametrize("folder", reference_params("step.npz", "manifest.json"))
def test_loss_step_matches_upstream(folder):
    manifest, arrays, inputs, options = load_step(folder)
    tolerance = manifest["tolerance"]
    image_atol = tolerance["warped_images_and_depth"]["atol"]
    loss_rtol = tolerance["loss"]["rtol"]
    scales = options["scales"]
    sources = [f for f in options["frame_ids"] if f != 0]
    target = inputs[("color", 0, 0)]
    assert target.shape == (options["batch"], 3, options["height"], options["width"])

    disps = [arrays[f"disp_{s}"].clone().requires_grad_(True) for s in scales]
    outputs = {("disp", s): d for s, d in zip(scales, disps)}
    for frame in sources:
        if frame == "s":
            continue  # the criterion takes inputs["stereo_T"]
        batch = arrays[f"axisangle_{frame}"].shape[0]
        pose = transformation_from_parameters(arrays[f"axisangle_{frame}"].reshape(batch, 1, 3),
                                              arrays[f"translation_{frame}"].reshape(batch, 1, 3),
                                              invert=frame < 0)
        torch.testing.assert_close(pose, arrays[f"cam_T_cam_{frame}"], atol=1e-6, rtol=1e-5)
        outputs[("cam_T_cam", 0, frame)] = pose

    torch.manual_seed(noise_seed(manifest))
    total, terms = criterion_for(options)(inputs, outputs)

    for scale in scales:
        torch.testing.assert_close(outputs[("depth", 0, scale)], arrays[f"depth_{scale}"],
                                   atol=image_atol, rtol=0)
        for frame in sources:
            torch.testing.assert_close(outputs[("sample", frame, scale)],
                                       arrays[f"sample_{frame}_{scale}"], atol=image_atol, rtol=0)
            torch.testing.assert_close(outputs[("color", frame, scale)],
                                       arrays[f"color_warped_{frame}_{scale}"],
                                       atol=image_atol, rtol=0)
        assert terms[f"loss/scale{scale}"].item() == pytest.approx(
            arrays[f"loss_{scale}"].item(), rel=loss_rtol)
    assert total.item() == pytest.approx(arrays["loss"].item(), rel=loss_rtol)
    assert total.item() == pytest.approx(manifest["loss"], rel=loss_rtol)

    fractions = manifest.get("fraction_of_pixels_where_reprojection_beats_identity")
    if options["automasking"] and fractions:
        got = [outputs[("automask", s)].float().mean().item() for s in scales]
        assert got == pytest.approx(fractions, abs=1e-3)

    # d loss / d disp. The per-pixel minimum over the reprojection errors and the identity
    # errors (+ 1e-5 tie-break noise) is a discrete choice, and float rounding that differs
    # between machines flips it at a few near-tie pixels (seen with torch 2.14.1 on an AVX-512
    # Xeon: 17 of 24,576 full-resolution elements, 0.07-0.7% per scale), where the gradient then
    # follows the other branch. So: the recorded tolerance at all but MAX_FLIPPED of each
    # scale's elements, and the whole gradient within 1% in norm (seen: 0.09-0.23%).
    grads = torch.autograd.grad(total, disps)
    for scale, grad in zip(scales, grads):
        want = arrays[f"grad_disp_{scale}"]
        close = torch.isclose(grad, want, atol=tolerance["grad_disp"]["atol"],
                              rtol=tolerance["grad_disp"]["rtol"])
        assert (~close).float().mean() <= MAX_FLIPPED, (scale, int((~close).sum()))
        assert (grad - want).norm() <= 1e-2 * want.norm(), scale
