"""scripts/demo.py's picture: <run>/demo.png, and the same picture at --figure (docs/demo.png)."""
import importlib.util

import numpy as np
from PIL import Image

from conftest import ROOT
from litemono.data import synthetic


def load_demo():
    spec = importlib.util.spec_from_file_location("script_demo", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure_option_writes_the_same_picture_as_the_run(tmp_path):
    demo = load_demo()
    assert demo.build_parser().parse_args([]).figure is None
    assert demo.build_parser().parse_args(["--figure", "docs/demo.png"]).figure == "docs/demo.png"

    root = tmp_path / "scene"
    synthetic.make_synthetic_kitti(root, drives=1, frames_per_drive=5, height=32, width=96,
                                   workers=1)
    weights = tmp_path / "run" / "models" / "weights_0"
    weights.mkdir(parents=True)
    np.save(weights / "disps_eigen_split.npy", np.random.rand(1, 32, 64).astype(np.float32))
    figure = tmp_path / "docs" / "demo.png"
    panel = demo.write_panel(tmp_path / "run", weights, str(root),
                             str(root / synthetic.SPLIT_FOLDER), 32, 64, figure)

    assert panel == tmp_path / "run" / "demo.png"
    assert panel.read_bytes() == figure.read_bytes()
    assert Image.open(figure).size == (3 * 64, 32)  # input | predicted | true, side by side
