"""The ablation runner (scripts/run_ablation.py): rows train and evaluate through the real code,
tables, per-row resume."""
import csv
import importlib.util
import io as textio
import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import ROOT
from litemono import engine
from litemono.errors import UserError
from litemono.evaluation import load_gt_depths
from litemono.models.build import load_depth_network


def load_runner():
    spec = importlib.util.spec_from_file_location("run_ablation",
                                                  ROOT / "scripts" / "run_ablation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# one copy of the script for the whole file: its StaleResults is the class the CLI raises
ablation = load_runner()


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
    table = md[2:md.index("")]
    assert [line.split("|")[1].strip() for line in table] == [r["row"] for r in bench["results"]]
    assert all(line.split("|")[2].strip() == "1" for line in table)  # one seed per cell
    assert "Paired difference to 01_base" in "\n".join(md)  # the untrained row is no baseline
    rows = list(csv.DictReader(textio.StringIO(bench["paths"]["csv"].read_text())))
    for row, result in zip(rows, bench["results"]):
        assert float(row["abs_rel"]) == pytest.approx(result["abs_rel"], abs=1e-6)
        assert float(row["macs"]) == pytest.approx(result["macs"], abs=1)
        assert row["seeds"] == "1" and row["abs_rel_std"] == "" and row["abs_rel_diff_ci95"] == ""
    base = bench["results"][1]
    assert float(rows[2]["abs_rel_diff"]) == pytest.approx(
        bench["results"][2]["abs_rel"] - base["abs_rel"], abs=1e-6)
    assert rows[1]["abs_rel_diff"] == "" and rows[1]["paired_seeds"] == "0"
    assert json.loads(bench["paths"]["json"].read_text()) == bench["results"]
    assert bench["results"][1]["config"] == bench["rows"][1].cfg.to_dict()


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
    # list options as train.py takes them: one number, or several separated by spaces
    assert ablation.option_overrides(["lr=0.0001", "scales=0"]) == {"lr": [1e-4], "scales": [0]}
    assert ablation.option_overrides(["lr=1e-4 5e-6 31 1e-4 1e-5 31"]) == {
        "lr": [1e-4, 5e-6, 31, 1e-4, 1e-5, 31]}
    assert ablation.option_overrides(["dilations=[[1, 2], [1], [3]]", "mypretrain=none"]) == {
        "dilations": [[1, 2], [1], [3]], "mypretrain": "none"}
    with pytest.raises(UserError, match="KEY=VALUE"):
        ablation.option_overrides(["num_workers"])
    with pytest.raises(FileNotFoundError, match="--configs"):
        ablation.config_files(str(tmp_path / "missing"))


def test_markdown_layout():
    row = {"row": "r", "macs": 2.842e9, "abs_rel": 0.1234, "sq_rel": 1.0, "rmse": 5.0,
           "rmse_log": 0.2, "a1": 0.9, "a2": 0.95, "a3": 0.99, "steps": 3, "train_seconds": 1.0}
    table = ablation.markdown_table([row]).splitlines()
    assert table[2] == "| r | 1 | 2.842 | 0.123 | 1.000 | 5.000 | 0.200 | 0.900 | 0.950 | 0.990 |"
    assert len(table) == 3  # a single row: nothing to compare


def test_cli_renders_a_missing_synthetic_scene_first(tmp_path, monkeypatch):
    """Without --gt_path, a --data_path that does not exist gets the default scene rendered
    before the ground truth is read from it; an existing folder is never written into."""
    rendered = []

    def render(data_path, report=print):
        rendered.append(data_path)
        raise SystemExit("rendered")  # stop here: the rest is tested elsewhere

    monkeypatch.setattr(ablation, "ensure_synthetic_scene", render)
    scene = types.SimpleNamespace(root=tmp_path / "absent", split_dir=tmp_path / "absent" / "split")
    configs = write_configs(tmp_path / "configs", scene)
    with pytest.raises(SystemExit, match="rendered"):
        run_cli(["--configs", str(configs), "--log_dir", str(tmp_path / "runs")])
    assert rendered == [str(tmp_path / "absent")]
    (tmp_path / "kitti").mkdir()  # e.g. a KITTI folder without --gt_path: not rendered into
    with pytest.raises(SystemExit) as exc:
        run_cli(["--configs", str(configs), "--log_dir", str(tmp_path / "runs"),
                 "--data_path", str(tmp_path / "kitti")])
    assert exc.value.code == 2 and rendered == [str(tmp_path / "absent")]


def test_a_stale_or_foreign_synthetic_scene_is_refused(tmp_path):
    """The demo must not train on a scene the current renderer did not make."""
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


# ----------------------------------------------------------------------------- seeds, significance

def fake_run(row, seed, abs_rel, macs=1e9):
    """A run result as run_row returns it; only abs_rel varies, the other metrics are 2x it."""
    metrics = {name: 2 * abs_rel for name in ablation.METRIC_NAMES}
    return {"row": row, "seed": seed, "steps": 10, "train_seconds": 1.0, "macs": macs,
            **metrics, "abs_rel": abs_rel}


def test_summary_against_hand_computed_means_and_intervals():
    results = [fake_run("A", 0, 0.10), fake_run("B", 0, 0.13), fake_run("C", 0, 0.12),
               fake_run("A", 1, 0.12), fake_run("B", 1, 0.16), fake_run("C", 1, 0.11),
               fake_run("A", 2, 0.11), fake_run("B", 2, 0.13), fake_run("D", 5, 0.2)]
    a, b, c, d = ablation.summarize(results)
    assert a["row"] == "A" and a["seeds"] == [0, 1, 2] and a["diff"] == {}
    # A: 0.10, 0.12, 0.11 -> mean 0.11, squared deviations 1e-4 + 1e-4 + 0 over n - 1 = 2
    assert a["mean"]["abs_rel"] == pytest.approx(0.11)
    assert a["std"]["abs_rel"] == pytest.approx(0.01)
    assert a["std"]["rmse"] == pytest.approx(0.02)
    # B - A per seed: 0.03, 0.04, 0.02 -> mean 0.03, sd 0.01, t(0.975, 2) = 4.303
    mean, half = b["diff"]["abs_rel"]
    assert b["paired_seeds"] == [0, 1, 2]
    assert mean == pytest.approx(0.03) and half == pytest.approx(4.303 * 0.01 / 3 ** 0.5)
    # C has seeds 0 and 1: 0.02, -0.01 -> mean 0.005, sd 0.03 / sqrt(2), t(0.975, 1) = 12.706
    mean, half = c["diff"]["abs_rel"]
    assert c["paired_seeds"] == [0, 1]
    assert mean == pytest.approx(0.005)
    assert half == pytest.approx(12.706 * (0.03 / 2 ** 0.5) / 2 ** 0.5)
    # D shares no seed with A: no difference; one seed: no spread
    assert d["std"]["abs_rel"] is None and d["diff"] == {} and d["paired_seeds"] == []

    md = ablation.markdown_table(results).splitlines()
    assert md[2].startswith("| A | 3 | 1.000 | 0.110 ± 0.0100 | 0.220 ± 0.0200 |")
    assert md[5].startswith("| D | 1 | 1.000 | 0.200 | 0.400 |")
    assert "Paired difference to A" in md[7]
    assert md[11].startswith("| B | 3 | +0.0300 ± 0.0248* | +0.0600 ± 0.0497* |")
    assert md[12].startswith("| C | 2 | +0.0050 ± 0.1906 |")  # the interval holds 0: no *
    rows = list(csv.DictReader(textio.StringIO(ablation.csv_table(results))))
    assert [(r["row"], r["seeds"], r["paired_seeds"]) for r in rows] == [
        ("A", "3", "0"), ("B", "3", "3"), ("C", "2", "2"), ("D", "1", "0")]
    assert float(rows[1]["abs_rel_diff_ci95"]) == pytest.approx(4.303 * 0.01 / 3 ** 0.5,
                                                                abs=1e-6)
    # another baseline
    b_first = ablation.summarize(results, baseline="B")
    assert b_first[0]["diff"]["abs_rel"][0] == pytest.approx(-0.03)
    with pytest.raises(UserError, match="--baseline E: no such row"):
        ablation.summarize(results, baseline="E")


def test_t_quantiles_match_the_t_distribution():
    assert ablation.t_quantile_975(1) == 12.706 and ablation.t_quantile_975(2) == 4.303
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5, 10, 29, 30, 31, 45, 100, 1000):
        assert ablation.t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=6e-4)
    with pytest.raises(ValueError, match="degree of freedom"):
        ablation.t_quantile_975(0)


