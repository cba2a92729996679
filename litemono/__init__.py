"""litemono: self-supervised monocular depth (Lite-Mono, CVPR 2023) and its extensions; the public
entry point is :func:`load_depth_network`."""
__version__ = "0.1.0"

__all__ = ["load_depth_network", "build_depth_network", "__version__"]


def __getattr__(name):
    # lazy: `import litemono` stays cheap for the CLIs that only need the config
    if name in ("load_depth_network", "build_depth_network"):
        from .models import build

        return getattr(build, name)
    raise AttributeError(f"module 'litemono' has no attribute {name!r}")
