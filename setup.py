"""Install litemono: ``pip install -e ".[test]"``."""
from setuptools import find_packages, setup

setup(
    name="litemono",
    version="0.1.0",
    description="Self-supervised monocular depth: Lite-Mono, reproduced and extended "
                "(spatial attention, Depth Anything V2 distillation, adaptive disparity bins)",
    python_requires=">=3.10",
    packages=find_packages(include=["litemono", "litemono.*"]),
    install_requires=[
        # The test suite runs (CI, a new virtual environment each run) on what pip resolves
        # today; each run prints those versions first. The lower bounds are the oldest
        # releases with the APIs the code calls (torch 2.5: torch.serialization.safe_globals,
        # fused AdamW on the CPU), not versions the suite has been run on.
        "torch>=2.5",
        "torchvision>=0.20",
        "timm>=1.0",
        "numpy>=1.24",
        "pillow>=10.0",
        "scikit-image>=0.22",
        "tensorboard>=2.15",
        "tqdm>=4.66",
        "transformers>=4.45",
        "pyyaml>=6.0",
    ],
    extras_require={
        "test": ["pytest>=8.0", "onnx>=1.16", "onnxruntime>=1.18", "thop>=0.1.1.post2209072238"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "profile": ["thop>=0.1.1.post2209072238"],
        # mp4 / avi / mkv input and --color_video output of scripts/predict.py (GIF needs none)
        "video": ["av>=10.0"],
    },
)
