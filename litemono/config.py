"""Configuration: one source of defaults, YAML files that set values, flags that override them.

Precedence (lowest to highest): the dataclass defaults below < a YAML file given with
``--config`` (and the files it ``include``s) < command-line flags. Every option is a field of one
of four frozen sections (:class:`ModelConfig`, :class:`DataConfig`, :class:`LossConfig`,
:class:`TrainConfig`); field names are unique across sections, so a YAML file may be flat
(``bins: 64``) or nested by section (``model: {bins: 64}`` is *not* allowed because ``model`` is
also the variant option; use ``net:``, ``data:``, ``loss:``, ``train:``).

Flag names and defaults follow monodepth2 / Lite-Mono (``../shared/spec/upstream.md`` section 4)
so their command lines work unchanged. Upstream's negative switches are kept as aliases of
positive options: ``--no_ssim`` == ``--no-ssim``, ``--disable_automasking`` ==
``--no-automasking``, ``--no_cuda`` == ``--device cpu``. Every boolean has a ``--x`` and a
``--no-x`` form.

Unknown keys, wrong types and bad combinations raise :class:`ConfigError`, whose message names
the flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Lite-Mono's `--lr`: depth peak, depth floor, depth cycle (epochs), pose peak, pose floor, pose cycle.
UPSTREAM_LR = (1e-4, 5e-6, 31.0, 1e-4, 1e-5, 31.0)
VARIANT_NAMES = ("lite-mono", "lite-mono-small", "lite-mono-tiny", "lite-mono-8m")
SPLIT_NAMES = ("eigen_zhou", "eigen_full", "odom", "benchmark")


class ConfigError(ValueError):
    """A configuration value or combination is invalid; the message names the flag."""


def _opt(default: Any, help: str, choices: Optional[Sequence[Any]] = None, **extra: Any):
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = tuple(choices)
    meta.update(extra)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelConfig:
    """Networks: depth encoder variant, the seed report's additions, the pose network."""

    model: str = _opt("lite-mono", "depth encoder variant", VARIANT_NAMES)
    height: int = _opt(192, "input height (multiple of 32)")
    width: int = _opt(640, "input width (multiple of 32)")
    drop_path: float = _opt(0.2, "stochastic depth rate of the encoder")
    dilations: Optional[List[List[int]]] = _opt(
        None, "override the CDC dilation rates: one list per stage (YAML / JSON)")
    scales: List[int] = _opt([0, 1, 2], "decoder output scales used by the loss")
    spatial_attention: bool = _opt(False, "CBAM spatial attention after the LGFI blocks")
    attention_stages: List[int] = _opt([0, 1, 2], "encoder stages that get spatial attention")
    bins: int = _opt(0, "disparity bins at the full-resolution head (0 = sigmoid head)")
    disp_init: Optional[float] = _opt(
        None, "initial output of the sigmoid disparity heads (their bias = logit of it); unset: "
        "upstream's zero bias, 0.5")
    bin_mode: str = _opt("adaptive", "bin centres: predicted per image or uniform",
                         ("adaptive", "fixed"))
    pose_model_type: str = _opt("separate_resnet", "pose network",
                                ("separate_resnet", "shared"))
    num_layers: int = _opt(18, "pose ResNet depth", (18, 34, 50, 101, 152))
    weights_init: str = _opt("pretrained", "pose ResNet initialisation", ("pretrained", "scratch"))
    pose_init_forward: float = _opt(
        0.0, "initial forward motion per frame of the pose decoder (network units, its "
        "translation bias); 0: upstream's zero bias. A from-scratch pose network needs it "
        "(e.g. 0.005) to stay out of the sideways solution (docs/results_synthetic.md)")
    mypretrain: Optional[str] = _opt(None, "ImageNet-pretrained encoder weights (.pth)")


