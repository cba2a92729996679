"""Configuration: the dataclass defaults < YAML files given with ``--config`` < command-line flags.

The options, one frozen dataclass per section, are in :mod:`litemono.options`. A YAML file holds
flat keys (``bins: 64``) and/or ``net:``/``data:``/``loss:``/``train:`` sections, and may start
from a base file (``include: base.yaml``, relative to it). Extensions add options with
:func:`register_options`. Every boolean has ``--x`` and ``--no-x``; upstream's ``--no_ssim``,
``--disable_automasking`` and ``--no_cuda`` stay as aliases. Unknown keys, wrong types and bad
combinations raise :class:`ConfigError` naming the flag.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import yaml

from litemono.errors import OneLineParser, UserError
from litemono.options import (CHECKS, FIELDS, PROJECT_ROOT, SECTIONS, UPSTREAM_LR,  # noqa: F401
                              DataConfig, LossConfig, ModelConfig, TrainConfig, _variant_names,
                              option, register_options)


class ConfigError(UserError, ValueError):
    """A configuration value or combination is invalid; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: one instance of each section."""

    model: ModelConfig = dataclasses.field(default_factory=lambda: SECTIONS["net"]())
    data: DataConfig = dataclasses.field(default_factory=lambda: SECTIONS["data"]())
    loss: LossConfig = dataclasses.field(default_factory=lambda: SECTIONS["loss"]())
    train: TrainConfig = dataclasses.field(default_factory=lambda: SECTIONS["train"]())

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """Nested plain dict (JSON / YAML serialisable) keyed by section: what a run stores."""
        parts = (self.model, self.data, self.loss, self.train)
        return {section: dataclasses.asdict(p) for section, p in zip(SECTIONS, parts)}

    def flat(self) -> Dict[str, Any]:
        """All options in one dict keyed by option name."""
        return {k: v for values in self.to_dict().values() for k, v in values.items()}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (flat names), validated."""
        return from_dict({**self.flat(), **changes})

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _choices(f: dataclasses.Field) -> Optional[Tuple[Any, ...]]:
    choices = f.metadata["choices"]
    return tuple(choices() if callable(choices) else choices) if choices is not None else None


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(str(name), FIELDS, n=1)
    return f" (did you mean '--{close[0]}'?)" if close else ""


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` (from YAML, JSON, flags or Python) against option ``name``: its type,
    choices and ``valid`` rule; return it normalised."""
    if name not in FIELDS:
        raise ConfigError(f"unknown option '--{name}'" + _suggest(name))
    _, f, tp = FIELDS[name]
    try:
        value = _convert(tp, value)
    except (TypeError, ValueError) as exc:
        type_name = str(tp).replace("typing.", "") if typing.get_origin(tp) else tp.__name__
        raise ConfigError(f"--{name}: expected {type_name}, got {value!r} ({exc})") from None
    choices, rule = _choices(f), f.metadata["valid"]
    if choices is not None and value is not None and value not in choices:
        raise ConfigError(f"--{name}: {value!r} is not one of {list(choices)}")
    if rule is not None and value is not None and not rule[0](value):
        raise ConfigError(f"--{name} must {rule[1]}, got {value!r}")
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
        return float(value)  # PyYAML (YAML 1.1) reads 1e-4, without a dot, as text
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, (int, float) if tp is float else tp) or (
            isinstance(value, bool) and tp is not bool):
        raise TypeError(f"not a {'true/false' if tp is bool else tp.__name__}")
    return tp(value)


def _flatten(data: Any, source: str) -> Dict[str, Any]:
    """Option name -> value from flat keys and/or ``net/data/loss/train`` sections."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            for name in value:
                if name not in FIELDS or FIELDS[name][0] != key:
                    raise ConfigError(f"{source}: unknown option {key}.{name}" + _suggest(name))
            flat.update(value)
        elif key in FIELDS:
            flat[key] = value
        else:
            raise ConfigError(f"{source}: unknown option {key!r}" + _suggest(key))
    return flat


def load_yaml(path: str, _chain: Tuple[Path, ...] = ()) -> Dict[str, Any]:
    """Read a config file into flat options; the file it names in ``include:`` applies first."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--config: no such file {path}")
    if file.resolve() in _chain:
        raise ConfigError(f"--config: include cycle at {path}")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config {path}: not valid YAML ({exc})") from None
    base = data.pop("include", None) if isinstance(data, dict) else None
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"--config {path}: include takes one file name, got {base!r}")
    options = load_yaml(str(file.parent / base), (*_chain, file.resolve())) if base else {}
    return {**options, **_flatten(data, str(path))}


def from_dict(options: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from flat option names (or a nested ``to_dict``)."""
    if options and all(k in SECTIONS for k in options):
        options = _flatten(options, "config")
    values = {name: coerce(name, value) for name, value in options.items()}
    cfg = Config(*(cls(**{k: v for k, v in values.items() if FIELDS[k][0] == section})
                   for section, cls in SECTIONS.items()))
    validate(cfg)
    return cfg


def _family_names() -> Tuple[str, ...]:
    from .models import build  # the registries import torch: read them only when asked

    return tuple(build.ENCODER_FAMILIES)


def _lite_mono_flags(m: ModelConfig) -> Optional[str]:
    """The Lite-Mono-only flag set for an encoder family (which would ignore it), else None.
    ``--drop_path`` has a non-zero default and is documented as ignored instead."""
    if m.attention_kind:
        flag = "--attention" if m.attention else "--spatial_attention"
    elif m.dilations is not None:
        flag = "--dilations"
    else:
        return None  # asked first: the registries are read (torch imported) only when needed
    return flag if m.model in _family_names() else None


def validate(cfg: Config) -> None:
    """The one place that rejects bad combinations of options: the built-in ones below, then the
    extensions' ``CHECKS`` (a single value is checked by :func:`coerce`)."""
    m, d, l = cfg.model, cfg.data, cfg.loss
    ignored = _lite_mono_flags(m)
    for ok, message in (
            (len(d.frame_ids) > 1 or d.use_stereo,
             "--frame_ids [0] needs --use_stereo: there is no source frame to warp"),
            (l.min_depth < l.max_depth,
             f"--min_depth {l.min_depth} must be < --max_depth {l.max_depth}"),
            (not m.spatial_attention or m.attention in (None, "spatial"),
             f"--spatial_attention is short for --attention spatial, which contradicts "
             f"--attention {m.attention}; drop one"),
            (d.dataset != "folder" or d.intrinsics is not None,
             "--dataset folder needs --intrinsics <file.yaml>"),
            (ignored is None,
             f"{ignored} belongs to Lite-Mono's encoder, and --model {m.model} is an encoder "
             f"family that would ignore it; drop {ignored} or choose a Lite-Mono variant")):
        if not ok:
            raise ConfigError(message)
    for check in CHECKS:
        check(cfg)


def add_config_arguments(parser: argparse.ArgumentParser,
                         sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """Add ``--config`` and one flag per option of ``sections``. No flag has a default (SUPPRESS),
    so only the flags given override the YAML files and the dataclass defaults."""
    quiet = argparse.SUPPRESS
    parser.add_argument("--config", action="append", default=quiet,
                        help="YAML file(s) of options; later files and flags override earlier")
    for section in sections:
        group = parser.add_argument_group(section)
        for f in dataclasses.fields(SECTIONS[section]):
            tp = FIELDS[f.name][2]
            if typing.get_origin(tp) is typing.Union:  # Optional[X]: the flag takes an X
                tp = typing.get_args(tp)[0]
            item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            kwargs = dict(default=quiet, help=f"{f.metadata['help']} (default: {default!r})")
            if tp is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            elif typing.get_origin(item) is list:  # nested lists are given as JSON text
                kwargs["type"] = json.loads
            elif item is not None:
                kwargs.update(nargs="+", type=item)
            else:
                kwargs.update(type=tp, choices=_choices(f))
            group.add_argument("--" + f.name, **kwargs)
    group = parser.add_argument_group("upstream aliases")
    if "loss" in sections:
        group.add_argument("--no_ssim", dest="ssim", action="store_false", default=quiet,
                           help="same as --no-ssim")
        group.add_argument("--disable_automasking", dest="automasking", action="store_false",
                           default=quiet, help="same as --no-automasking")
    if "train" in sections:
        group.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                           default=quiet, help="same as --device cpu")


def config_from_namespace(args: argparse.Namespace) -> Config:
    """Resolve defaults < YAML (``args.config``) < the flags present in ``args``."""
    options: Dict[str, Any] = {}
    for path in getattr(args, "config", None) or []:
        options.update(load_yaml(path))
    options.update({k: v for k, v in vars(args).items() if k in FIELDS})
    return from_dict(options)


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "") -> Config:
    """Parse a training command line into a validated :class:`Config`; a bad value exits through
    argparse (status 2) with a message naming the flag."""
    parser = OneLineParser(description=description)
    add_config_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return config_from_namespace(args)
    except ConfigError as exc:
        parser.error(str(exc))


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
