"""The training objective: view synthesis, photometric error, smoothness and extra terms.

Lite-Mono's loss (CVPR 2023, section 3.3) = monodepth2's (ICCV 2019, section 3): per scale s the
disparity is upsampled to input size (unless ``--v1_multiscale``), sources warped into the
target, the per-pixel minimum photometric error (automasked) averaged, plus
``disparity_smoothness / 2^s`` x edge-aware smoothness; scales averaged; extra terms
(:func:`register_loss_term`) weighted. Scale-independent work is done once per call. Numbers
match upstream's ``generate_images_pred`` + ``compute_losses`` (tests/test_upstream_loss.py),
noise draws included."""
from __future__ import annotations

from dataclasses import dataclass
from typing import (Any, Callable, Dict, List, Mapping, MutableMapping, Optional, Sequence, Tuple,
                    Union)

import torch
import torch.nn.functional as F
from torch import nn

from .. import config
from ..options import option
from ..geometry import backproject, disp_to_depth, project, warp
from .chamfer import ChamferTerm
from .distill import DistillationTerm
from .photometric import TargetMoments, photometric_error, select_reprojection, target_moments
from .smoothness import edge_weights, smoothness_loss

FrameId = Union[int, str]


class Criterion(nn.Module):
    """Self-supervised loss of one batch (module docstring).

    ``source_frames``: ids warped into the target (``"s"``: stereo); ``use_ssim``: SSIM + L1 or L1
    (``--no_ssim``); ``avg_reprojection``: mean over sources instead of minimum; ``extra_terms``:
    objects with ``name``, ``weight`` and ``__call__(inputs, outputs)``."""

    def __init__(self, scales: Sequence[int], source_frames: Sequence[FrameId],
                 min_depth: float, max_depth: float, disparity_smoothness: float,
                 use_ssim: bool = True, automasking: bool = True, avg_reprojection: bool = False,
                 v1_multiscale: bool = False, extra_terms: Sequence[Any] = ()):
        super().__init__()
        if not source_frames:
            raise ValueError("Criterion needs at least one source frame (--frame_ids / --use_stereo)")
        self.scales = list(scales)
        self.source_frames = list(source_frames)
        self.min_depth, self.max_depth = min_depth, max_depth
        self.disparity_smoothness = disparity_smoothness
        self.use_ssim, self.automasking = use_ssim, automasking
        self.avg_reprojection, self.v1_multiscale = avg_reprojection, v1_multiscale
        self.extra_terms = list(extra_terms)

    def forward(self, inputs: Mapping[Any, Any], outputs: MutableMapping[Any, Any]
                ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Loss of a batch: ``(total, terms)``.

        ``outputs`` needs ``("disp", s)`` (B, 1, H/2^s, W/2^s) and ``("cam_T_cam", 0, f)`` (B, 4,
        4); it gains ``("depth", 0, s)``, ``("sample", f, s)``, warped ``("color", f, s)`` and
        ``("automask", s)`` (B, 1, H, W) bool. ``terms``: detached ``"photometric"``,
        ``"smoothness"`` (weighted, scale-averaged), ``"loss/scale{s}"`` and each extra term
        unweighted."""
        poses = {frame: self._pose(inputs, outputs, frame) for frame in self.source_frames}
        identity: Dict[int, torch.Tensor] = {}  # identity errors per source resolution
        moments: Dict[int, TargetMoments] = {}  # the targets' SSIM moments per resolution
        photometric, smoothness, per_scale = [], [], []
        for scale in self.scales:
            res = scale if self.v1_multiscale else 0
            target = inputs[("color", 0, res)]
            if self.use_ssim and res not in moments:
                moments[res] = target_moments(target)
            reprojection = self._reprojection_errors(inputs, outputs, poses, scale, res,
                                                     moments.get(res))
            if self.automasking and res not in identity:
                sources = [inputs[("color", frame, res)] for frame in self.source_frames]
                identity[res] = self._errors(sources, target, moments.get(res))
            error, automask = select_reprojection(reprojection, identity.get(res),
                                                  self.avg_reprojection)
            outputs[("automask", scale)] = automask
            weights = edge_weights(inputs[("color", 0, scale)])
            smooth = smoothness_loss(outputs[("disp", scale)], weights)
            photometric.append(error.mean())
            smoothness.append(self.disparity_smoothness * smooth / 2 ** scale)
            per_scale.append(photometric[-1] + smoothness[-1])
        total = torch.stack(per_scale).sum() / len(self.scales)
        terms = {"photometric": torch.stack(photometric).mean().detach(),
                 "smoothness": torch.stack(smoothness).mean().detach()}
        terms.update({f"loss/scale{s}": v.detach() for s, v in zip(self.scales, per_scale)})
        for term in self.extra_terms:
            value = term(inputs, outputs)
            terms[term.name] = value.detach()
            total = total + term.weight * value
        return total, terms

    @staticmethod
    def _pose(inputs: Mapping[Any, Any], outputs: Mapping[Any, Any], frame: FrameId) -> torch.Tensor:
        key = ("cam_T_cam", 0, frame)
        if key in outputs:
            return outputs[key]
        if frame == "s" and "stereo_T" in inputs:
            return inputs["stereo_T"]
        raise KeyError(f"criterion: outputs lack {key}: the engine must supply the (B, 4, 4) pose "
                       f"of every source frame of --frame_ids (and 'stereo_T' with --use_stereo)")

    def _reprojection_errors(self, inputs: Mapping[Any, Any], outputs: MutableMapping[Any, Any],
                             poses: Mapping[FrameId, torch.Tensor], scale: int, res: int,
                             moments: Optional[TargetMoments]) -> torch.Tensor:
        """Warp every source frame with the depth of ``scale``; returns (B, N, h, w) errors."""
        target = inputs[("color", 0, res)]
        disp = outputs[("disp", scale)]
        if disp.shape[-2:] != target.shape[-2:]:
            disp = F.interpolate(disp, size=target.shape[-2:], mode="bilinear",
                                 align_corners=False)
        _, depth = disp_to_depth(disp, self.min_depth, self.max_depth)
        outputs[("depth", 0, scale)] = depth
        points = backproject(depth, inputs[("inv_K", res)])
        warped: List[torch.Tensor] = []
        for frame in self.source_frames:
            sample = project(points, inputs[("K", res)], poses[frame])
            outputs[("sample", frame, scale)] = sample
            outputs[("color", frame, scale)] = warp(inputs[("color", frame, res)], sample)
            warped.append(outputs[("color", frame, scale)])
        return self._errors(warped, target, moments)

    def _errors(self, images: Sequence[torch.Tensor], target: torch.Tensor,
                moments: Optional[TargetMoments]) -> torch.Tensor:
        """Photometric errors of N images against one target in one batched call: (B, N, h, w)."""
        count, batch = len(images), target.shape[0]
        stacked = torch.cat(list(images), dim=0)  # (N*B, 3, h, w), frame-major
        errors = photometric_error(stacked, target, self.use_ssim, moments)  # (N*B, 1, h, w)
        return errors.view(count, batch, *errors.shape[-2:]).transpose(0, 1)


@dataclass(frozen=True)
class LossTerm:
    """A registered extra term: ``build(cfg)`` returns an object with ``name``, ``weight`` and
    ``__call__(inputs, outputs) -> scalar``; it joins the criterion when ``--<name>_weight`` > 0."""

    name: str
    build: Callable[[Any], Any]


# name -> term, in the order they are added to the loss. The built-in terms' options are fields
# of LossConfig (``--distill_weight`` ...); a registered term's live in ``cfg.loss.extra``.
LOSS_TERMS: Dict[str, LossTerm] = {"distill": LossTerm("distill", DistillationTerm),
                                   "chamfer": LossTerm("chamfer", ChamferTerm)}


def register_loss_term(name: str, build: Callable[[Any], Any],
                       options: Sequence[Tuple[str, Any, Any]] = (),
                       check: Optional[Callable[[Any], None]] = None, help: str = "") -> None:
    """Declare a loss term from any module (``train.py --import``; docs/architecture.md,
    "Extending").

    Adds ``--<name>_weight`` (default 0: off), the term's ``options`` (``(name, type,
    option(...))``) and ``check`` (raising ``ConfigError``), values in ``cfg.loss.extra``.
    ``build``: ``cfg -> term``, called by :func:`build_criterion` when the weight is positive."""
    if name in LOSS_TERMS:
        raise ValueError(f"loss term {name!r} already exists")
    weight = option(0.0, help or f"weight of the {name} term (0 = off)",
                    valid=((lambda v: v >= 0), "be >= 0"))
    config.register_options([(f"{name}_weight", float, weight), *options], check)
    LOSS_TERMS[name] = LossTerm(name, build)


def term_weight(loss: Any, name: str) -> float:
    """``--<name>_weight`` of a loss term: a LossConfig field, or a registered option."""
    key = f"{name}_weight"
    return getattr(loss, key) if hasattr(loss, key) else loss.extra[key]


def build_criterion(cfg) -> Criterion:
    """A run's criterion: sources are ``--frame_ids`` minus 0 (+ ``"s"`` with ``--use_stereo``),
    extra terms those with a positive weight."""
    loss = cfg.loss
    extra_terms = [term.build(cfg) for term in LOSS_TERMS.values()
                   if term_weight(loss, term.name) > 0]
    sources: List[FrameId] = list(cfg.data.frame_ids[1:])
    if cfg.data.use_stereo:
        sources.append("s")
    return Criterion(scales=cfg.model.scales, source_frames=sources, min_depth=loss.min_depth,
                     max_depth=loss.max_depth, disparity_smoothness=loss.disparity_smoothness,
                     use_ssim=loss.ssim, automasking=loss.automasking,
                     avg_reprojection=loss.avg_reprojection, v1_multiscale=loss.v1_multiscale,
                     extra_terms=extra_terms)
