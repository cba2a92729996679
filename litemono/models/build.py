"""The only place where networks are built and weight files read into them.

Weight folders use upstream Lite-Mono's layout (``Trainer.save_model``): ``encoder.pth`` =
encoder state dict + ``height``, ``width``, ``use_stereo``; ``depth.pth`` = decoder. Ours add a
``litemono`` entry (the :class:`~litemono.config.ModelConfig` dict + ``min_depth`` /
``max_depth``) so a copied folder alone rebuilds the network; upstream ignores it, and
upstream's folders load too. Loading is strict: a mismatch raises ``ValueError`` naming missing,
unexpected and misshaped keys (and an encoder's fitting variant); a truncated or foreign file
raises :class:`litemono.errors.CheckpointError`."""
from __future__ import annotations

import argparse
import dataclasses
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..config import ModelConfig, coerce
from ..errors import ConfigError, UserError, first_sentence
from ..io import pickled_object, read_torch_file
from .attention import ATTENTION_KINDS
from .decoder import DepthDecoder
from .encoder import VARIANTS, LiteMono, infer_variant
from .pose import PoseDecoder, PoseEncoder, PoseNetwork

ENCODER_FILE = "encoder.pth"
DEPTH_FILE = "depth.pth"
CONFIG_ENTRY = "litemono"  # our one extra entry in encoder.pth
UPSTREAM_EXTRAS = ("height", "width", "use_stereo")
MAX_LISTED = 8  # keys listed per category in a mismatch message
# entries of an ImageNet-pretraining checkpoint that the depth encoder does not have
IMAGENET_ONLY_PREFIXES = ("head.", "norm.")
NO_PRETRAIN = "none"  # --mypretrain none: the encoder starts from scratch on purpose


# what torch.save wrote first before PyTorch 1.6 (a pickled magic number, protocol 2)
_LEGACY_TORCH_START = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)


def is_legacy_torch_file(path: Union[str, Path]) -> bool:
    """Whether ``path`` starts as the non-zip files of ``torch.save`` before PyTorch 1.6 do."""
    with open(path, "rb") as handle:
        return handle.read(len(_LEGACY_TORCH_START)) == _LEGACY_TORCH_START


# Encoder families besides Lite-Mono (whose variants are ``encoder.VARIANTS``' rows): ``--model``
# name -> ``builder(cfg: ModelConfig)`` -> a module mapping an image (B, 3, H, W) in [0, 1] to
# features, finest first, each at half the previous resolution, with ``num_ch_enc`` (channels per
# feature) and ``first_stride`` (the first is at H / first_stride); the decoder gets one level per
# feature. No Lite-Mono attention or dilations (check_model_names refuses them), no --drop_path.
ENCODER_FAMILIES: Dict[str, Callable[[ModelConfig], nn.Module]] = {}


def encoder_names() -> Tuple[str, ...]:
    """Every ``--model`` choice: the Lite-Mono variants, then the other encoder families."""
    return (*VARIANTS, *ENCODER_FAMILIES)


def check_model_names(cfg: ModelConfig) -> None:
    """``--model`` and ``--attention`` against the registries, and no Lite-Mono-only flag for an
    encoder family (which would ignore it; ``--drop_path`` is documented as ignored)."""
    if cfg.model not in encoder_names():
        raise ConfigError(f"--model {cfg.model!r} is not one of {list(encoder_names())} (a new "
                          "variant or family is registered by a module passed with --import)")
    if cfg.attention is not None and cfg.attention not in ATTENTION_KINDS:
        raise ConfigError(f"--attention {cfg.attention!r} is not one of {list(ATTENTION_KINDS)}, "
                          "choose one (a new kind is registered by a module passed with --import)")
    if cfg.model in ENCODER_FAMILIES:
        flag = ("--attention" if cfg.attention else "--spatial_attention" if cfg.attention_kind
                else "--dilations" if cfg.dilations is not None else None)
        if flag:
            raise ConfigError(f"{flag} belongs to Lite-Mono's encoder, and --model {cfg.model} "
                              f"is an encoder family that would ignore it; drop {flag} or "
                              "choose a Lite-Mono variant")


