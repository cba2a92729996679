"""What every command line tool shares: help for each option, --no_cuda / --device errors, and
train.py's refusal to restart a run folder."""
import argparse
import importlib.util
import shutil

import pytest
import torch

from conftest import ROOT
from test_train import _load_train_script, use_tiny_scene

TOOLS = ["train.py", "evaluate_depth.py", "precompute_teacher.py"] + sorted(
    str(path.relative_to(ROOT)) for path in (ROOT / "scripts").glob("*.py"))


class Captured(Exception):
    """Carries the parser a tool built, instead of letting it parse."""


def tool_parser(path, monkeypatch):
    def capture(parser, *args, **kwargs):
        raise Captured(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    spec = importlib.util.spec_from_file_location(f"cli_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(Captured) as captured:
        module.main([])
    return captured.value.args[0]


@pytest.mark.parametrize("tool", TOOLS)
def test_every_option_has_help(tool, monkeypatch):
    parser = tool_parser(ROOT / tool, monkeypatch)
    silent = [action.option_strings[0] for action in parser._actions
              if action.option_strings and not action.help]
    assert not silent, f"{tool}: options without help text: {silent}"
    flags = {flag for action in parser._actions for flag in action.option_strings}
    assert "--device" not in flags or "--no_cuda" in flags, f"{tool}: --device without --no_cuda"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_goes_through_cli(tool):
    """Each tool's main is wrapped by litemono.errors.cli: user errors become one line."""
    path = ROOT / tool
    spec = importlib.util.spec_from_file_location(f"cli_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert getattr(module.main, "__wrapped__", None) is not None, f"{tool}: main is not @cli"


@pytest.mark.parametrize("tool", TOOLS)
def test_a_bad_flag_is_one_error_line(tool, monkeypatch, capsys):
    # argparse's own errors (unknown flag, bad value) are one line too, not the usage block
    monkeypatch.setattr("sys.argv", [tool])
    parser = tool_parser(ROOT / tool, monkeypatch)
    monkeypatch.undo()
    with pytest.raises(SystemExit) as stopped:
        parser.parse_args(["--no_such_flag_here"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"{parser.prog}: error: "), err
    assert ("--no_such_flag_here" in err or "required" in err) and "--help" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("tool", ["train.py", "evaluate_depth.py", "scripts/predict.py",
                                  "scripts/evaluate_pose.py"])
def test_missing_cuda_is_the_same_one_line_everywhere(tool, tmp_path, capsys):
    from litemono import io
    from litemono.config import ModelConfig
    from litemono.evaluation import save_gt_depths
    from litemono.models.build import build_depth_network, depth_state_dicts

    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=32, width=64))
    for name, state in depth_state_dicts(net, 32, 64).items():
        io.save_torch(state, tmp_path / "w" / f"{name}.pth")
    save_gt_depths(tmp_path / "gt.npz", [torch.ones(4, 4).numpy()])
    argv = {"train.py": ["--log_dir", str(tmp_path), "--height", "32", "--width", "64"],
            "evaluate_depth.py": ["--load_weights_folder", str(tmp_path / "w"),
                                  "--gt_path", str(tmp_path / "gt.npz")],
            "scripts/predict.py": ["--load_weights_folder", str(tmp_path / "w"),
                                   "--image_path", str(tmp_path)],
            "scripts/evaluate_pose.py": ["--load_weights_folder", str(tmp_path / "w"),
                                         "--data_path", str(tmp_path)]}[tool] + ["--device", "cuda"]
    spec = importlib.util.spec_from_file_location("cli_tool", ROOT / tool)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        code = module.main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err == f"{ROOT.joinpath(tool).name}: error: --device cuda: no CUDA device here; " \
                  "use --device cpu"


def test_train_refuses_to_restart_a_run_folder(tmp_path, monkeypatch, capsys):
    from litemono.models.build import read_depth_range

    use_tiny_scene(monkeypatch)
    train = _load_train_script()
    argv = ["--log_dir", str(tmp_path), "--model_name", "run", "--height", "32", "--width", "64",
            "--no_cuda", "--model", "lite-mono-tiny", "--weights_init", "scratch",
            "--num_workers", "0", "--batch_size", "2", "--num_steps", "1",
            "--min_depth", "0.05", "--max_depth", "60"]
    assert train.main(argv) == 0
    run = tmp_path / "run"
    config = (run / "config.yaml").read_text()
    # the weights folder carries the depth range, so a copy elsewhere keeps it
    copied = shutil.copytree(run / "models" / "weights_0", tmp_path / "copied")
    assert read_depth_range(copied) == (0.05, 60.0)
    capsys.readouterr()
    with pytest.raises(SystemExit) as stopped:
        train.main(argv + ["--seed", "5"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("train.py: error: ") and "\n" not in err
    assert "--resume auto" in err and "--model_name" in err and "--overwrite" in err
    assert (run / "config.yaml").read_text() == config  # untouched
    assert train.main(argv + ["--num_steps", "2", "--resume", "auto"]) == 0
    assert train.main(argv + ["--seed", "5", "--overwrite"]) == 0
    assert "seed: 5" in (run / "config.yaml").read_text()
