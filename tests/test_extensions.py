"""Each extension point in one place (docs/architecture.md, "Extending"): a loss term, an
attention kind, an encoder variant and an encoder family are registered from this file alone,
then show up as flags / choices, are validated, and train one step."""
import numpy as np
import pytest
import torch
from torch import nn

from litemono import config, engine
from litemono.config import ConfigError, option, parse_config
from litemono.losses.criterion import LOSS_TERMS, build_criterion, register_loss_term
from litemono.models.attention import ATTENTION_KINDS, register_attention
from litemono.models.build import (ENCODER_FAMILIES, build_depth_network, check_model_names,
                                   encoder_names, load_depth_network)
from litemono.models.encoder import VARIANTS, Variant, infer_variant

from test_models import _save
from test_train import TinyScene, tiny_config


@pytest.fixture(autouse=True)
def registries():
    """Undo this file's registrations afterwards, so the other tests see the built-ins only."""
    tables = (config.EXTRA_OPTIONS, LOSS_TERMS, ATTENTION_KINDS, VARIANTS, ENCODER_FAMILIES)
    saved = [dict(table) for table in tables]
    checks = list(config.EXTRA_CHECKS)
    yield
    for table, copy in zip(tables, saved):
        table.clear()
        table.update(copy)
    config.EXTRA_CHECKS[:] = checks


def one_step(cfg, frames=(0, -1, 1)):
    """One optimisation step of ``cfg`` on a tiny batch; returns (parts, loss, terms, outputs)."""
    parts = engine.build_training(cfg, torch.device("cpu"), 1)
    criterion = build_criterion(cfg)
    scene = TinyScene(2, cfg.model.height, cfg.model.width, frames)
    batch = torch.utils.data.default_collate([scene[0], scene[1]])
    loss, terms, outputs = engine.train_step(parts, parts.model, criterion, batch, 1)
    assert np.isfinite(loss)
    return parts, loss, terms, outputs


def params_without_grad(module):
    return [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]


# ------------------------------------------------------------------------------ a loss term

class DispPrior:
    """Toy term: the squared gap between the mean scale-0 disparity and ``--prior_target``."""

    name = "prior"

    def __init__(self, cfg):
        self.weight, self.target = cfg.loss.extra["prior_weight"], cfg.loss.extra["prior_target"]

    def __call__(self, inputs, outputs):
        return (outputs[("disp", 0)].mean() - self.target) ** 2


def check_prior(cfg):
    target = cfg.loss.extra["prior_target"]
    if not 0 < target < 1:
        raise ConfigError(f"--prior_target is a disparity in (0, 1), got {target}")


def register_prior():
    register_loss_term("prior", DispPrior, check=check_prior, help="weight of the toy prior",
                       options=[("prior_target", float, option(0.3, "the toy's target"))])


def test_a_registered_loss_term_gets_flags_validation_and_trains(tmp_path, capsys):
    register_prior()
    cfg = parse_config(["--prior_weight", "2", "--prior_target", "0.25"])
    assert cfg.loss.extra == {"prior_weight": 2.0, "prior_target": 0.25}
    assert config.from_dict(cfg.to_dict()) == cfg  # what a run stores reads back
    yml = tmp_path / "prior.yaml"
    yml.write_text("loss:\n  prior_weight: 1e-1\n")  # PyYAML reads 1e-1 as a string
    assert parse_config(["--config", str(yml)]).loss.extra["prior_weight"] == 0.1
    for argv, message in ((["--prior_weight", "-1"], "--prior_weight must be >= 0"),
                          (["--prior_target", "2"], "--prior_target is a disparity in (0, 1)")):
        with pytest.raises(SystemExit):
            parse_config(argv)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--help"])
    assert "weight of the toy prior" in capsys.readouterr().out

    cfg = tiny_config(tmp_path, prior_weight=2.0)
    off = build_criterion(tiny_config(tmp_path))
    assert [type(t) for t in build_criterion(cfg).extra_terms] == [DispPrior]
    assert not off.extra_terms
    parts, loss, terms, outputs = one_step(cfg)
    expected = (outputs[("disp", 0)].mean().item() - 0.3) ** 2
    assert float(terms["prior"]) == pytest.approx(expected, rel=1e-5)
    # the criterion adds weight * term to the photometric loss
    photometric = sum(float(terms[f"loss/scale{s}"]) for s in range(3)) / 3
    assert float(loss) == pytest.approx(photometric + 2.0 * expected, rel=1e-5)


# --------------------------------------------------------------------------- an attention kind

class ChannelGate(nn.Module):
    """Toy attention: x * sigmoid(w * mean_hw(x) + b) per channel (squeeze-excitation, 1 layer)."""

    def __init__(self, channels):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        gate = torch.sigmoid(self.fc(x.mean(dim=(2, 3))))  # (B, C)
        return x * gate[:, :, None, None]


