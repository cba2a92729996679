"""Networks: the Lite-Mono depth encoder and decoder, the pose network, and their builder.

Build networks only through :mod:`litemono.models.build` (see docs/architecture.md).
"""
from .build import (DepthNetwork, build_depth_network, build_pose_network, depth_state_dicts,
                    load_depth_network, load_state_strict)
from .encoder import VARIANTS, LiteMono
from .pose import PoseNetwork

__all__ = ["DepthNetwork", "LiteMono", "PoseNetwork", "VARIANTS", "build_depth_network",
           "build_pose_network", "depth_state_dicts", "load_depth_network", "load_state_strict"]
