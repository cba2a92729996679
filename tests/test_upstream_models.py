"""Networks against the upstream Lite-Mono reference data (../shared/upstream_reference).

Every folder with ``manifest.json`` and ``encoder.pth`` is a seeded upstream checkpoint with the
outputs upstream computed: it must load strictly, unchanged, and reproduce features and
disparities. Every ``*_keys.txt`` listing must equal our module's state dict (names, order,
shapes). Sizes and variants come from the files.
"""
import json
import re

import numpy as np
import pytest
import torch

from conftest import reference_dir, reference_params
from litemono.config import ModelConfig
from litemono.models.build import build_depth_network, depth_state_dicts, load_depth_network
from litemono.models.decoder import DepthDecoder
from litemono.models.encoder import VARIANTS, LiteMono
from litemono.models.pose import PoseDecoder, PoseEncoder

pytestmark = pytest.mark.upstream

KEY_FILE = re.compile(r"litemono(?:_(\w+?))?_(encoder|decoder)_keys\.txt")
RESNET18_CHANNELS = (64, 64, 128, 256, 512)


def _key_listings():
    root = reference_dir()
    files = sorted(root.glob("*_keys.txt")) if root.is_dir() else []
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no *_keys.txt in {root}"))]
    return [pytest.param(f, id=f.name) for f in files]


def _read_listing(path):
    rows = []
    for line in path.read_text().splitlines():
        name, shape = line.split("\t")
        rows.append((name, shape))
    return rows


def _module_for_listing(path):
    """Our module whose state dict the listing describes, or None for the extras listing."""
    match = KEY_FILE.fullmatch(path.name)
    if match:
        variant = "lite-mono" + (f"-{match.group(1)}" if match.group(1) else "")
        assert variant in VARIANTS, f"{path.name}: no variant {variant}"
        encoder = LiteMono(variant)
        return encoder if match.group(2) == "encoder" else DepthDecoder(encoder.num_ch_enc)
    if path.name == "pose_encoder_keys.txt":
        return PoseEncoder(18, pretrained=False, num_frames=2)
    if path.name == "pose_decoder_keys.txt":
        return PoseDecoder(RESNET18_CHANNELS, num_input_features=1, num_frames=2)
    if path.name == "encoder_checkpoint_extra_keys.txt":
        return None
    pytest.fail(f"unrecognised key listing {path.name}: teach this test which module it describes")


@pytest.mark.parametrize("listing", _key_listings())
def test_state_dict_matches_key_listing(listing):
    expected = _read_listing(listing)
    module = _module_for_listing(listing)
    if module is None:  # non-tensor entries of encoder.pth: name and Python type
        net = build_depth_network(ModelConfig())
        saved = depth_state_dicts(net, 192, 640, use_stereo=False)["encoder"]
        for name, type_name in expected:
            assert type(saved[name]).__name__ == type_name, name
        return
    ours = [(k, json.dumps(list(v.shape))) for k, v in module.state_dict().items()]
    assert [k for k, _ in ours] == [k for k, _ in expected], "key names or order differ"
    assert [(k, json.loads(s)) for k, s in ours] == [(k, json.loads(s)) for k, s in expected]


@pytest.mark.parametrize("folder", reference_params("manifest.json", "encoder.pth"))
def test_reference_checkpoint_outputs(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    tol = manifest.get("suggested_tolerance", {"atol": 1e-5, "rtol": 1e-4})
    net = load_depth_network(folder)  # strict: raises on any key or shape difference
    assert not net.training
    assert net.config.model == manifest["variant"]
    assert (net.height, net.width) == (manifest["height"], manifest["width"])
    image = torch.from_numpy(np.load(folder / "input.npz")["image"])
    expected = np.load(folder / "outputs.npz")
    with torch.no_grad():
        features = net.encoder(image)
        outputs = net.decoder(features)
    feature_keys = sorted(k for k in expected.files if k.startswith("features_"))
    assert len(feature_keys) == len(features) == 3
    for i, feature in enumerate(features):
        np.testing.assert_allclose(feature.numpy(), expected[f"features_{i}"], **tol)
    for key in (k for k in expected.files if k.startswith("disp_")):
        scale = int(key.split("_")[1])
        np.testing.assert_allclose(outputs[("disp", scale)].numpy(), expected[key], **tol)
    with torch.no_grad():
        whole = net(image)
    torch.testing.assert_close(whole[("disp", 0)], outputs[("disp", 0)], rtol=0, atol=0)