def test_a_registered_attention_kind_is_a_choice_and_trains(tmp_path, capsys):
    register_attention("channel", ChannelGate)
    with pytest.raises(ConfigError, match="'channel'"):  # the choices come from the table
        build_depth_network(parse_config(["--attention", "nonesuch"]).model)
    with pytest.raises(SystemExit):
        parse_config(["--attention", "channel", "--spatial_attention"])
    assert "--spatial_attention is short for --attention spatial" in capsys.readouterr().err

    cfg = tiny_config(tmp_path, attention="channel", attention_stages=[1, 2])
    parts, *_ = one_step(cfg)
    gates = parts.depth.encoder.spatial_attention
    assert sorted(gates) == ["1", "2"] and all(isinstance(g, ChannelGate) for g in gates.values())
    dims = VARIANTS["lite-mono-tiny"].dims
    assert [gates[s].fc.in_features for s in ("1", "2")] == [dims[1], dims[2]]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in gates.parameters())
    # --spatial_attention stays a shorthand of the built-in kind
    net = build_depth_network(parse_config(["--spatial_attention", "--height", "32",
                                            "--width", "64"]).model)
    assert "encoder.spatial_attention.0.conv.weight" in net.state_dict()


def test_the_built_in_spatial_bn_kind_trains(tmp_path, capsys):
    """``--attention spatial_bn`` through build_model: the gates keep the feature shapes, one step
    reaches the conv and the BatchNorm, whose running statistics move; ``--spatial_attention``
    (short for ``--attention spatial``) with it is refused in one line."""
    with pytest.raises(SystemExit):
        parse_config(["--attention", "spatial_bn", "--spatial_attention"])
    err = capsys.readouterr().err.strip()
    assert "contradicts --attention spatial_bn, drop --spatial_attention" in err
    assert "\n" not in err and ": error: " in err
    cfg = tiny_config(tmp_path, attention="spatial_bn", attention_stages=[0, 2])
    parts, *_ = one_step(cfg)
    encoder = parts.depth.encoder
    gates = encoder.spatial_attention
    assert sorted(gates) == ["0", "2"] and all(g.bn is not None for g in gates.values())
    for gate in gates.values():
        for p in (gate.conv.weight, gate.bn.weight, gate.bn.bias):
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        assert gate.bn.num_batches_tracked > 0 and gate.bn.running_mean.abs().sum() > 0
    with torch.no_grad():
        features = encoder.eval()(torch.rand(2, 3, 32, 64))
    dims = VARIANTS["lite-mono-tiny"].dims
    assert [f.shape for f in features] == [(2, d, 32 >> s, 64 >> s) for d, s in zip(dims, (2, 3, 4))]


# ------------------------------------------------------------------------ an encoder variant

TOY_VARIANT = Variant(dims=(16, 24, 32), depths=(2, 2, 3),
                      dilations_narrow=((1,), (2,), (1, 3)), dilations_wide=((1,), (2,), (1, 3)))


def test_a_variant_row_is_a_model_choice_trains_and_round_trips(tmp_path):
    VARIANTS["toy-mono"] = TOY_VARIANT
    assert "toy-mono" in encoder_names()
    assert parse_config(["--model", "toy-mono"]).model.model == "toy-mono"

    parts, *_ = one_step(tiny_config(tmp_path, model="toy-mono"))
    encoder = parts.depth.encoder
    assert encoder.num_ch_enc == (16, 24, 32)
    assert [len(stage) for stage in encoder.stages] == [2, 2, 3]
    assert encoder.dilations == [[1], [2], [1, 3]]
    assert infer_variant(encoder.state_dict()) == "toy-mono"
    unused = {n for n in params_without_grad(parts.depth) if ".norm." in n}  # upstream's CDC norm
    assert set(params_without_grad(parts.depth)) == unused
    _save(parts.depth, tmp_path)
    loaded = load_depth_network(tmp_path)
    assert loaded.config.model == "toy-mono"
    image = torch.rand(1, 3, 32, 64)
    parts.depth.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)[("disp", 0)], parts.depth(image)[("disp", 0)])


# -------------------------------------------------------------------------- an encoder family