def build_encoder(cfg: ModelConfig) -> nn.Module:
    """The depth encoder of ``cfg.model`` (a Lite-Mono variant or a registered family)."""
    check_model_names(cfg)
    if cfg.model in ENCODER_FAMILIES:
        return ENCODER_FAMILIES[cfg.model](cfg)
    stages = cfg.attention_stages if cfg.attention_kind else ()
    return LiteMono(cfg.model, width=cfg.width, drop_path=cfg.drop_path, dilations=cfg.dilations,
                    attention_stages=stages, attention=cfg.attention_kind or "spatial")


class DepthNetwork(nn.Module):
    """Lite-Mono encoder + depth decoder: (B, 3, H, W) in [0, 1] -> ``("disp", s)`` (B, 1, H/2^s,
    W/2^s) in (0, 1); with bins also ``"bin_centers"`` (B, K), ``"bin_probs"`` (B, K, H, W)."""

    def __init__(self, encoder: LiteMono, decoder: DepthDecoder, config: ModelConfig):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.config = config
        self.height, self.width = config.height, config.width

    def forward(self, image: torch.Tensor) -> Dict:
        return self.decoder(self.encoder(image))


def build_depth_network(cfg: ModelConfig) -> DepthNetwork:
    """Depth network for ``cfg`` (encoder, dilation rule, attention, bins, ``--mypretrain``)."""
    encoder = build_encoder(cfg)
    decoder = DepthDecoder(encoder.num_ch_enc, cfg.scales, cfg.bins, cfg.bin_mode, cfg.bin_head,
                           first_stride=encoder.first_stride)
    if cfg.disp_init is not None:
        decoder.init_disparity(cfg.disp_init)
    if cfg.mypretrain and cfg.mypretrain != NO_PRETRAIN:
        load_imagenet_encoder(encoder, cfg.mypretrain, cfg.allow_pickle)
    return DepthNetwork(encoder, decoder, cfg)


def build_pose_network(cfg: ModelConfig, depth_network: Optional[DepthNetwork] = None
                       ) -> PoseNetwork:
    """Pose network: ``separate_resnet`` (ResNet on the stacked pair, ImageNet-initialised unless
    ``--weights_init scratch``, (B, 2, 1, 3) as upstream) or ``shared`` (decoder on the depth
    encoder's features, monodepth2's layout, (B, 1, 1, 3))."""
    if cfg.pose_model_type == "shared":
        if depth_network is None:
            raise ValueError("--pose_model_type shared needs the depth network "
                             "(build_pose_network(cfg, depth_network))")
        encoder = depth_network.encoder
        decoder = PoseDecoder(encoder.num_ch_enc, num_input_features=2, num_frames=1)
    else:
        encoder = PoseEncoder(cfg.num_layers, pretrained=cfg.weights_init == "pretrained")
        decoder = PoseDecoder(encoder.num_ch_enc)
    if cfg.pose_init_forward:
        decoder.init_forward_motion(cfg.pose_init_forward)
    return PoseNetwork(decoder, encoder, shared=cfg.pose_model_type == "shared")


def depth_state_dicts(depth_net: DepthNetwork, height: int, width: int,
                      use_stereo: bool = False,
                      depth_range: Optional[Tuple[float, float]] = None
                      ) -> Dict[str, Dict[str, Any]]:
    """``encoder.pth`` / ``depth.pth`` contents; ``depth_range`` is kept in the ``litemono``
    entry."""
    encoder_state: Dict[str, Any] = dict(depth_net.encoder.state_dict())
    encoder_state.update(height=int(height), width=int(width), use_stereo=bool(use_stereo))
    encoder_state[CONFIG_ENTRY] = dataclasses.asdict(depth_net.config)
    if depth_range is not None:
        encoder_state[CONFIG_ENTRY].update(min_depth=float(depth_range[0]),
                                           max_depth=float(depth_range[1]))
    return {"encoder": encoder_state, "depth": dict(depth_net.decoder.state_dict())}