@dataclass(frozen=True)
class DataConfig:
    """Data: where the frames are, which split, which frames and augmentation."""

    data_path: str = _opt(str(PROJECT_ROOT / "kitti_data"), "KITTI raw (or odometry) root")
    split: str = _opt("eigen_zhou", "split name in --splits_dir, or a folder with *_files.txt")
    splits_dir: str = _opt(str(PROJECT_ROOT / "splits"), "folder holding the named splits")
    dataset: str = _opt("kitti", "dataset layout", ("kitti", "kitti_odom", "folder"))
    png: bool = _opt(False, "read .png instead of .jpg frames")
    frame_ids: List[int] = _opt([0, -1, 1], "frames to load; the first must be 0")
    use_stereo: bool = _opt(False, "also use the other camera of the stereo pair ('s')")
    num_workers: int = _opt(12, "data loader worker processes")
    jitter: str = _opt("per_frame", "colour jitter drawn per frame and scale (Lite-Mono) or per "
                       "item (monodepth2)", ("per_frame", "per_item"))
    teacher_dir: Optional[str] = _opt(None, "precomputed teacher disparity folder")
    intrinsics: Optional[str] = _opt(None, "YAML with fx fy cx cy (normalised) for --dataset folder")
    cache_dir: Optional[str] = _opt(None, "cache of every frame's scale pyramid at --height/--width "
                                    "(opt-in; the same tensors, ~4x faster loading)")


