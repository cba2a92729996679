"""The ablation runner: rows train and evaluate through the real code, tables, per-row resume."""
import csv
import io as textio
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from litemono import ablation, engine
from litemono.evaluation import load_gt_depths
from litemono.models.build import load_depth_network


def write_configs(folder: Path, scene) -> Path:
    """A base file and two rows (photometric baseline, + spatial attention) at 32x96."""
    folder.mkdir()
    base = dict(model="lite-mono-tiny", height=32, width=96, batch_size=2, num_workers=0,
                weights_init="scratch", device="cpu", data_path=str(scene.root),
                split=str(scene.split_dir), drop_path=0.0, log_frequency=1)
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    (folder / "01_base.yaml").write_text("include: base.yaml\nmodel_name: 01_base\n")
    (folder / "02_attn.yaml").write_text("include: 01_base.yaml\nmodel_name: 02_attn\n"
                                         "spatial_attention: true\n")
    return folder


def numpy_abs_rel(disp: np.ndarray, gt: np.ndarray) -> float:
    """abs_rel of one image, written out from the spec: bilinear resize, Garg crop,
    1e-3 < gt < 80, median scaling, clamp to [1e-3, 80]."""
    h, w = gt.shape
    up = torch.nn.functional.interpolate(torch.from_numpy(disp)[None, None], size=(h, w),
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    pred = 1.0 / up.astype(np.float64)
    crop = np.zeros_like(gt, dtype=bool)
    crop[int(0.40810811 * h):int(0.99189189 * h), int(0.03594771 * w):int(0.96405229 * w)] = True
    valid = crop & (gt > 1e-3) & (gt < 80)
    g, p = gt[valid].astype(np.float64), pred[valid]
    p = np.clip(p * np.median(g) / np.median(p), 1e-3, 80)
    return float(np.mean(np.abs(g - p) / g))


@pytest.fixture(scope="module")
def bench(synthetic_kitti, tmp_path_factory):
    """Two configs x 2 steps plus the untrained row, run once for the module."""
    root = tmp_path_factory.mktemp("ablation")
    configs = write_configs(root / "configs", synthetic_kitti)
    gt_path = ablation.write_true_depth_gt(str(synthetic_kitti.root),
                                           synthetic_kitti.split_dir / "test_files.txt",
                                           root / "gt.npz")
    rows = ablation.load_rows(ablation.config_files(str(configs)),
                              {"log_dir": str(root / "runs"), "num_steps": 2, "seed": 1},
                              untrained=True)
    results = ablation.run_rows(rows, gt_path, report=lambda *_: None)
    paths = ablation.write_tables(results, root / "runs", "table")
    return dict(root=root, rows=rows, results=results, paths=paths, gt_path=gt_path,
                scene=synthetic_kitti)


def test_rows_train_the_requested_steps_and_write_results(bench):
    names = [r["row"] for r in bench["results"]]
    assert names == [ablation.UNTRAINED, "01_base", "02_attn"]
    assert [r["steps"] for r in bench["results"]] == [0, 2, 2]
    for row, result in zip(bench["rows"], bench["results"]):
        stored = json.loads((Path(row.cfg.train.log_dir) / row.name / "results.json").read_text())
        assert stored == result
        assert 0 < result["abs_rel"] < 5 and 0 <= result["a1"] <= result["a2"] <= result["a3"] <= 1
    # attention adds compute: the MAC count must see it
    assert bench["results"][2]["macs"] > bench["results"][1]["macs"] > 0


def test_metrics_match_an_independent_computation(bench):
    gt = load_gt_depths(bench["gt_path"])
    scene = bench["scene"]
    lines = (scene.split_dir / "test_files.txt").read_text().split()
    assert len(gt) == len(lines) // 3
    first = lines[0] + "/image_02/true_depth/" + f"{int(lines[1]):010d}.npy"
    np.testing.assert_array_equal(gt[0], np.load(scene.root / first))
    result = bench["results"][1]
    net = load_depth_network(result["weights"])
    expected = []
    for line_start in range(0, len(lines), 3):
        folder, frame = lines[line_start], int(lines[line_start + 1])
        from PIL import Image

        path = scene.root / folder / "image_02" / "data" / f"{frame:010d}.jpg"
        image = Image.open(path).convert("RGB").resize((96, 32), Image.LANCZOS)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            disp = net(x)[("disp", 0)][0, 0].numpy()
        scaled = 1 / 100 + (1 / 0.1 - 1 / 100) * disp  # disp_to_depth's scaled disparity
        expected.append(numpy_abs_rel(scaled.astype(np.float32), gt[line_start // 3]))
    assert result["abs_rel"] == pytest.approx(np.mean(expected), rel=1e-4)


def test_tables_hold_every_row(bench):
    md = bench["paths"]["md"].read_text().splitlines()
    assert md[0] == "| " + " | ".join(ablation.TABLE_COLUMNS) + " |"
    assert [line.split("|")[1].strip() for line in md[2:]] == [r["row"] for r in bench["results"]]
    rows = list(csv.DictReader(textio.StringIO(bench["paths"]["csv"].read_text())))
    for row, result in zip(rows, bench["results"]):
        assert float(row["abs_rel"]) == pytest.approx(result["abs_rel"], abs=1e-6)
        assert float(row["macs"]) == pytest.approx(result["macs"], abs=1)
    assert json.loads(bench["paths"]["json"].read_text()) == bench["results"]


def test_rerun_skips_done_rows_and_runs_missing_ones(bench, monkeypatch):
    calls = []
    real_train = engine.train
    monkeypatch.setattr(engine, "train", lambda cfg: calls.append(cfg.train.model_name)
                        or real_train(cfg))
    redo = bench["rows"][2]
    (Path(redo.cfg.train.log_dir) / redo.name / "results.json").unlink()
    again = ablation.run_rows(bench["rows"], bench["gt_path"], report=lambda *_: None)
    assert calls == ["02_attn"]  # only the row without results.json trained (resumed: 0 steps)
    assert again[:2] == bench["results"][:2]
    assert again[2]["abs_rel"] == pytest.approx(bench["results"][2]["abs_rel"], rel=1e-6)


def test_last_weights_folder_is_numeric(tmp_path):
    for n in (2, 10, 9):
        (tmp_path / "models" / f"weights_{n}").mkdir(parents=True)
    (tmp_path / "models" / "weights_x").mkdir()
    assert ablation.last_weights_folder(tmp_path).name == "weights_10"
    with pytest.raises(FileNotFoundError, match="no weights_"):
        ablation.last_weights_folder(tmp_path / "empty")


def test_config_files_and_overrides(tmp_path):
    for name in ("base.yaml", "02_b.yaml", "01_a.yaml"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in ablation.config_files(str(tmp_path))] == ["01_a.yaml", "02_b.yaml"]
    assert ablation.option_overrides(["lr=[1e-4]", "num_workers=8", "device=cuda"]) == {
        "lr": [1e-4], "num_workers": 8, "device": "cuda"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        ablation.option_overrides(["num_workers"])
    with pytest.raises(FileNotFoundError, match="--configs"):
        ablation.config_files(str(tmp_path / "missing"))


def test_markdown_layout():
    row = {"row": "r", "macs": 2.842e9, "abs_rel": 0.1234, "sq_rel": 1.0, "rmse": 5.0,
           "rmse_log": 0.2, "a1": 0.9, "a2": 0.95, "a3": 0.99, "steps": 3, "train_seconds": 1.0}
    table = ablation.markdown_table([row]).splitlines()
    assert table[2] == "| r | 2.842 | 0.123 | 1.000 | 5.000 | 0.200 | 0.900 | 0.950 | 0.990 |"


def test_a_stale_or_foreign_synthetic_scene_is_refused(tmp_path):
    """bench_learning and the demo must not train on a scene the current renderer did not make."""
    from litemono.data import synthetic

    root = tmp_path / "scene"
    synthetic.make_synthetic_kitti(root, drives=1, frames_per_drive=5, height=32, width=96,
                                   workers=1)
    with pytest.raises(ValueError, match="other settings"):  # not the default scene
        ablation.ensure_synthetic_scene(str(root), report=lambda message: None)
    manifest = json.loads((root / synthetic.MANIFEST).read_text())
    manifest["settings"]["version"] = synthetic.FORMAT_VERSION - 1  # an older renderer's scene
    root.joinpath(synthetic.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="version differ"):
        synthetic.make_synthetic_kitti(root, drives=1, frames_per_drive=5, height=32, width=96)
