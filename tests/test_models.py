"""Networks: blocks against independent computations, gradient coverage over the flag product
(network flags x distillation / Chamfer terms), bin-head invariants, sizes, strict loading, pose
network, parameter and MAC counts."""
import copy
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import litemono
from litemono.config import ModelConfig, from_dict
from litemono.errors import CheckpointError, UserError
from litemono.losses.criterion import build_criterion
from litemono.io import save_torch
from litemono.models.attention import ATTENTION_KINDS, SpatialAttention
from litemono.models.blocks import XCA, FourierPositionalEncoding
from litemono.models.build import (build_depth_network, build_pose_network,
                                   depth_state_dicts, load_depth_network, load_state_strict)
from litemono.models.encoder import VARIANTS, LiteMono, infer_variant, select_dilations
from litemono.models.profile import count_macs, count_parameters

TINY = dict(height=32, width=64)

# measurements.md section 2 (upstream code, 640x192): encoder, depth decoder
UPSTREAM_PARAMS = {"lite-mono": (2_848_120, 226_627), "lite-mono-small": (2_250_232, 226_627),
                   "lite-mono-tiny": (1_955_192, 192_467), "lite-mono-8m": (8_139_960, 635_891)}


@pytest.fixture(autouse=True)
def _one_thread():
    """These tensors are tiny: a second intra-op thread only adds spin-wait overhead (several
    seconds per test on a loaded 2-core machine)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def check_bin_outputs(centers, probs, disp, mode, size):
    """A bin head's outputs: sorted centres in (0, 1), probabilities summing to 1 per pixel,
    disparity = their weighted sum; uniform centres in the fixed mode."""
    batch, bins = centers.shape
    assert probs.shape == (batch, bins, *size) and disp.shape == (batch, 1, *size)
    assert (centers.diff(dim=1) > 0).all() and (centers > 0).all() and (centers < 1).all()
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(batch, *size))
    expected = (probs.numpy() * centers.numpy()[:, :, None, None]).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(disp.numpy(), expected, rtol=1e-5, atol=1e-6)
    if mode == "fixed":
        uniform = (np.arange(bins) + 0.5) / bins
        np.testing.assert_allclose(centers.numpy(), np.tile(uniform, (batch, 1)))


def _net(**options):
    torch.manual_seed(0)
    return build_depth_network(ModelConfig(**{**TINY, **options}))


def _save(net, folder, drop_config=False):
    states = depth_state_dicts(net, net.height, net.width)
    if drop_config:  # what an upstream checkpoint looks like
        del states["encoder"]["litemono"]
    save_torch(states["encoder"], folder / "encoder.pth")
    save_torch(states["depth"], folder / "depth.pth")


# the loss terms beyond the photometric one, crossed with the network flags; Chamfer needs the
# adaptive bin head (config.validate)
TERMS = {"photometric": {}, "distill": dict(distill_weight=1.0, teacher_dir="teacher"),
         "distill+chamfer": dict(distill_weight=1.0, chamfer_weight=0.1, teacher_dir="teacher")}
FLAG_PRODUCT = [case for case in itertools.product(VARIANTS, [False, True],
                                                   ["off", "adaptive", "fixed"], TERMS)
                if "chamfer" not in case[3] or case[2] == "adaptive"]


@pytest.mark.parametrize("variant,attention,bins,terms", FLAG_PRODUCT)
def test_every_parameter_gets_a_finite_gradient(variant, attention, bins, terms):
    cfg = from_dict({**TINY, "model": variant, "spatial_attention": attention,
                     "bins": 0 if bins == "off" else 8,
                     "bin_mode": "fixed" if bins == "off" else bins, **TERMS[terms]})
    torch.manual_seed(0)
    net = build_depth_network(cfg.model).train()
    out = net(torch.rand(2, 3, 32, 64))
    loss = sum((out[("disp", s)] * torch.rand_like(out[("disp", s)])).mean() for s in (0, 1, 2))
    teacher = torch.rand(2, 1, 32, 64) * (torch.rand(2, 1, 32, 64) > 0.1)  # 0 = sky
    extra = build_criterion(cfg).extra_terms
    assert [term.name for term in extra] == [n for n in ("distill", "chamfer") if n in terms]
    names, params = zip(*net.named_parameters())
    for term in extra:
        value = term({"teacher_disp": teacher}, out)
        grads = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
        assert torch.isfinite(value) and value > 0, term.name
        assert all(torch.isfinite(g).all() for g in grads if g is not None), term.name
        # each term trains the encoder (through the disparities or the bin centres)
        assert any(g is not None and g.abs().sum() > 0
                   for n, g in zip(names, grads) if n.startswith("encoder.")), term.name
        loss = loss + term.weight * value
    loss.backward()
    no_grad = {n for n, p in net.named_parameters() if p.grad is None}
    # upstream's CDC blocks own a LayerNorm that forward never uses (kept for strict loading)
    unused = {n for n, _ in net.named_parameters() if _is_cdc_norm(net, n)}
    assert no_grad == unused
    spec = VARIANTS[variant]
    assert sum(net.get_parameter(n).numel() for n in unused) == sum(
        2 * dim * (depth - 1) for dim, depth in zip(spec.dims, spec.depths))  # weight + bias
    for name, param in net.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    if attention:
        assert any(n.startswith("encoder.spatial_attention.") for n, _ in net.named_parameters())


def _is_cdc_norm(net, name):
    parts = name.split(".")  # encoder.stages.<stage>.<block>.norm.weight
    if parts[:2] != ["encoder", "stages"] or parts[4] != "norm":
        return False
    block = net.encoder.stages[int(parts[2])][int(parts[3])]
    return type(block).__name__ == "CDCBlock"


@pytest.mark.parametrize("mode", ["adaptive", "fixed"])
def test_bin_head_invariants_and_disparity(mode):
    net = _net(bins=16, bin_mode=mode).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 3, 32, 64))
    check_bin_outputs(out["bin_centers"], out["bin_probs"], out[("disp", 0)], mode, (32, 64))
    assert ("disp", 1) in out and ("disp", 2) in out


def test_adaptive_centres_are_cell_midpoints_of_the_predicted_widths():
    head = _net(bins=5).decoder.bin_head
    top, deep = torch.randn(2, head.logits[1].in_channels, 4, 8), torch.randn(2, 128, 1, 2)
    with torch.no_grad():
        centers = head.bin_centers(top, deep).numpy()
        raw = head.center_mlp(torch.cat((top.mean((2, 3)), deep.mean((2, 3))), 1)).numpy()
    widths = np.log1p(np.exp(raw)) + 1e-3
    widths /= widths.sum(axis=1, keepdims=True)
    edges = np.concatenate([np.zeros((2, 1)), np.cumsum(widths, axis=1)], axis=1)
    np.testing.assert_allclose(centers, (edges[:, :-1] + edges[:, 1:]) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("height,width", [(32, 32), (64, 96), (96, 160), (128, 64)])
def test_any_multiple_of_32_runs(height, width):
    net = _net(model="lite-mono-tiny", height=height, width=width).eval()
    with torch.no_grad():
        feats = net.encoder(torch.rand(1, 3, height, width))
        out = net(torch.rand(1, 3, height, width))
    assert [f.shape[1:] for f in feats] == [(32, height // 4, width // 4),
                                           (64, height // 8, width // 8),
                                           (128, height // 16, width // 16)]
    for s in (0, 1, 2):
        assert out[("disp", s)].shape == (1, 1, height >> s, width >> s)
        assert ((out[("disp", s)] > 0) & (out[("disp", s)] < 1)).all()


def test_dilation_rule_and_override():
    assert select_dilations("lite-mono", 640)[2] == [1, 2, 3, 1, 2, 3, 2, 4, 6]
    assert select_dilations("lite-mono", 320) == select_dilations("lite-mono", 640)
    wide = [[1, 2, 5], [1, 2, 5], [1, 2, 5, 1, 2, 5, 2, 4, 10]]
    assert select_dilations("lite-mono", 1024) == wide
    assert select_dilations("lite-mono-small", 1280)[2] == [1, 2, 5, 2, 4, 10]
    assert select_dilations("lite-mono-8m", 1024) == select_dilations("lite-mono-8m", 640)
    custom = [[1, 1, 1], [2, 2, 2], [1, 2, 3, 4, 5, 6]]
    encoder = LiteMono("lite-mono-tiny", dilations=custom)
    used = [[blk.ddwconv.conv.dilation[0] for blk in stage[:-1]] for stage in encoder.stages]
    assert used == custom
    with pytest.raises(ValueError, match="--dilations"):
        LiteMono("lite-mono", dilations=custom)


def test_positional_encoding_matches_formula_and_is_cached_outside_the_state_dict():
    height, width = 3, 5
    grid = FourierPositionalEncoding.raw_encoding(height, width, "cpu", torch.float32)[0].numpy()
    for j in range(32):
        freq = 10000.0 ** (2 * (j // 2) / 32)
        fn = np.sin if j % 2 == 0 else np.cos
        rows = fn(np.arange(1, height + 1) / (height + 1e-6) * 2 * math.pi / freq)
        cols = fn(np.arange(1, width + 1) / (width + 1e-6) * 2 * math.pi / freq)
        np.testing.assert_allclose(grid[j], np.repeat(rows[:, None], width, 1), atol=1e-5)
        np.testing.assert_allclose(grid[32 + j], np.repeat(cols[None], height, 0), atol=1e-5)
    encoding = FourierPositionalEncoding(8)
    keys = list(encoding.state_dict())
    first = encoding(height, width, torch.zeros(1))
    assert list(encoding.state_dict()) == keys and len(encoding._cache) == 1
    torch.testing.assert_close(encoding(height, width, torch.zeros(1)), first)


def test_xca_matches_a_per_head_loop():
    torch.manual_seed(1)
    xca = XCA(12, num_heads=3)
    with torch.no_grad():
        xca.temperature.copy_(torch.tensor([0.5, 1.0, 2.0]).view(3, 1, 1))
        tokens = torch.randn(2, 7, 12)
        q, k, v = F.linear(tokens, xca.qkv.weight, xca.qkv.bias).split(12, dim=-1)
        heads = []
        for h in range(3):
            sl = slice(4 * h, 4 * h + 4)
            qh, kh, vh = (t[..., sl].transpose(1, 2) for t in (q, k, v))  # (B, 4, N)
            qh, kh = qh / qh.norm(dim=-1, keepdim=True), kh / kh.norm(dim=-1, keepdim=True)
            attn = torch.softmax(qh @ kh.transpose(1, 2) * xca.temperature[h], dim=-1)
            heads.append((attn @ vh).transpose(1, 2))
        expected = F.linear(torch.cat(heads, dim=-1), xca.proj.weight, xca.proj.bias)
        torch.testing.assert_close(xca(tokens), expected)


def test_spatial_attention_matches_cbam_formula():
    torch.manual_seed(2)
    module = SpatialAttention()
    x = torch.randn(2, 6, 9, 11)
    pooled = torch.stack((x.mean(1), x.max(1).values), dim=1)
    gate = torch.sigmoid(F.conv2d(pooled, module.conv.weight, padding=3))
    torch.testing.assert_close(module(x), x * gate)
    assert module.bn is None and list(module.state_dict()) == ["conv.weight"]  # Eq. 3: no BN


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_spatial_bn_attention_matches_the_official_cbam_gate(training):
    """``spatial_bn``: conv (no bias), BatchNorm2d(1) with eps 1e-5 and momentum 0.01, sigmoid,
    multiply; batch statistics in training (the running ones move 1% towards them, the variance
    unbiased), the running ones in eval."""
    torch.manual_seed(4)
    module = ATTENTION_KINDS["spatial_bn"](6).train(training)
    with torch.no_grad():  # away from the defaults, so that every BN term matters
        module.bn.weight.fill_(1.7), module.bn.bias.fill_(-0.3)
        module.bn.running_mean.fill_(0.4), module.bn.running_var.fill_(2.5)
    assert module.conv.bias is None
    x = torch.randn(3, 6, 9, 11)
    pooled = torch.stack((x.mean(1), x.max(1).values), dim=1)
    logits = F.conv2d(pooled, module.conv.weight.detach(), padding=3)
    mean, var = (logits.mean(), logits.var(unbiased=False)) if training else (0.4, 2.5)
    gate = torch.sigmoid((logits - mean) / torch.sqrt(torch.as_tensor(var) + 1e-5) * 1.7 - 0.3)
    torch.testing.assert_close(module(x), x * gate)
    running = (0.99 * 0.4 + 0.01 * logits.mean(), 0.99 * 2.5 + 0.01 * logits.var(unbiased=True))
    expected = running if training else (0.4, 2.5)
    torch.testing.assert_close(module.bn.running_mean, torch.tensor([float(expected[0])]))
    torch.testing.assert_close(module.bn.running_var, torch.tensor([float(expected[1])]))
    assert int(module.bn.num_batches_tracked) == int(training)


def test_flag_off_layout_is_upstream_and_flags_only_add_keys():
    plain = set(_net().state_dict())
    extended = set(_net(spatial_attention=True, attention_stages=[1]).state_dict())
    assert extended - plain == {"encoder.spatial_attention.1.conv.weight"}
    assert set(_net(attention="spatial", attention_stages=[1]).state_dict()) == extended
    with_bn = set(_net(attention="spatial_bn", attention_stages=[1]).state_dict())
    assert with_bn - plain == extended - plain | {
        f"encoder.spatial_attention.1.bn.{k}"
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    binned = _net(bins=4).decoder.state_dict()
    assert {k for k in binned if k.startswith("bin_head")} and "decoder.8.conv.weight" not in binned


@pytest.mark.parametrize("variant", list(UPSTREAM_PARAMS))
def test_parameter_counts_equal_upstream(variant):
    assert set(UPSTREAM_PARAMS) <= set(VARIANTS)  # a new row needs no count; none may vanish
    net = build_depth_network(ModelConfig(model=variant))
    counts = (count_parameters(net.encoder), count_parameters(net.decoder))
    assert counts == UPSTREAM_PARAMS[variant]
    assert infer_variant(net.encoder.state_dict()) == variant


def test_round_trip_and_variant_inference(tmp_path):
    net = _net(model="lite-mono-tiny", spatial_attention=True, bins=6).eval()
    _save(net, tmp_path)
    loaded = litemono.load_depth_network(tmp_path)
    assert not loaded.training and loaded.config == net.config
    image = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        for key, value in net(image).items():
            torch.testing.assert_close(loaded(image)[key], value)
            channels_last = image.contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(loaded(channels_last)[key], value)
        assert len(loaded.encoder(image)) == 3
    upstream_like = tmp_path / "upstream"
    _save(_net(model="lite-mono-small"), upstream_like, drop_config=True)
    assert load_depth_network(upstream_like).config.model == "lite-mono-small"


def test_wrong_variant_fails_naming_the_variant(tmp_path):
    _save(_net(model="lite-mono-tiny"), tmp_path, drop_config=True)
    with pytest.raises(ValueError, match="fits --model lite-mono-tiny") as info:
        load_depth_network(tmp_path, model="lite-mono")
    assert "wrong shape" in str(info.value) and "encoder.pth" in str(info.value)
    with pytest.raises(FileNotFoundError, match="depth.pth"):
        (tmp_path / "depth.pth").unlink()
        load_depth_network(tmp_path)


@pytest.mark.parametrize("name", ["encoder.pth", "depth.pth"])
def test_a_truncated_weights_file_is_refused_naming_it(tmp_path, name):
    _save(_net(model="lite-mono-tiny"), tmp_path)
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read .*" + name) as info:
        load_depth_network(tmp_path)
    assert str(tmp_path / name) in str(info.value) and "\n" not in str(info.value)


def test_load_state_strict_names_missing_unexpected_and_shapes():
    module = torch.nn.Linear(3, 2)
    with pytest.raises(ValueError) as info:
        load_state_strict(module, {"weight": torch.zeros(2, 4), "extra": torch.zeros(1)}, "x.pth")
    message = str(info.value)
    assert "missing: bias" in message and "unexpected: extra" in message
    assert "weight [2, 4] (expected [2, 3])" in message


def test_pose_network_shapes_scale_and_split():
    cfg = ModelConfig(weights_init="scratch")
    pose = build_pose_network(cfg)
    assert count_parameters(pose.encoder) == 11_698_920
    assert count_parameters(pose.decoder) == 1_314_572
    head = pose.decoder.net[3]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.arange(12.0))
        axisangle, translation = pose(torch.rand(2, 6, 64, 96))
    assert axisangle.shape == translation.shape == (2, 2, 1, 3)
    expected = 0.01 * torch.arange(12.0).view(2, 1, 6)  # per frame: 3 axis-angle, 3 translation
    torch.testing.assert_close(axisangle[0], expected[..., :3])
    torch.testing.assert_close(translation[1], expected[..., 3:])


def test_pose_sequence_runs_pair_by_pair_as_upstream():
    """A sequence of pairs gives upstream's pair-by-pair results: each pair normalised with its
    own train-mode BatchNorm statistics and the running statistics updated once per pair (one
    BatchNorm over both pairs fails this test)."""
    torch.manual_seed(0)
    pose = build_pose_network(ModelConfig(weights_init="scratch")).train()
    one_by_one = copy.deepcopy(pose)
    # different statistics per pair, so pooling them would show
    pairs = [torch.rand(2, 6, 64, 96) * scale + shift for scale, shift in ((1.0, 0.0), (0.3, 0.5))]
    rot, shift = pose(pairs)
    motions = [one_by_one(p) for p in pairs]
    torch.testing.assert_close(rot, torch.cat([m[0] for m in motions]))
    torch.testing.assert_close(shift, torch.cat([m[1] for m in motions]))
    for (name, a), b in zip(pose.named_buffers(), one_by_one.buffers()):
        torch.testing.assert_close(a, b, msg=name)
    assert pose.encoder.encoder.bn1.num_batches_tracked.item() == 2
    pooled = copy.deepcopy(one_by_one)
    joint_rot, _ = pooled(torch.cat(pairs))
    assert not torch.allclose(joint_rot, rot, atol=1e-6)


def test_pose_pretrained_init_and_clear_failure(monkeypatch):
    import torchvision
    from torchvision.models._api import WeightsEnum

    reference = torchvision.models.resnet18(weights=None).state_dict()
    monkeypatch.setattr(WeightsEnum, "get_state_dict", lambda self, *a, **k: dict(reference))
    pose = build_pose_network(ModelConfig())
    conv1 = pose.encoder.encoder.conv1.weight
    torch.testing.assert_close(conv1[:, :3], reference["conv1.weight"] / 2)
    torch.testing.assert_close(conv1[:, 3:], reference["conv1.weight"] / 2)

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(UserError) as info:
        build_pose_network(ModelConfig())
    # a user error (one line from the tools) naming the file to put in torch's hub cache
    cached = Path(torch.hub.get_dir()) / "checkpoints" / "resnet18-f37072fd.pth"
    assert f"torchvision reads them from {cached}" in str(info.value)
    assert "OSError: no network" in str(info.value) and "--weights_init scratch" in str(info.value)


def test_shared_pose_uses_the_depth_encoder():
    depth = _net()
    pose = build_pose_network(ModelConfig(**TINY, pose_model_type="shared"), depth)
    own = {f"decoder.net.{i}.{p}" for i in range(4) for p in ("weight", "bias")}
    assert set(pose.state_dict()) == own
    pair = torch.rand(2, 6, 32, 64)
    axisangle, translation = pose(pair)
    # the decoder on the depth encoder's features of each frame
    expected = pose.decoder([depth.encoder(pair[:, :3]), depth.encoder(pair[:, 3:])])
    torch.testing.assert_close(axisangle, expected[0])
    assert axisangle.shape == translation.shape == (2, 1, 1, 3)
    translation.sum().backward()
    assert depth.encoder.stem2[0].conv.weight.grad is not None
    with pytest.raises(ValueError, match="shared"):
        build_pose_network(ModelConfig(pose_model_type="shared"))


def test_macs_follow_the_paper_convention():
    net = build_depth_network(ModelConfig())
    counts = count_macs(net, 192, 640)
    assert round(counts["macs"] / 1e9, 3) == 5.032  # measurements.md section 3 (thop)
    assert round(counts["true_flops"] / 1e9, 3) == 10.029
    small = _net(spatial_attention=True, bins=4)
    assert count_macs(small, 32, 64)["macs"] == count_macs(small, 32, 64, use_thop=False)["macs"]


def test_spatial_bn_adds_four_macs_per_gate_pixel():
    """thop's rule for an affine BatchNorm (4 MACs per input element, the pose ResNet's too): at
    640x192 the gates of stages 0-2 (H/4, H/8, H/16) have 10,080 pixels; ``spatial`` adds the
    7x7x2 conv's 98 MACs per pixel to lite-mono, ``spatial_bn`` 4 more. Both counters agree."""
    pixels = sum((192 >> s) * (640 >> s) for s in (2, 3, 4))
    assert pixels == 10_080
    macs = {kind: count_macs(build_depth_network(ModelConfig(attention=kind)), 192, 640)["macs"]
            for kind in (None, "spatial", "spatial_bn")}
    assert macs[None] == 5_031_565_440  # the paper's 5.032 G (test above)
    assert macs["spatial"] == macs[None] + 98 * pixels == 5_032_553_280
    assert macs["spatial_bn"] == macs["spatial"] + 4 * pixels == 5_032_593_600
    small = _net(model="lite-mono-tiny", attention="spatial_bn")
    assert count_macs(small, 32, 64)["macs"] == count_macs(small, 32, 64, use_thop=False)["macs"]


