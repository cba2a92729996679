"""--mypretrain: ImageNet encoder files in upstream's layout, strict loading, no unpickling
without consent, and the KITTI recipe's refusal to train without them."""
import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from litemono.config import ConfigError, ModelConfig
from litemono.models.build import build_depth_network, imagenet_file, load_imagenet_encoder
from litemono.models.encoder import LiteMono

ROOT = Path(__file__).resolve().parent.parent


class RunsCode:
    """An object whose unpickling creates ``marker`` (stands for any code a .pth can carry)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def upstream_checkpoint(variant: str, seed: int = 0, **extras) -> dict:
    """What upstream's pretraining ``save_model`` writes: the classifier's state dict (encoder
    keys plus ``head.*`` and the final ``norm.*``), optimiser, epoch, scaler and args."""
    torch.manual_seed(seed)
    encoder = LiteMono(variant)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in encoder.state_dict().items()}
    width = encoder.num_ch_enc[-1]
    state.update({"norm.weight": torch.ones(width), "norm.bias": torch.zeros(width),
                  "head.weight": torch.randn(1000, width), "head.bias": torch.zeros(1000)})
    return {"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 4e-3}]},
            "epoch": 299, "scaler": {"scale": 65536.0},
            "args": argparse.Namespace(model="litemono", lr=4e-3, input_size=224), **extras}


def test_upstream_layout_loads_every_encoder_key(tmp_path):
    path = tmp_path / "lite-mono-tiny-pretrain.pth"
    checkpoint = upstream_checkpoint("lite-mono-tiny")
    torch.save(checkpoint, path)
    encoder = LiteMono("lite-mono-tiny", attention_stages=(0, 1, 2))
    attention_before = {k: v.clone() for k, v in encoder.state_dict().items()
                        if k.startswith("spatial_attention.")}
    assert attention_before  # the documented exception is exercised
    load_imagenet_encoder(encoder, str(path))
    loaded = encoder.state_dict()
    for key, value in checkpoint["model"].items():
        if key.startswith(("head.", "norm.")):
            assert key not in loaded
        else:
            assert torch.equal(loaded[key], value), key
    for key, value in attention_before.items():
        assert torch.equal(loaded[key], value), key


def test_a_bare_state_dict_and_the_network_builder(tmp_path):
    path = tmp_path / "plain.pth"
    state = upstream_checkpoint("lite-mono-tiny", seed=3)["model"]
    torch.save(state, path)
    net = build_depth_network(ModelConfig(model="lite-mono-tiny", height=64, width=192,
                                          mypretrain=str(path)))
    assert torch.equal(net.encoder.state_dict()["downsample_layers.0.0.conv.weight"],
                       state["downsample_layers.0.0.conv.weight"])
    # 'none' is the explicit from-scratch spelling, not a file name
    scratch = build_depth_network(ModelConfig(model="lite-mono-tiny", height=64, width=192,
                                              mypretrain="none"))
    assert not torch.equal(scratch.encoder.state_dict()["downsample_layers.0.0.conv.weight"],
                           state["downsample_layers.0.0.conv.weight"])


def test_missing_keys_and_other_variants_are_refused(tmp_path):
    checkpoint = upstream_checkpoint("lite-mono-tiny")
    key = "stages.1.0.gamma"
    del checkpoint["model"][key]
    torch.save(checkpoint, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"1 missing: stages\.1\.0\.gamma"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(tmp_path / "missing.pth"))
    torch.save(upstream_checkpoint("lite-mono-small"), tmp_path / "small.pth")
    with pytest.raises(ValueError, match="fits --model lite-mono-small"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(tmp_path / "small.pth"))
    (tmp_path / "broken.pth").write_bytes((tmp_path / "small.pth").read_bytes()[:200])
    with pytest.raises(ValueError, match="not a readable torch file"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(tmp_path / "broken.pth"))
    with pytest.raises(FileNotFoundError, match="--mypretrain"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(tmp_path / "absent.pth"))


def test_no_unpickling_without_allow_pickle(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "pickled.pth"
    torch.save(upstream_checkpoint("lite-mono-tiny", extra=RunsCode(marker)), path)
    with pytest.raises(ValueError, match="imagenet_weights.py convert .* --allow_pickle"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path))
    assert not marker.exists()
    with pytest.warns(UserWarning, match="unpickled"):
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path), allow_pickle=True)
    assert marker.exists()


def test_an_old_format_file_is_named_as_one_not_as_a_broken_download(tmp_path):
    path = tmp_path / "old.pth"
    torch.save(upstream_checkpoint("lite-mono-tiny")["model"], path,
               _use_new_zipfile_serialization=False)  # what PyTorch < 1.6 wrote
    with pytest.raises(ValueError) as info:
        load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path))
    message = str(info.value)
    assert "old-format (PyTorch < 1.6) torch file" in message and "--allow_pickle" in message
    assert "truncated" not in message and "HTML" not in message
    load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path), allow_pickle=True)  # consent


def run_tool(*args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "imagenet_weights.py"), *args],
                          capture_output=True, text=True)


def test_helper_lists_sources_converts_and_checks(tmp_path):
    listing = run_tool()
    assert listing.returncode == 0
    for variant in ("lite-mono", "lite-mono-small", "lite-mono-tiny", "lite-mono-8m"):
        assert f"pretrained/{imagenet_file(variant)}" in listing.stdout
    assert "surfdrive.surf.nl/files/index.php/s/InMMGd5ZP2fXuia" in listing.stdout

    marker = tmp_path / "code_ran"
    source, target = tmp_path / "download.pth", tmp_path / "plain.pth"
    checkpoint = upstream_checkpoint("lite-mono-tiny", extra=RunsCode(marker))
    torch.save(checkpoint, source)
    refused = run_tool("convert", str(source), str(target))
    assert refused.returncode == 2 and "--allow_pickle" in refused.stderr
    assert not marker.exists() and not target.exists()
    unsafe = run_tool("check", str(source))
    assert unsafe.returncode == 2 and not marker.exists()
    # named as the user typed it; check has no --allow_pickle to offer, convert is the way
    assert unsafe.stderr.startswith(f"imagenet_weights.py: error: check {source}: ")
    assert "holds pickled Python objects" in unsafe.stderr
    assert "add --allow_pickle" not in unsafe.stderr and "convert" in unsafe.stderr
    assert len(unsafe.stderr.strip().splitlines()) == 1
    done = run_tool("convert", str(source), str(target), "--allow_pickle")
    assert done.returncode == 0, done.stderr
    assert "fits --model lite-mono-tiny" in done.stdout
    plain = torch.load(target, weights_only=True)  # no pickled objects left
    assert set(plain) == {"model"}
    assert all(torch.equal(plain["model"][k], v) for k, v in checkpoint["model"].items())
    assert run_tool("check", str(target)).stdout.strip().endswith("fits --model lite-mono-tiny")


def test_check_of_a_missing_file_names_what_was_typed(tmp_path):
    missing = tmp_path / "nowhere.pth"
    result = run_tool("check", str(missing))
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("imagenet_weights.py: error: "), lines
    assert f"check {missing}" in lines[0] and "--mypretrain" not in lines[0]


def broken_files(tmp_path):
    """What a browser saves from a share link (its HTML page), and a download cut short."""
    page = tmp_path / "page.pth"
    page.write_text("<!DOCTYPE html>\n<html><head><title>surfdrive</title></head></html>\n")
    cut = tmp_path / "cut.pth"
    torch.save(upstream_checkpoint("lite-mono-tiny"), cut)
    data = cut.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    return page, cut


def test_a_page_or_a_truncated_file_is_one_line_not_a_pickle_or_a_traceback(tmp_path):
    for path in broken_files(tmp_path):
        with pytest.raises(ValueError, match="not a readable torch file") as info:
            load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path))
        assert "--allow_pickle" not in str(info.value)
        with pytest.raises(ValueError, match="not a readable torch file"):  # consent changes nothing
            load_imagenet_encoder(LiteMono("lite-mono-tiny"), str(path), allow_pickle=True)
        with pytest.raises(ValueError, match="not a readable torch file"):
            build_depth_network(ModelConfig(model="lite-mono-tiny", height=64, width=192,
                                            mypretrain=str(path)))
        target = tmp_path / "plain.pth"
        for result in (run_tool("check", str(path)),
                       run_tool("convert", str(path), str(target), "--allow_pickle")):
            assert result.returncode == 2 and result.stdout == ""
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("imagenet_weights.py: error: "), lines
            assert str(path) in lines[0] and "not a readable torch file" in lines[0]
        assert not target.exists()


def test_convert_leaves_no_target_when_the_weights_fit_no_variant(tmp_path):
    source, target = tmp_path / "other.pth", tmp_path / "plain.pth"
    checkpoint = upstream_checkpoint("lite-mono-tiny", extra=RunsCode(tmp_path / "ran"))
    del checkpoint["model"]["stages.1.0.gamma"]
    torch.save(checkpoint, source)
    result = run_tool("convert", str(source), str(target), "--allow_pickle")
    assert result.returncode == 2 and "stages.1.0.gamma" in result.stderr
    assert f"{source} (converted)" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.pth", "ran"]


def test_a_new_variant_row_is_listed_and_checked_and_a_family_is_not(tmp_path, monkeypatch):
    from litemono.models.build import ENCODER_FAMILIES
    from litemono.models.encoder import VARIANTS, Variant

    spec = importlib.util.spec_from_file_location("imagenet_weights",
                                                  ROOT / "scripts" / "imagenet_weights.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setitem(VARIANTS, "toy-mono", Variant(
        dims=(16, 24, 32), depths=(2, 2, 3), dilations_narrow=((1,), (2,), (1, 3)),
        dilations_wide=((1,), (2,), (1, 3))))
    monkeypatch.setitem(ENCODER_FAMILIES, "toy-family", lambda cfg: None)
    listing = tool.sources_text()
    assert f"pretrained/{imagenet_file('toy-mono')}" in listing and tool.NO_SOURCE in listing
    assert "toy-family" not in listing
    path = tmp_path / "toy.pth"
    torch.save({"model": LiteMono("toy-mono").state_dict()}, path)
    assert tool.check(str(path)) == "toy-mono"


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def kitti_row_argv(synthetic_kitti, tmp_path):
    """train.py on configs/kitti/01_baseline.yaml, shrunk to one step on the synthetic scene."""
    return ["--config", str(ROOT / "configs" / "kitti" / "01_baseline.yaml"),
            "--data_path", str(synthetic_kitti.root), "--split", str(synthetic_kitti.split_dir),
            "--model", "lite-mono-tiny", "--height", "32", "--width", "96", "--batch_size", "2",
            "--num_workers", "0", "--num_steps", "1", "--weights_init", "scratch",
            "--drop_path", "0", "--no_cuda", "--log_dir", str(tmp_path / "runs")]


def test_kitti_row_refuses_to_train_without_imagenet_weights(kitti_row_argv, tmp_path, capsys):
    train = _train_script()
    with pytest.raises(SystemExit) as stopped:
        train.main(kitti_row_argv + ["--model_name", "refused"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.py: error: ")
    assert "lite-mono-tiny-pretrain.pth" in err and "scripts/imagenet_weights.py" in err
    assert "--mypretrain none" in err
    assert not (tmp_path / "runs" / "refused" / "checkpoints" / "last.pt").exists()

    path = tmp_path / "pickled.pth"
    torch.save(upstream_checkpoint("lite-mono-tiny", extra=RunsCode(tmp_path / "ran")), path)
    with pytest.raises(SystemExit) as stopped:
        train.main(kitti_row_argv + ["--model_name", "p", "--mypretrain", str(path)])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow_pickle" in err
    assert not (tmp_path / "ran").exists()


@pytest.mark.slow
def test_kitti_row_trains_from_imagenet_weights_or_from_scratch_on_purpose(kitti_row_argv,
                                                                            tmp_path, capsys):
    train = _train_script()
    path = tmp_path / "lite-mono-tiny-pretrain.pth"
    torch.save(upstream_checkpoint("lite-mono-tiny"), path)
    assert train.main(kitti_row_argv + ["--model_name", "init", "--mypretrain", str(path)]) == 0
    assert f"--mypretrain: encoder initialised from {path}" in capsys.readouterr().out
    assert train.main(kitti_row_argv + ["--model_name", "scratch", "--mypretrain", "none"]) == 0


def test_required_marker_is_checked_only_when_initialising(tmp_path):
    from litemono import checkpoint as ckpt
    from litemono.config import from_dict

    cfg = from_dict({"model": "lite-mono-8m", "mypretrain_required": True})
    with pytest.raises(ConfigError, match="lite-mono-8m-pretrain.pth"):
        ckpt.load_initial_weights(cfg, training=None, report=print)
