"""Configuration: one source of defaults, YAML files that set values, flags that override them.

Precedence (lowest to highest): the dataclass defaults below < the YAML files given with
``--config`` (each after the files it ``include``s) < command-line flags (timm's order). Every
option is a field of one of four frozen sections; field names are unique across sections, so a
YAML file may be flat (``bins: 64``) or nested by section (``net:``, ``data:``, ``loss:``,
``train:``). Extensions add their own options with :func:`register_options` (a loss term's
``--<name>_weight``, see ``litemono/losses/criterion.py``); choices that name a registry entry
(``--model``, ``--attention``) are read from that registry when used.

Flag names and defaults follow monodepth2 / Lite-Mono (``../shared/spec/upstream.md`` section 4).
Every boolean has a ``--x`` and a ``--no-x`` form; upstream's negative switches stay as aliases:
``--no_ssim``, ``--disable_automasking``, ``--no_cuda`` (== ``--device cpu``).
Unknown keys, wrong types and bad combinations raise :class:`ConfigError` naming the flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from litemono.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Lite-Mono's `--lr`: depth peak, depth floor, depth cycle (epochs), pose peak, pose floor, pose cycle.
UPSTREAM_LR = (1e-4, 5e-6, 31.0, 1e-4, 1e-5, 31.0)


class ConfigError(UserError, ValueError):
    """A configuration value or combination is invalid; the message names the flag."""


def option(default: Any, help: str, choices: Any = None,
           valid: Optional[Tuple[Callable[[Any], bool], str]] = None) -> Any:
    """A config field: default, ``--help`` text, optionally the allowed values (a sequence, or a
    function returning one: choices read from a registry) and ``valid = (predicate, "be ...")``,
    checked by :func:`validate` on set values ("--x must be ..., got v")."""
    meta = {"help": help, "choices": choices, "valid": valid}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def _variant_names() -> Tuple[str, ...]:
    from .models import build  # the registries import torch: read only when asked

    return build.encoder_names()


def _attention_names() -> Tuple[str, ...]:
    from .models import attention

    return tuple(attention.ATTENTION_KINDS)


def _at_least(low: int) -> Tuple[Callable[[Any], bool], str]:
    return (lambda v: v >= low), f"be >= {low}"


_UNIT = ((lambda v: 0 <= v < 1), "be in [0, 1)")
_SIZE = ((lambda v: v > 0 and v % 32 == 0), "be a positive multiple of 32")
_STAGES = ((lambda v: set(v) <= {0, 1, 2}), "be from 0, 1, 2")


@dataclass(frozen=True)
class ModelConfig:
    """Networks: depth encoder variant, the seed report's additions, the pose network."""

    model: str = option("lite-mono", "depth encoder: a variant or encoder family", _variant_names)
    height: int = option(192, "input height (multiple of 32)", valid=_SIZE)
    width: int = option(640, "input width (multiple of 32)", valid=_SIZE)
    drop_path: float = option(0.2, "stochastic depth rate of the encoder", valid=_UNIT)
    dilations: Optional[List[List[int]]] = option(
        None, "override the CDC dilation rates: one list per stage (YAML / JSON)",
        valid=((lambda v: len(v) == 3), "have one list per stage (3)"))
    scales: List[int] = option([0, 1, 2], "decoder output scales used by the loss", valid=(
        lambda v: 0 in v and len(set(v)) == len(v) and set(v) <= {0, 1, 2},
        "be distinct values from 0, 1, 2, including 0 (the full-resolution output)"))
    spatial_attention: bool = option(False, "CBAM spatial attention after the encoder stages "
                                     "(short for --attention spatial)")
    attention: Optional[str] = option(None, "attention module after the encoder stages "
                                      "(unset: none)", _attention_names)
    attention_stages: List[int] = option([0, 1, 2], "encoder stages that get the attention",
                                         valid=_STAGES)
    bins: int = option(0, "disparity bins at the full-resolution head (0 = sigmoid head)",
                       valid=((lambda v: v == 0 or v >= 2), "be 0 (off) or at least 2"))
    disp_init: Optional[float] = option(
        None, "initial output of the sigmoid disparity heads (their bias = logit of it); unset: "
        "upstream's zero bias, 0.5",
        valid=((lambda v: 0 < v < 1), "be in (0, 1) (a sigmoid output)"))
    bin_mode: str = option("adaptive", "bin centres: predicted per image or uniform",
                           ("adaptive", "fixed"))
    bin_head: str = option("light", "bin head: one conv (light) or AdaBins' mini-ViT, the report's "
                           "FLOPs (mvit)", ("light", "mvit"))
    pose_model_type: str = option("separate_resnet", "pose network", ("separate_resnet", "shared"))
    num_layers: int = option(18, "pose ResNet depth", (18, 34, 50, 101, 152))
    weights_init: str = option("pretrained", "pose ResNet initialisation", ("pretrained", "scratch"))
    pose_init_forward: float = option(
        0.0, "initial forward motion per frame of the pose decoder (its translation bias, network "
        "units); 0: upstream. A from-scratch pose network needs e.g. 0.005 to stay out of the "
        "sideways solution (docs/results_synthetic.md)", valid=_UNIT)
    mypretrain: Optional[str] = option(None, "ImageNet-pretrained encoder weights (.pth); 'none': "
                                       "train the encoder from scratch on purpose")
    mypretrain_required: bool = option(False, "refuse to train without --mypretrain (set by "
                                       "configs/kitti: the published recipe starts from ImageNet)")
    allow_pickle: bool = option(False, "let --mypretrain unpickle a file that is not plain tensors "
                                "(runs code stored in it: trusted files only)")

    @property
    def attention_kind(self) -> Optional[str]:
        """The attention in effect: ``--attention``, or ``spatial`` with --spatial_attention."""
        return self.attention or ("spatial" if self.spatial_attention else None)