def test_pose_network_round_trip_through_a_weights_folder(tmp_path):
    from litemono.models.build import load_pose_network

    torch.manual_seed(0)
    pose = build_pose_network(ModelConfig(weights_init="scratch")).eval()
    torch.save(pose.encoder.state_dict(), tmp_path / "pose_encoder.pth")
    torch.save(pose.decoder.state_dict(), tmp_path / "pose.pth")
    loaded = load_pose_network(tmp_path)
    pair = torch.rand(2, 6, 64, 96)
    with torch.no_grad():
        for got, want in zip(loaded(pair), pose(pair)):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
    (tmp_path / "pose.pth").unlink()
    with pytest.raises(FileNotFoundError, match="no pose.pth"):
        load_pose_network(tmp_path)


@pytest.mark.parametrize("bins", [0, 8])
def test_disp_init_sets_the_sigmoid_heads_start(bins):
    from litemono.models.build import build_depth_network

    torch.manual_seed(0)
    cfg = from_dict({"model": "lite-mono-tiny", "height": 64, "width": 96, "disp_init": 0.05,
                     "bins": bins, "weights_init": "scratch"})
    net = build_depth_network(cfg.model).eval()
    heads = [net.decoder.decoder[2 * 3 + i].conv.bias for i in range(len(net.decoder.sigmoid_scales))]
    assert heads and all(torch.allclose(b, torch.full_like(b, math.log(0.05 / 0.95))) for b in heads)
    with torch.no_grad():
        outputs = net(torch.rand(2, 3, 64, 96))
    for scale in net.decoder.sigmoid_scales:  # zero-mean weights: outputs centre on the start
        assert float(outputs[("disp", scale)].median()) == pytest.approx(0.05, rel=0.3)
    torch.manual_seed(0)
    plain = build_depth_network(from_dict({"model": "lite-mono-tiny", "height": 64, "width": 96,
                                           "bins": bins}).model)
    assert all(float(b.abs().max()) == 0 for b in
               [plain.decoder.decoder[2 * 3 + i].conv.bias
                for i in range(len(plain.decoder.sigmoid_scales))])  # upstream: zero bias


@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_cpu_autocast_dilated_depthwise_grad(dilation):
    """Under CPU bfloat16 autocast (channels_last, as --amp bf16 trains) a CDC block's depth-wise
    weight gradient stays close to float32's: oneDNN's own bf16 kernel returns garbage for
    dilation > 1 (torch 2.14), so the block runs that convolution in float32."""
    from litemono.models.blocks import CDCBlock

    torch.manual_seed(0)
    block = CDCBlock(48, dilation, layer_scale_init=1.0).to(memory_format=torch.channels_last)
    x = torch.randn(4, 48, 12, 40).contiguous(memory_format=torch.channels_last)
    grad_out = torch.randn(4, 48, 12, 40)

    def weight_grad(autocast):
        block.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = block(x)
        out.float().backward(grad_out)
        return block.ddwconv.conv.weight.grad.clone()

    reference, mixed = weight_grad(False), weight_grad(True)
    assert torch.isfinite(mixed).all()
    error = (mixed - reference).abs().max() / reference.abs().max()
    assert error < 0.05, f"bf16 depth-wise weight gradient off by {error:.3g} (relative)"
    # without gradients (inference) the convolution stays in bfloat16: only the backward is wrong
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert block.ddwconv(x).dtype == torch.bfloat16