def run_cli(argv):
    return ablation.main(argv)


def test_cli_seeds_resume_and_stale_rows(synthetic_kitti, tmp_path, capsys):
    configs = write_configs(tmp_path / "configs", synthetic_kitti)
    log_dir = tmp_path / "runs"
    common = ["--configs", str(configs), "--log_dir", str(log_dir)]
    results = run_cli(common + ["--seeds", "0", "1", "--set", "num_steps=1", "lr=0.0001"])
    assert [(r["row"], r["seed"], r["steps"]) for r in results] == [
        ("01_base", 0, 1), ("02_attn", 0, 1), ("01_base", 1, 1), ("02_attn", 1, 1)]
    for seed in (0, 1):
        stored = json.loads((log_dir / f"seed_{seed}" / "02_attn" / "results.json").read_text())
        assert stored["config"]["train"]["seed"] == seed
        assert stored["config"]["train"]["lr"] == [0.0001]
    assert results[0]["abs_rel"] != results[2]["abs_rel"]  # the seeds differ
    md = (log_dir / "ablation.md").read_text()
    assert "| 01_base | 2 |" in md and "Paired difference to 01_base" in md
    assert "| 02_attn | 2 | " in md.split("Paired difference")[1]
    capsys.readouterr()

    # the same command again: every row and seed is done
    again = run_cli(common + ["--seeds", "0", "1", "--set", "num_steps=1", "lr=0.0001"])
    assert [r["abs_rel"] for r in again] == [r["abs_rel"] for r in results]
    assert capsys.readouterr().out.count("done before") == 4

    # other options: refused by name (it used to print "done before" and rebuild the table)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(common + ["--seeds", "0", "1", "--set", "num_steps=2", "lr=0.0001"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "done before" not in captured.out
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("run_ablation.py: error: ")
    assert "--num_steps: 1 -> 2" in err and "--rerun" in err and "(and 3 more rows)" in err

    # --rerun trains the changed rows again; the other seed's rows stay as they were
    rerun = run_cli(common + ["--seeds", "0", "--set", "num_steps=2", "lr=0.0001", "--rerun"])
    assert [(r["row"], r["steps"]) for r in rerun] == [("01_base", 2), ("02_attn", 2)]
    kept = json.loads((log_dir / "seed_1" / "01_base" / "results.json").read_text())
    assert kept["steps"] == 1


