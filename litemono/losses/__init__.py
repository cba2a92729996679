"""Self-supervised losses: photometric reprojection, smoothness and the criterion combining them.

The teacher-distillation and Chamfer terms (``distill.py``, ``chamfer.py``) are registered
extra terms of the criterion; :func:`build_criterion` builds them when their weight is positive.
"""
from .criterion import Criterion, build_criterion
from .photometric import photometric_error, select_reprojection, ssim_error
from .smoothness import edge_aware_smoothness, edge_weights, smoothness_loss

__all__ = ["Criterion", "build_criterion", "photometric_error", "select_reprojection",
           "ssim_error", "edge_aware_smoothness", "edge_weights", "smoothness_loss"]
