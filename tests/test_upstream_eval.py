"""evaluate_depth.py against upstream's evaluation recorded on synthetic data (eval_eigen/)."""
import json

import numpy as np
import pytest
import torch

import evaluate_depth
from conftest import reference_params
from litemono.evaluation import batch_post_process_disparity
from litemono.metrics import METRIC_NAMES

# manifest mode -> the extra flags that reproduce it
MODES = {
    "eigen_median": ["--eval_split", "eigen"],
    "eigen_no_median_scale_5.4": ["--eval_split", "eigen", "--disable_median_scaling",
                                  "--pred_depth_scale_factor", "5.4"],
    "benchmark_style_median": ["--eval_split", "eigen_benchmark"],
}


@pytest.mark.upstream
@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("folder", reference_params("pred_disps.npy", "gt_depths.npz",
                                                    "manifest.json"))
def test_cli_matches_upstream_metrics(folder, mode, capsys):
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = manifest["modes"][mode]["metrics"]
    rtol = manifest.get("tolerance", {}).get("rtol", 1e-4)
    evaluate_depth.main(["--ext_disp_to_eval", str(folder / "pred_disps.npy"),
                         "--gt_path", str(folder / "gt_depths.npz"), "--allow_pickle"]
                        + MODES[mode])
    lines = capsys.readouterr().out.strip().splitlines()
    got = json.loads(lines[-1])
    assert list(got) == list(METRIC_NAMES)
    for name in METRIC_NAMES:
        assert got[name] == pytest.approx(expected[name], rel=rtol), name
    if "ratio_median" in expected:
        ratio_line = next(line for line in lines if line.startswith("scaling ratios"))
        median = float(ratio_line.split("median:")[1].split("|")[0])
        std = float(ratio_line.split("std:")[1])
        assert median == pytest.approx(expected["ratio_median"], abs=1e-3)
        assert std == pytest.approx(expected["ratio_std_over_median"], abs=1e-3)


@pytest.mark.upstream
@pytest.mark.parametrize("folder", reference_params("post_process.npz"))
def test_post_process_matches_upstream(folder):
    ref = np.load(folder / "post_process.npz")
    got = batch_post_process_disparity(torch.from_numpy(ref["left"]),
                                       torch.from_numpy(ref["right_flipped_back"]))
    np.testing.assert_allclose(got.numpy(), ref["result"], rtol=1e-5, atol=1e-6)


@pytest.mark.upstream
@pytest.mark.parametrize("folder", reference_params("gt_depths.npz"))
def test_upstream_gt_needs_allow_pickle(folder, capsys):
    with pytest.raises(SystemExit):
        evaluate_depth.main(["--ext_disp_to_eval", str(folder / "pred_disps.npy"),
                             "--gt_path", str(folder / "gt_depths.npz")])
    err = capsys.readouterr().err
    assert "--allow_pickle" in err and "arbitrary code" in err
