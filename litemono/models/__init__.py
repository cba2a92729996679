"""Networks: Lite-Mono encoder and decoder, pose network; build them only through :mod:`.build`."""
from .build import (DepthNetwork, build_depth_network, build_pose_network, depth_state_dicts,
                    load_depth_network, load_state_strict)
from .encoder import VARIANTS, LiteMono
from .pose import PoseNetwork

__all__ = ["DepthNetwork", "LiteMono", "PoseNetwork", "VARIANTS", "build_depth_network",
           "build_pose_network", "depth_state_dicts", "load_depth_network", "load_state_strict"]