def load_depth_network(weights_folder, device="cpu", model: Optional[str] = None,
                       **overrides: Any) -> DepthNetwork:
    """Build the network stored in ``weights_folder`` and load it strictly, in eval mode.

    ``model``: the variant (default: stored config, else inferred from shapes); ``**overrides``:
    other :class:`ModelConfig` fields. The network gets ``height`` / ``width`` (training size).

    Raises:
        FileNotFoundError: a file is missing. CheckpointError: a file is truncated or not a
        torch file. ValueError: the weights do not fit."""
    folder = Path(weights_folder)
    states = {}
    for name in (ENCODER_FILE, DEPTH_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"load_depth_network: no {name} in {folder}")
        states[name] = read_torch_file(folder / name, device=device)
    encoder_state = dict(states[ENCODER_FILE])
    extras = {k: encoder_state.pop(k) for k in (*UPSTREAM_EXTRAS, CONFIG_ENTRY)
              if k in encoder_state}
    options: Dict[str, Any] = {}
    stored = extras.get(CONFIG_ENTRY)
    if isinstance(stored, Mapping):
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        options.update({k: v for k, v in stored.items() if k in fields})
    else:
        options["model"] = infer_variant(encoder_state) or ModelConfig.model
    options.update({k: extras[k] for k in ("height", "width") if k in extras})
    if model is not None:
        options["model"] = model
    options.update(overrides)
    options["mypretrain"] = None  # the folder's weights replace any ImageNet initialisation
    cfg = ModelConfig(**{k: coerce(k, v) for k, v in options.items()})
    net = build_depth_network(cfg)
    load_state_strict(net.encoder, encoder_state, f"{folder / ENCODER_FILE}")
    load_state_strict(net.decoder, states[DEPTH_FILE], f"{folder / DEPTH_FILE}")
    return net.to(device).eval()


def _stored_depth_range(entry: Any) -> Optional[Tuple[float, float]]:
    if isinstance(entry, Mapping) and {"min_depth", "max_depth"} <= set(entry):
        return float(entry["min_depth"]), float(entry["max_depth"])
    return None


def read_depth_range(weights_folder) -> Optional[Tuple[float, float]]:
    """The (min_depth, max_depth) a weights folder stores in ``encoder.pth``, else None
    (upstream's folders, and ours written before the range was stored)."""
    path = Path(weights_folder) / ENCODER_FILE
    if not path.is_file():
        return None
    # mmap: only the small entry is read, not the encoder's tensors
    state = read_torch_file(path, mmap=True)
    return _stored_depth_range(state.get(CONFIG_ENTRY) if isinstance(state, Mapping) else None)


def load_pose_network(weights_folder, device="cpu", num_layers: int = 18) -> PoseNetwork:
    """Pose network of a weights folder, strict, eval mode: ``pose_encoder.pth`` + ``pose.pth``, or
    ``pose.pth`` with ``encoder.pth``'s depth encoder (``--pose_model_type shared``)."""
    folder = Path(weights_folder)
    if not (folder / "pose.pth").is_file():
        raise FileNotFoundError(f"load_pose_network: no pose.pth in {folder}")
    if (folder / "pose_encoder.pth").is_file():
        net = build_pose_network(ModelConfig(num_layers=num_layers, weights_init="scratch"))
        encoder_state = read_torch_file(folder / "pose_encoder.pth", device=device)
        load_state_strict(net.encoder, encoder_state, str(folder / "pose_encoder.pth"))
    else:
        depth_net = load_depth_network(folder, device)
        net = build_pose_network(dataclasses.replace(depth_net.config, pose_model_type="shared"),
                                 depth_net)
    decoder_state = read_torch_file(folder / "pose.pth", device=device)
    load_state_strict(net.decoder, decoder_state, str(folder / "pose.pth"))
    return net.to(device).eval()