@dataclass(frozen=True)
class DataConfig:
    """Data: where the frames are, which split, which frames and augmentation."""

    data_path: str = option(str(PROJECT_ROOT / "kitti_data"), "KITTI raw (or odometry) root")
    split: str = option("eigen_zhou", "split name in --splits_dir, or a folder with *_files.txt")
    splits_dir: str = option(str(PROJECT_ROOT / "splits"), "folder holding the named splits")
    dataset: str = option("kitti", "dataset layout", ("kitti", "kitti_odom", "folder"))
    png: bool = option(False, "read .png instead of .jpg frames")
    frame_ids: List[int] = option([0, -1, 1], "frames to load; the first must be 0", valid=(
        lambda v: v[:1] == [0] and len(set(v)) == len(v),
        "start with 0 (the target frame) and have no duplicates"))
    use_stereo: bool = option(False, "also use the other camera of the stereo pair ('s')")
    num_workers: int = option(min(12, os.cpu_count() or 1), "data loader worker processes "
                             "(upstream's 12, at most this machine's cores)", valid=_at_least(0))
    jitter: str = option("per_frame", "colour jitter drawn per frame and scale (Lite-Mono) or per "
                         "item (monodepth2)", ("per_frame", "per_item"))
    teacher_dir: Optional[str] = option(None, "precomputed teacher disparity folder")
    intrinsics: Optional[str] = option(None, "YAML with fx fy cx cy (normalised), --dataset folder")
    cache_dir: Optional[str] = option(None, "cache of every frame's scale pyramid at --height/"
                                      "--width (opt-in; the same tensors, ~4x faster loading)")