def test_cli_refuses_rows_made_with_other_options(bench, capsys):
    """The same --log_dir with --set num_steps=4: refused, naming the changed option."""
    argv = ["--configs", str(bench["root"] / "configs"), "--log_dir", str(bench["root"] / "runs"),
            "--set", "seed=1", "num_steps=4"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "done before" not in captured.out
    assert "01_base was made with other options" in captured.err
    assert "--num_steps: 2 -> 4" in captured.err


def one_line_error(tool: str, run, capsys) -> str:
    """Run ``run()``, expect a user error: exit status 2 and one stderr line from ``tool``."""
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{tool}: error: "), err
    return err


def test_cli_user_errors_are_one_line_through_cli(bench, capsys):
    """run_ablation.py's errors go through @cli: one line, and --debug shows the traceback."""
    common = ["--configs", str(bench["root"] / "configs"), "--log_dir",
              str(bench["root"] / "runs"), "--set", "seed=1", "num_steps=2"]
    err = one_line_error("run_ablation.py", lambda: run_cli(common + ["--baseline", "nope"]),
                         capsys)
    assert err == ("run_ablation.py: error: --baseline nope: no such row, "
                   "choose one of 01_base, 02_attn")
    err = one_line_error("run_ablation.py", lambda: run_cli(common[:-2] + ["num_steps"]), capsys)
    assert "--set expects KEY=VALUE, got 'num_steps'" in err
    err = one_line_error("run_ablation.py", lambda: run_cli(common[:-1] + ["num_steps=3"]),
                         capsys)
    assert "01_base was made with other options" in err and "--rerun" in err
    # --debug: the same user error raises with its traceback
    with pytest.raises(ablation.StaleResults, match="01_base was made with other options"):
        run_cli(common[:-1] + ["num_steps=3", "--debug"])


def test_cli_checks_the_untrained_row_too(bench, capsys):
    """--untrained adds the network as initialised; a row made with other options is refused."""
    argv = ["--configs", str(bench["root"] / "configs"), "--log_dir", str(bench["root"] / "runs"),
            "--untrained", "--set", "seed=1", "num_steps=4"]
    err = one_line_error("run_ablation.py", lambda: run_cli(argv), capsys)
    assert "00_untrained was made with other options (and 2 more rows)" in err
    assert "--num_steps: 2 -> 4" in err and "--rerun" in err


def test_a_started_row_is_compared_through_its_config_yaml(tmp_path):
    cfg = ablation.from_dict({"log_dir": str(tmp_path), "model_name": "r", "num_steps": 3})
    row = ablation.Row("r", cfg)
    assert ablation.stale_changes(row) == []  # nothing recorded yet
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.yaml").write_text(cfg.replace(num_workers=0, resume="auto",
                                                            lr=[1e-3]).dump_yaml())
    assert ablation.stale_changes(row) == ["--lr: [0.001] -> [0.0001, 5e-06, 31.0, 0.0001, "
                                           "1e-05, 31.0]"]
    # an option the record lacks (added to the code later) counts as its default
    recorded = yaml.safe_load(cfg.dump_yaml())
    del recorded["loss"]["teacher_mask"]
    (tmp_path / "r" / "config.yaml").write_text(yaml.safe_dump(recorded))
    assert ablation.stale_changes(row) == []
    row = ablation.Row("r", cfg.replace(teacher_mask=False))
    assert ablation.stale_changes(row) == ["--teacher_mask: True -> False"]
    (tmp_path / "r" / "results.json").write_text(json.dumps({"row": "r", "abs_rel": 0.1}))
    assert "records no config" in ablation.stale_changes(row)[0]