def load_state_strict(module: nn.Module, state_dict: Mapping[str, Any], what: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error first.

    Raises:
        ValueError: naming missing, unexpected and misshaped keys (and the fitting encoder
            variant)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong = [f"{k} {list(state_dict[k].shape)} (expected {list(own[k].shape)})"
             for k in own if k in state_dict and hasattr(state_dict[k], "shape")
             and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{what} does not fit the {type(module).__name__}"
                 + (f" of variant {module.variant!r}" if isinstance(module, LiteMono) else "")]
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label}: {_listing(keys)}")
        if isinstance(module, LiteMono):
            fit = infer_variant(state_dict)
            parts.append(f"the file fits --model {fit}" if fit
                         else "the file fits no known --model variant")
        raise ValueError("; ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def _listing(keys: List[str]) -> str:
    more = f" ... (+{len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


def imagenet_file(variant: str) -> str:
    """The KITTI recipe's name for a variant's ImageNet weights, kept under ``pretrained/``
    (``lite-mono-pretrain.pth`` ...; sources: ``scripts/imagenet_weights.py``)."""
    return f"{variant}-pretrain.pth"


def load_imagenet_encoder(encoder: LiteMono, path: str, allow_pickle: bool = False,
                          flag: str = "--mypretrain", offer_allow_pickle: bool = True) -> None:
    """``--mypretrain``: ImageNet-pretrained encoder weights (upstream's pretraining checkpoint).

    Upstream's ``lite-mono-pretrain-code/utils.py`` ``save_model`` stores ``{'model', 'optimizer',
    'epoch', 'scaler', 'args'}``; a bare state dict works too. Read with ``weights_only=True``
    (``argparse.Namespace`` allowed); anything else needs ``allow_pickle``. As upstream's
    ``trainer.load_pretrain``, ``head.*`` and the final ``norm.*`` are dropped and the spatial
    attention keeps its init; every other key must fit. Only ``torch.save``'s zip format (PyTorch
    >= 1.6) is accepted before unpickling, unless ``allow_pickle`` lets an old pickle through.
    ``flag`` names the file in messages; ``offer_allow_pickle``: whether to suggest the flag.

    Raises:
        FileNotFoundError: no such file. ValueError: not a tensor file, pickled objects without
        ``allow_pickle``, or weights that do not fit (the message names ``flag``)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{flag}: no such file {path}")
    unreadable = (f"{flag} {path}: not a readable torch file ({{}}); download it again "
                  "(scripts/imagenet_weights.py)")
    if not allow_pickle and not zipfile.is_zipfile(path):  # else the unpickler reads garbage
        if is_legacy_torch_file(path):
            also = " or add --allow_pickle" if offer_allow_pickle else ""
            raise ValueError(
                f"{flag} {path}: an old-format (PyTorch < 1.6) torch file, readable only by "
                "unpickling, and unpickling runs code stored in it; if you trust the file, "
                f"convert it once (python scripts/imagenet_weights.py convert {path} "
                f"OUT.pth --allow_pickle) and pass OUT.pth{also}")
        raise ValueError(unreadable.format(
            "not the zip archive torch.save writes: a truncated download, or the share link's "
            "HTML page saved instead of the file"))
    try:
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):
                checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if not allow_pickle:
                name = pickled_object(exc)
                also = " or add --allow_pickle" if offer_allow_pickle else ""
                raise ValueError(
                    f"{flag} {path}: the file holds pickled Python objects"
                    f"{f' ({name})' if name else ''} besides tensors, and unpickling runs code "
                    "stored in it; if you trust the file, convert it once (python "
                    f"scripts/imagenet_weights.py convert {path} OUT.pth --allow_pickle) and "
                    f"pass OUT.pth{also}") from exc
            warnings.warn(f"{flag} {path}: not a plain tensor file, unpickled "
                          "(--allow_pickle)")
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, KeyError) as exc:
        # truncated, not a torch file
        raise ValueError(unreadable.format(first_sentence(str(exc)))) from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{flag} {path}: expected a state dict of tensors or "
                         "{'model': state dict} (upstream's ImageNet pretraining checkpoint)")
    state = {k: v for k, v in state.items() if not k.startswith(IMAGENET_ONLY_PREFIXES)}
    state.update({k: v for k, v in encoder.state_dict().items()
                  if k.startswith("spatial_attention.")})
    load_state_strict(encoder, state, f"{flag} {path}")