@dataclass(frozen=True)
class LossConfig:
    """Self-supervised photometric loss and the seed report's extra terms."""

    min_depth: float = _opt(0.1, "depth of disparity 1")
    max_depth: float = _opt(100.0, "depth of disparity 0")
    disparity_smoothness: float = _opt(1e-3, "edge-aware smoothness weight")
    ssim: bool = _opt(True, "SSIM in the photometric error (--no_ssim: L1 only)")
    automasking: bool = _opt(True, "identity-reprojection automasking (--disable_automasking)")
    avg_reprojection: bool = _opt(False, "average the reprojection errors instead of the minimum")
    v1_multiscale: bool = _opt(False, "warp at each scale's resolution (monodepth v1)")
    distill_weight: float = _opt(0.0, "weight of the teacher distillation L1 (0 = off)")
    distill_align: str = _opt("median", "teacher-to-student alignment",
                              ("median", "normalized", "lstsq", "si", "ssi"))
    distill_scales: List[int] = _opt([0], "scales that receive the distillation term")
    distill_relative: bool = _opt(
        False, "divide each image's distillation L1 by the student's median disparity "
        "(detached): invariant to the student's scale, which the median and lstsq alignments "
        "otherwise reward shrinking (experimental: collapsed on the synthetic scene; "
        "--distill_align si is the scale-invariant term that works, see litemono/losses/distill.py)")
    chamfer_weight: float = _opt(0.0, "weight of the bin-centre Chamfer loss (0 = off)")
    chamfer_points: int = _opt(1024, "teacher disparities sampled per image for the Chamfer loss")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, logging, checkpoints and the execution engine."""

    log_dir: str = _opt("./tmp", "folder for runs")
    model_name: str = _opt("lite-mono", "run name: the run folder is <log_dir>/<model_name>")
    batch_size: int = _opt(16, "batch size (per process under torchrun)")
    num_epochs: int = _opt(50, "epochs")
    num_steps: Optional[int] = _opt(None, "stop after this many optimisation steps")
    lr: List[float] = _opt(list(UPSTREAM_LR),
                           "six numbers (depth peak, floor, cycle, pose peak, floor, cycle) or one "
                           "peak for both nets")
    weight_decay: float = _opt(1e-2, "AdamW weight decay (all parameters, as upstream)")
    seed: int = _opt(0, "random seed (CPU runs are repeatable)")
    log_frequency: int = _opt(250, "steps between tensorboard logs")
    save_frequency: int = _opt(1, "epochs between checkpoints")
    load_weights_folder: Optional[str] = _opt(None, "start from these weights")
    models_to_load: List[str] = _opt(["encoder", "depth", "pose_encoder", "pose"],
                                     "which networks --load_weights_folder loads")
    resume: Optional[str] = _opt(None, "training state to resume: a path, or 'auto'")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N")
    amp: str = _opt("off", "mixed precision for the networks", ("off", "bf16", "fp16"))
    channels_last: bool = _opt(False, "channels_last memory format for the networks and their "
                                      "inputs")
    compile: bool = _opt(False, "torch.compile the networks")
    sync_bn: bool = _opt(False, "SyncBatchNorm under torchrun (CUDA devices only)")


SECTIONS: Dict[str, type] = {
    "net": ModelConfig, "data": DataConfig, "loss": LossConfig, "train": TrainConfig}
_SECTION_ATTR = {"net": "model", "data": "data", "loss": "loss", "train": "train"}
# flag used in error messages for options whose upstream flag is negative or different
_FLAG_ALIASES = {"ssim": "--no_ssim", "automasking": "--disable_automasking"}


@dataclass(frozen=True)
class Config:
    """The resolved configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """Nested plain dict (JSON / YAML serialisable), keyed by section."""
        return {sec: dataclasses.asdict(getattr(self, attr)) for sec, attr in _SECTION_ATTR.items()}

    def flat(self) -> Dict[str, Any]:
        """All options in one flat dict keyed by flag name."""
        out: Dict[str, Any] = {}
        for values in self.to_dict().values():
            out.update(values)
        return out

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (flat names), validated."""
        return from_dict({**self.flat(), **changes})

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _field_index() -> Dict[str, tuple]:
    index = {}
    for sec, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            index[f.name] = (sec, f, hints[f.name])
    return index


FIELDS = _field_index()


def flag(name: str) -> str:
    """The command-line spelling of option ``name`` used in error messages."""
    return _FLAG_ALIASES.get(name, "--" + name)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` against the annotated type of option ``name``; return it normalised."""
    if name not in FIELDS:
        raise ConfigError(f"unknown option {flag(name)!r}" + _suggest(name))
    _, f, tp = FIELDS[name]
    try:
        value = _coerce_type(tp, value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{flag(name)}: expected {_type_name(tp)}, got {value!r} ({exc})") from None
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{flag(name)}: {value!r} is not one of {list(choices)}")
    return value


def _coerce_type(tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce_type(args[0], value)
    if origin in (list, List):
        (inner,) = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise TypeError("not a list")
        return [_coerce_type(inner, v) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("not a boolean (use true/false)")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise TypeError("not an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("not a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if value is None:
        raise TypeError("missing")
    return value


def _suggest(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, FIELDS, n=1)
    return f" (did you mean {flag(close[0])!r}?)" if close else ""


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
        elif key == "include":
            continue
        else:
            if key not in FIELDS:
                raise ConfigError(f"{source}: unknown option {key!r}" + _suggest(str(key)))
            flat[key] = value
    return flat


def load_yaml(path: str, _seen: Optional[set] = None) -> Dict[str, Any]:
    """Read a config file into flat options; ``include: other.yaml`` is applied first."""
    path_obj = Path(path)
    if not path_obj.is_file():
        raise ConfigError(f"--config: no such file {path}")
    seen = set() if _seen is None else _seen
    if path_obj.resolve() in seen:
        raise ConfigError(f"--config: include cycle at {path}")
    seen.add(path_obj.resolve())
    try:
        data = yaml.safe_load(path_obj.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from None
    flat: Dict[str, Any] = {}
    includes = data.get("include", []) if isinstance(data, Mapping) else []
    for inc in [includes] if isinstance(includes, str) else includes:
        flat.update(load_yaml(str(path_obj.parent / inc), seen))
    flat.update(flatten_yaml(data, source=str(path)))
    return flat


def from_dict(options: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from flat option names (or a nested ``to_dict``)."""
    if options and all(k in SECTIONS for k in options):
        options = flatten_yaml(options)
    per_section: Dict[str, Dict[str, Any]] = {sec: {} for sec in SECTIONS}
    for name, value in options.items():
        per_section[FIELDS[name][0] if name in FIELDS else "net"][name] = coerce(name, value)
    cfg = Config(**{_SECTION_ATTR[sec]: SECTIONS[sec](**vals) for sec, vals in per_section.items()})
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """The one place that rejects bad values and combinations."""
    m, d, l, t = cfg.model, cfg.data, cfg.loss, cfg.train
    for name in ("height", "width"):
        value = getattr(m, name)
        if value <= 0 or value % 32:
            raise ConfigError(f"--{name} must be a positive multiple of 32, got {value}")
    if not d.frame_ids or d.frame_ids[0] != 0:
        raise ConfigError(f"--frame_ids must start with 0 (the target frame), got {d.frame_ids}")
    if len(set(d.frame_ids)) != len(d.frame_ids):
        raise ConfigError(f"--frame_ids has duplicates: {d.frame_ids}")
    if len(d.frame_ids) == 1 and not d.use_stereo:
        raise ConfigError("--frame_ids [0] needs --use_stereo: there is no source frame to warp")
    if not m.scales or sorted(set(m.scales)) != sorted(m.scales) or not set(m.scales) <= {0, 1, 2}:
        raise ConfigError(f"--scales must be distinct values from 0, 1, 2, got {m.scales}")
    if 0 not in m.scales:
        raise ConfigError("--scales must include 0 (the full-resolution output)")
    if not set(m.attention_stages) <= {0, 1, 2}:
        raise ConfigError(f"--attention_stages must be from 0, 1, 2, got {m.attention_stages}")
    if m.bins < 0 or m.bins == 1:
        raise ConfigError(f"--bins must be 0 (off) or at least 2, got {m.bins}")
    if m.disp_init is not None and not 0 < m.disp_init < 1:
        raise ConfigError(f"--disp_init is a sigmoid output, in (0, 1), got {m.disp_init}")
    if not 0 <= m.pose_init_forward < 1:
        raise ConfigError(f"--pose_init_forward is a forward distance per frame in network units, "
                          f"in [0, 1), got {m.pose_init_forward}")
    if m.dilations is not None and len(m.dilations) != 3:
        raise ConfigError(f"--dilations needs one list per stage (3), got {len(m.dilations)}")
    if not 0 <= m.drop_path < 1:
        raise ConfigError(f"--drop_path must be in [0, 1), got {m.drop_path}")
    if not 0 < l.min_depth < l.max_depth:
        raise ConfigError(f"--min_depth/--max_depth must satisfy 0 < min < max, got "
                          f"{l.min_depth}, {l.max_depth}")
    if len(t.lr) not in (1, 6):
        raise ConfigError(f"--lr takes one number or six (depth peak, floor, cycle, pose peak, "
                          f"floor, cycle), got {len(t.lr)}")
    if any(v <= 0 for v in t.lr) or (len(t.lr) == 6 and (t.lr[2] < 1 or t.lr[5] < 1)):
        raise ConfigError(f"--lr values must be positive and cycles >= 1 epoch, got {t.lr}")
    for name in ("batch_size", "num_epochs", "log_frequency", "save_frequency"):
        if getattr(t, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(t, name)}")
    if t.num_steps is not None and t.num_steps < 1:
        raise ConfigError(f"--num_steps must be >= 1, got {t.num_steps}")
    if d.num_workers < 0:
        raise ConfigError(f"--num_workers must be >= 0, got {d.num_workers}")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"--device must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    bad_models = set(t.models_to_load) - {"encoder", "depth", "pose_encoder", "pose"}
    if bad_models:
        raise ConfigError(f"--models_to_load: unknown {sorted(bad_models)}")
    if d.dataset == "folder" and d.intrinsics is None:
        raise ConfigError("--dataset folder needs --intrinsics <file.yaml>")
    if l.distill_weight < 0 or l.chamfer_weight < 0:
        raise ConfigError("--distill_weight and --chamfer_weight must be >= 0")
    if l.distill_weight > 0 and d.teacher_dir is None:
        raise ConfigError("--distill_weight > 0 needs --teacher_dir (run precompute_teacher.py)")
    if l.distill_relative and l.distill_align in ("si", "ssi"):
        raise ConfigError(f"--distill_relative with --distill_align {l.distill_align}: that term "
                          "is already invariant to the student's scale; drop --distill_relative")
    if not set(l.distill_scales) <= set(m.scales):
        raise ConfigError(f"--distill_scales {l.distill_scales} must be among --scales {m.scales}")
    if l.chamfer_weight > 0:
        if m.bins == 0:
            raise ConfigError("--chamfer_weight > 0 needs the bin head: set --bins (e.g. 64)")
        if m.bin_mode == "fixed":
            raise ConfigError("--chamfer_weight > 0 with --bin_mode fixed: fixed bin centres "
                              "cannot move; use --bin_mode adaptive")
        if d.teacher_dir is None:
            raise ConfigError("--chamfer_weight > 0 needs --teacher_dir (run precompute_teacher.py)")
    if l.chamfer_points < 1:
        raise ConfigError(f"--chamfer_points must be >= 1, got {l.chamfer_points}")


# ----------------------------------------------------------------------------- command line

def add_config_arguments(parser: argparse.ArgumentParser,
                         sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """Add ``--config`` and one flag per option of ``sections`` (all defaults SUPPRESSed, so
    only flags actually given override the YAML and the dataclass defaults)."""
    parser.add_argument("--config", action="append", default=argparse.SUPPRESS,
                        help="YAML file(s) of options; later files and flags override earlier")
    for sec in sections:
        group = parser.add_argument_group(sec)
        cls = SECTIONS[sec]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            _add_flag(group, f, hints[f.name])
    group = parser.add_argument_group("upstream aliases")
    if "loss" in sections:
        group.add_argument("--no_ssim", dest="ssim", action="store_false", default=argparse.SUPPRESS,
                           help="same as --no-ssim")
        group.add_argument("--disable_automasking", dest="automasking", action="store_false",
                           default=argparse.SUPPRESS, help="same as --no-automasking")
    if "train" in sections:
        group.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                           default=argparse.SUPPRESS, help="same as --device cpu")


def _add_flag(group, f: dataclasses.Field, tp: Any) -> None:
    name = "--" + f.name
    help_text = f"{f.metadata.get('help', '')} (default: {_default_of(f)!r})"
    choices = f.metadata.get("choices")
    base = tp
    if typing.get_origin(tp) is typing.Union:
        base = [a for a in typing.get_args(tp) if a is not type(None)][0]
    if base is bool:
        group.add_argument(name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                           help=help_text)
    elif typing.get_origin(base) in (list, List):
        (inner,) = typing.get_args(base)
        if typing.get_origin(inner) in (list, List):  # nested lists: JSON text
            group.add_argument(name, type=json.loads, default=argparse.SUPPRESS, help=help_text)
        else:
            group.add_argument(name, nargs="+", type=inner, default=argparse.SUPPRESS, help=help_text)
    else:
        converter = str if base is str else base
        group.add_argument(name, type=converter, choices=choices, default=argparse.SUPPRESS,
                           help=help_text, metavar=None if choices else f.name.upper())


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def config_from_namespace(args: argparse.Namespace) -> Config:
    """Resolve defaults < YAML (``args.config``) < the flags present in ``args``."""
    options: Dict[str, Any] = {}
    for path in getattr(args, "config", None) or []:
        options.update(load_yaml(path))
    for name, value in vars(args).items():
        if name in FIELDS:
            options[name] = value
    return from_dict(options)


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "") -> Config:
    """Parse a full training command line into a validated :class:`Config`.

    Errors are reported through argparse (exit code 2) with the offending flag named.
    """
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
    peak = float(lr[0])
    return (peak, UPSTREAM_LR[1], UPSTREAM_LR[2], peak, UPSTREAM_LR[4], UPSTREAM_LR[5])