@dataclass(frozen=True)
class LossConfig:
    """Self-supervised photometric loss; the extra terms register their options here."""

    min_depth: float = option(0.1, "depth of disparity 1", valid=((lambda v: v > 0), "be > 0"))
    max_depth: float = option(100.0, "depth of disparity 0")
    disparity_smoothness: float = option(1e-3, "edge-aware smoothness weight")
    ssim: bool = option(True, "SSIM in the photometric error (--no_ssim: L1 only)")
    automasking: bool = option(True, "identity-reprojection automasking (--disable_automasking)")
    avg_reprojection: bool = option(False, "average the reprojection errors instead of the minimum")
    v1_multiscale: bool = option(False, "warp at each scale's resolution (monodepth v1)")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging, checkpoints and the execution engine."""

    log_dir: str = option("./tmp", "folder for runs")
    model_name: str = option("lite-mono", "run name: the run folder is <log_dir>/<model_name>")
    batch_size: int = option(16, "batch size (per process under torchrun)", valid=_at_least(1))
    num_epochs: int = option(50, "epochs", valid=_at_least(1))
    num_steps: Optional[int] = option(None, "stop after this many optimisation steps",
                                      valid=_at_least(1))
    lr: List[float] = option(list(UPSTREAM_LR), "six numbers (depth peak, floor, cycle, pose "
                             "peak, floor, cycle) or one peak for both nets", valid=(
        lambda v: len(v) in (1, 6) and min(v) > 0 and (len(v) == 1 or min(v[2], v[5]) >= 1),
        "be one number or six (depth peak, floor, cycle, pose peak, floor, cycle), positive, "
        "cycles >= 1 epoch"))
    weight_decay: float = option(1e-2, "AdamW weight decay (all parameters, as upstream)")
    seed: int = option(0, "random seed (CPU runs are repeatable)")
    log_frequency: int = option(250, "steps between tensorboard logs", valid=_at_least(1))
    save_frequency: int = option(1, "epochs between checkpoints", valid=_at_least(1))
    keep_weights: Optional[int] = option(None, "keep only the newest K models/weights_N folders",
                                         valid=_at_least(1))
    save_optimizer_in_weights: bool = option(False, "also put adam.pth / adam_pose.pth in "
                                             "weights_N (upstream's layout; checkpoints/ has them)")
    check_data: bool = option(False, "first decode every frame and teacher map the run reads")
    check_data_only: bool = option(False, "run --check_data, then exit")
    load_weights_folder: Optional[str] = option(None, "start from these weights")
    models_to_load: List[str] = option(["encoder", "depth", "pose_encoder", "pose"],
                                       "which networks --load_weights_folder loads", valid=(
        lambda v: set(v) <= {"encoder", "depth", "pose_encoder", "pose"},
        "be from encoder, depth, pose_encoder, pose"))
    resume: Optional[str] = option(None, "training state to resume: a path, or 'auto'")
    overwrite: bool = option(False, "start again from step 0 in a run folder that holds checkpoints")
    device: str = option("auto", "auto, cpu, cuda or cuda:N", valid=(
        lambda v: v in ("auto", "cpu", "cuda") or v.startswith("cuda:"),
        "be auto, cpu, cuda or cuda:N"))
    amp: str = option("off", "mixed precision for the networks", ("off", "bf16", "fp16"))
    channels_last: bool = option(False, "channels_last memory format for the networks and their "
                                        "inputs")
    compile: bool = option(False, "torch.compile the networks")
    sync_bn: bool = option(False, "SyncBatchNorm under torchrun (CUDA devices only)")


# section key in YAML / Config.to_dict -> (attribute of Config, dataclass); register_options
# replaces a dataclass by a subclass with the new fields
SECTIONS: Dict[str, type] = {
    "net": ModelConfig, "data": DataConfig, "loss": LossConfig, "train": TrainConfig}
_SECTION_ATTR = {"net": "model", "data": "data", "loss": "loss", "train": "train"}
# flag named in error messages for options whose upstream flag is negative
_FLAG_ALIASES = {"ssim": "--no_ssim", "automasking": "--disable_automasking"}
FIELDS: Dict[str, Tuple[str, dataclasses.Field, Any]] = {}  # option -> (section, field, type)
CHECKS: List[Callable[["Config"], None]] = []  # extensions' validation, run by validate()


def _index(section: str) -> None:
    cls = SECTIONS[section]
    hints = typing.get_type_hints(cls)
    FIELDS.update({f.name: (section, f, hints[f.name]) for f in dataclasses.fields(cls)})


for _section in SECTIONS:
    _index(_section)


def register_options(section: str, fields: Sequence[Tuple[str, Any, Any]],
                     check: Optional[Callable[["Config"], None]] = None) -> None:
    """Add an extension's options to ``section`` (``"net"``, ``"data"``, ``"loss"``, ``"train"``):
    each ``(name, type, option(...))`` becomes a flag ``--name``, a YAML key and an attribute of
    the section; ``check(cfg)``, if given, joins :func:`validate` (raises :class:`ConfigError`)."""
    clash = [name for name, _, _ in fields if name in FIELDS]
    if clash:
        raise ValueError(f"register_options: {clash} already exist")
    base = SECTIONS[section]
    SECTIONS[section] = dataclasses.make_dataclass(base.__name__, list(fields), bases=(base,),
                                                   frozen=True)
    SECTIONS[section].__doc__ = base.__doc__
    _index(section)
    if check is not None:
        CHECKS.append(check)


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run."""

    model: ModelConfig = field(default_factory=lambda: SECTIONS["net"]())
    data: DataConfig = field(default_factory=lambda: SECTIONS["data"]())
    loss: LossConfig = field(default_factory=lambda: SECTIONS["loss"]())
    train: TrainConfig = field(default_factory=lambda: SECTIONS["train"]())

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """Nested plain dict (JSON / YAML serialisable), keyed by section."""
        return {sec: dataclasses.asdict(getattr(self, attr)) for sec, attr in _SECTION_ATTR.items()}

    def flat(self) -> Dict[str, Any]:
        """All options in one flat dict keyed by flag name."""
        return {k: v for values in self.to_dict().values() for k, v in values.items()}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (flat names), validated."""
        return from_dict({**self.flat(), **changes})

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` used in error messages."""
    return _FLAG_ALIASES.get(name, "--" + name)