class ToyResNet(nn.Module):
    """Toy family: five stride-2 conv + ReLU stages, features at H/2 ... H/32 (a ResNet's)."""

    first_stride = 2

    def __init__(self, cfg):
        super().__init__()
        self.num_ch_enc = (8, 8, 16, 16, 32)
        ins = (3,) + self.num_ch_enc[:-1]
        self.stages = nn.ModuleList(nn.Sequential(nn.Conv2d(i, o, 3, 2, 1), nn.ReLU())
                                    for i, o in zip(ins, self.num_ch_enc))

    def forward(self, image):
        features, x = [], image
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def test_a_registered_encoder_family_gets_a_five_level_decoder_and_trains(tmp_path):
    ENCODER_FAMILIES["toy-resnet"] = ToyResNet
    # 64x128: the decoder's reflection padding needs the H/32 feature at least 2 pixels high
    cfg = tiny_config(tmp_path, model="toy-resnet", height=64, width=128)
    parts, _, _, outputs = one_step(cfg)
    assert parts.depth.decoder.num_levels == 5
    for s in (0, 1, 2):
        assert outputs[("disp", s)].shape == (2, 1, 64 // 2 ** s, 128 // 2 ** s)
    assert params_without_grad(parts.depth) == []
    with pytest.raises(ValueError, match="--bins needs"):
        build_depth_network(tiny_config(tmp_path, model="toy-resnet", bins=4).model)


def test_an_encoder_family_refuses_lite_mono_only_flags():
    ENCODER_FAMILIES["toy-resnet"] = ToyResNet
    for options, flag in (({"attention": "spatial"}, "--attention"),
                          ({"spatial_attention": True}, "--spatial_attention"),
                          ({"dilations": [[1], [2], [1, 3]]}, "--dilations")):
        with pytest.raises(ConfigError, match=f"^{flag} belongs to Lite-Mono's encoder, and "
                                              "--model toy-resnet is an encoder family"):
            check_model_names(config.from_dict({"model": "toy-resnet", **options}).model)
        check_model_names(config.from_dict({"model": "lite-mono-tiny", **options}).model)
    check_model_names(config.from_dict({"model": "toy-resnet", "drop_path": 0.1}).model)


# ------------------------------------------------ all of them from a file outside the package

MY_EXTENSIONS = '''
"""A researcher's own module: registers a loss term, an attention kind and a variant."""
import torch
from torch import nn

from litemono.config import option
from litemono.losses.criterion import register_loss_term
from litemono.models.attention import register_attention
from litemono.models.encoder import VARIANTS, Variant

CALLS = []


class MeanDisp:
    name = "meandisp"

    def __init__(self, cfg):
        self.weight, self.target = cfg.loss.extra["meandisp_weight"], cfg.loss.extra["meandisp_to"]

    def __call__(self, inputs, outputs):
        CALLS.append(self.target)
        return (outputs[("disp", 0)].mean() - self.target) ** 2


class Gate(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(channels))

    def forward(self, x):
        return x * self.scale[:, None, None]


register_loss_term("meandisp", MeanDisp, help="pull the mean disparity to --meandisp_to",
                   options=[("meandisp_to", float, option(0.3, "target mean disparity"))])
register_attention("gate", Gate)
VARIANTS["mini-mono"] = Variant(dims=(16, 24, 32), depths=(2, 2, 3),
                                dilations_narrow=((1,), (2,), (1, 3)),
                                dilations_wide=((1,), (2,), (1, 3)))
'''


@pytest.mark.slow
def test_train_imports_a_researchers_module_and_uses_what_it_registers(tmp_path, capsys):
    """``train.py --import path/to/my_extensions.py``: its loss term's flags exist, its attention
    kind and variant are --attention / --model choices, one step trains with all three, and
    the run folder records the import (a resume with the same command finds it again)."""
    import sys

    import yaml

    from litemono.data import synthetic
    from test_reliability import TINY_SCENE, load_script, train_argv

    # without --import the term's flag is unknown, and the message says what to do
    with pytest.raises(SystemExit):
        parse_config(["--meandisp_weight", "1"])
    assert "pass its module with --import" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(["--import", str(tmp_path / "absent.py")])
    assert f"--import {tmp_path / 'absent.py'}: no such file" in capsys.readouterr().err

    module = tmp_path / "my_extensions.py"
    module.write_text(MY_EXTENSIONS)
    scene = synthetic.make_synthetic_kitti(tmp_path / "scene", **TINY_SCENE)
    argv = train_argv(scene, tmp_path / "log", "--import", str(module), "--model", "mini-mono",
                      "--attention", "gate", "--meandisp_weight", "0.5", "--meandisp_to", "0.2")
    assert load_script("train").main(argv) == 0
    imported = [m for name, m in sys.modules.items() if name.startswith("litemono_import_")
                and getattr(m, "__file__", None) == str(module)]
    calls = imported[0].CALLS
    assert calls and set(calls) == {0.2}  # the term ran, with its own option
    stored = yaml.safe_load((tmp_path / "log" / "r" / "config.yaml").read_text())
    assert stored["train"]["imports"] == [str(module)] and stored["model"]["model"] == "mini-mono"
    assert stored["loss"]["extra"] == {"meandisp_weight": 0.5, "meandisp_to": 0.2}
    state = torch.load(tmp_path / "log" / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert any(k.endswith(".scale") for k in state["models"]["depth"])  # the gate trained


def test_import_loads_each_file_once_and_two_files_of_one_name_both(tmp_path, monkeypatch):
    import sys

    from litemono.config import import_extensions

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "my_terms.py").write_text(
            f"import builtins\nbuiltins.LOADED = getattr(builtins, 'LOADED', []) + ['{folder}']\n")
    monkeypatch.setattr("builtins.LOADED", [], raising=False)
    monkeypatch.chdir(tmp_path)
    before = set(sys.modules)
    import_extensions(["a/my_terms.py", str(tmp_path / "a" / "my_terms.py"), "b/my_terms.py"])
    import builtins
    assert builtins.LOADED == ["a", "b"]  # a's two spellings are one module; b is another file
    for name in set(sys.modules) - before:
        del sys.modules[name]