def _choices(f: dataclasses.Field) -> Optional[Tuple[Any, ...]]:
    choices = f.metadata.get("choices")
    return tuple(choices() if callable(choices) else choices) if choices is not None else None


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(str(name), FIELDS, n=1)
    return f" (did you mean {flag(close[0])!r}?)" if close else ""


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` (from YAML, JSON or Python) against option ``name``; return it normalised."""
    if name not in FIELDS:
        raise ConfigError(f"unknown option {flag(name)!r}" + _suggest(name))
    _, f, tp = FIELDS[name]
    try:
        value = _convert(tp, value)
    except (TypeError, ValueError) as exc:
        type_name = str(tp).replace("typing.", "") if typing.get_origin(tp) else tp.__name__
        raise ConfigError(f"{flag(name)}: expected {type_name}, got {value!r} ({exc})") from None
    choices = _choices(f)
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"{flag(name)}: {value!r} is not one of {list(choices)}")
    return value


def _convert(tp: Any, value: Any) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        return None if value is None else _convert(args[0], value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError("not a list")
        return [_convert(args[0], v) for v in value]
    if tp is float and isinstance(value, str):
        return float(value)  # PyYAML reads 1e-4 (no dot) as a string (YAML 1.1)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    allowed = (int, float) if tp is float else tp
    if not isinstance(value, allowed) or (tp is not bool and isinstance(value, bool)):
        raise TypeError(f"not a {'true/false' if tp is bool else tp.__name__}")
    return tp(value)


def flatten_yaml(data: Mapping[str, Any], source: str = "config") -> Dict[str, Any]:
    """Flatten a YAML mapping (flat keys or ``net/data/loss/train`` sections) to option names."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                if sub_key not in FIELDS or FIELDS[sub_key][0] != key:
                    raise ConfigError(f"{source}: unknown option {key}.{sub_key}" + _suggest(sub_key))
                flat[sub_key] = sub_value
        elif key != "include":
            if key not in FIELDS:
                raise ConfigError(f"{source}: unknown option {key!r}" + _suggest(key))
            flat[key] = value
    return flat


def load_yaml(path: str, _chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """Read a config file into flat options; ``include: other.yaml`` (or a list) applies first."""
    path_obj = Path(path)
    if not path_obj.is_file():
        raise ConfigError(f"--config: no such file {path}")
    if path_obj.resolve() in _chain:
        raise ConfigError(f"--config: include cycle at {path}")
    try:
        data = yaml.safe_load(path_obj.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from None
    includes = data.get("include", []) if isinstance(data, Mapping) else []
    flat: Dict[str, Any] = {}
    for inc in [includes] if isinstance(includes, str) else includes:
        flat.update(load_yaml(str(path_obj.parent / inc), (*_chain, path_obj.resolve())))
    return {**flat, **flatten_yaml(data, source=str(path))}


def from_dict(options: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from flat option names (or a nested ``to_dict``)."""
    if options and all(k in SECTIONS for k in options):
        options = flatten_yaml(options)
    values = {name: coerce(name, value) for name, value in options.items()}
    cfg = Config(**{attr: SECTIONS[sec](**{k: v for k, v in values.items() if FIELDS[k][0] == sec})
                    for sec, attr in _SECTION_ATTR.items()})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """The one place that rejects bad values (each option's ``valid``) and combinations (below
    and the extensions' CHECKS)."""
    for name, value in cfg.flat().items():
        rule = FIELDS[name][1].metadata.get("valid")
        if rule is not None and value is not None and not rule[0](value):
            raise ConfigError(f"{flag(name)} must {rule[1]}, got {value!r}")
    m, d, l = cfg.model, cfg.data, cfg.loss
    combinations = (
        (len(d.frame_ids) > 1 or d.use_stereo,
         "--frame_ids [0] needs --use_stereo: there is no source frame to warp"),
        (l.min_depth < l.max_depth,
         f"--min_depth {l.min_depth} must be < --max_depth {l.max_depth}"),
        (not m.spatial_attention or m.attention in (None, "spatial"),
         f"--spatial_attention is short for --attention spatial, which contradicts --attention "
         f"{m.attention}; drop one"),
        (d.dataset != "folder" or d.intrinsics is not None,
         "--dataset folder needs --intrinsics <file.yaml>"))
    for ok, message in combinations:
        if not ok:
            raise ConfigError(message)
    for check in CHECKS:
        check(cfg)


# ----------------------------------------------------------------------------- command line

def add_config_arguments(parser: argparse.ArgumentParser,
                         sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """Add ``--config`` and one flag per option of ``sections`` (all defaults SUPPRESSed, so
    only flags actually given override the YAML and the dataclass defaults)."""
    parser.add_argument("--config", action="append", default=argparse.SUPPRESS,
                        help="YAML file(s) of options; later files and flags override earlier")
    for sec in sections:
        group = parser.add_argument_group(sec)
        for f in dataclasses.fields(SECTIONS[sec]):
            _add_flag(group, f, FIELDS[f.name][2])
    group = parser.add_argument_group("upstream aliases")
    quiet = dict(default=argparse.SUPPRESS)
    if "loss" in sections:
        group.add_argument("--no_ssim", dest="ssim", action="store_false", help="same as --no-ssim",
                           **quiet)
        group.add_argument("--disable_automasking", dest="automasking", action="store_false",
                           help="same as --no-automasking", **quiet)
    if "train" in sections:
        group.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                           help="same as --device cpu", **quiet)


def _add_flag(group, f: dataclasses.Field, tp: Any) -> None:
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    kwargs = dict(default=argparse.SUPPRESS, help=f"{f.metadata['help']} (default: {default!r})")
    if typing.get_origin(tp) is typing.Union:
        tp = typing.get_args(tp)[0]
    inner = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(inner) is list:  # nested lists: JSON text
        kwargs["type"] = json.loads
    elif inner is not None:
        kwargs.update(nargs="+", type=inner)
    else:
        kwargs.update(type=tp, choices=_choices(f), metavar=None if _choices(f) else f.name.upper())
    group.add_argument("--" + f.name, **kwargs)


def config_from_namespace(args: argparse.Namespace) -> Config:
    """Resolve defaults < YAML (``args.config``) < the flags present in ``args``."""
    options: Dict[str, Any] = {}
    for path in getattr(args, "config", None) or []:
        options.update(load_yaml(path))
    options.update({k: v for k, v in vars(args).items() if k in FIELDS})
    return from_dict(options)


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "") -> Config:
    """Parse a full training command line into a validated :class:`Config`; errors exit through
    argparse (status 2) naming the flag."""
    parser = argparse.ArgumentParser(description=description)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return config_from_namespace(args)
    except ConfigError as exc:
        parser.error(str(exc))
        raise  # unreachable


def lr_schedule_params(lr: Sequence[float]) -> tuple:
    """Expand ``--lr`` to the six-number form (one number = the peak of both networks)."""
    if len(lr) == 6:
        return tuple(float(v) for v in lr)
    return (float(lr[0]), UPSTREAM_LR[1], UPSTREAM_LR[2], float(lr[0]), *UPSTREAM_LR[4:])


def __getattr__(name: str) -> Any:
    if name == "VARIANT_NAMES":  # derived from the encoder registries, read when asked
        return _variant_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# the built-in extra loss terms (distillation, Chamfer) register their options
from .losses import criterion as _criterion  # noqa: E402,F401
