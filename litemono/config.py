"""Configuration: dataclass defaults < YAML files (``--config``) < command-line flags.

Options are frozen dataclasses in :mod:`litemono.options`. YAML holds flat keys and/or
``model:``/``data:``/``loss:``/``train:`` sections, optionally ``include: base.yaml`` (relative).
Booleans have ``--x`` / ``--no-x``; upstream's ``--no_ssim``, ``--disable_automasking``,
``--no_cuda`` are aliases. Unknown keys, wrong types and bad combinations raise
:class:`ConfigError` naming the flag. ``--import my_terms`` (or a ``.py`` path) is imported
before parsing, so its loss terms (options via :func:`register_options`), attention kinds and
encoder families exist for the whole run."""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import sys
import typing
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from litemono.errors import ConfigError, OneLineParser
from litemono.options import (PROJECT_ROOT, SECTIONS, UPSTREAM_LR,  # noqa: F401
                              DataConfig, LossConfig, ModelConfig, TrainConfig, option)

# option -> (section, field, type): the dataclass fields, then the registered options (in
# LossConfig.extra); each registration's cross-option rule joins EXTRA_CHECKS
FIELDS: Dict[str, Tuple[str, dataclasses.Field, Any]] = {
    f.name: (section, f, f.type) for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls) if f.name != "extra"}
EXTRA_OPTIONS: Dict[str, Tuple[str, dataclasses.Field, Any]] = {}
EXTRA_CHECKS: List[Callable[[Any], None]] = []


def register_options(options: Sequence[Tuple[str, Any, Any]],
                     check: Optional[Callable[[Any], None]] = None) -> None:
    """Add options of a loss term registered outside the package: each ``(name, type,
    option(...))`` becomes a flag ``--name``, a YAML key and ``cfg.loss.extra[name]``;
    ``check(cfg)``, if given, joins :func:`validate` (it raises ``ConfigError``)."""
    clash = [name for name, _, _ in options if name in FIELDS or name in EXTRA_OPTIONS]
    if clash:
        raise ValueError(f"register_options: {clash} already exist")
    for name, tp, spec in options:
        spec.name = name  # a bare dataclasses.Field: give it the name the flag uses
        EXTRA_OPTIONS[name] = ("loss", spec, tp)
    if check is not None:
        EXTRA_CHECKS.append(check)


def _spec(name: str) -> Optional[Tuple[str, dataclasses.Field, Any]]:
    return FIELDS.get(name) or EXTRA_OPTIONS.get(name)


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


@dataclasses.dataclass(frozen=True)
class Config:
    """The resolved configuration of a run: one instance of each section."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        """Nested plain dict (JSON / YAML serialisable) keyed by section: what a run stores."""
        parts = (self.model, self.data, self.loss, self.train)
        return {section: dataclasses.asdict(p) for section, p in zip(SECTIONS, parts)}

    def flat(self) -> Dict[str, Any]:
        """All options in one dict keyed by option name (registered options included)."""
        flat = {k: v for values in self.to_dict().values() for k, v in values.items()}
        extra = flat.pop("extra")
        return {**flat, **extra}

    def replace(self, **changes: Any) -> "Config":
        """A copy with some options changed (flat names), validated."""
        return from_dict({**self.flat(), **changes})

    def dump_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _choices(f: dataclasses.Field) -> Optional[Tuple[Any, ...]]:
    choices = f.metadata["choices"]
    return tuple(choices) if choices is not None else None


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(str(name), [*FIELDS, *EXTRA_OPTIONS], n=1)
    if close:
        return f" (did you mean '--{close[0]}'?)"
    return " (options of a loss term registered in your own module? pass its module with --import)"


def coerce(name: str, value: Any) -> Any:
    """Check ``value`` (from YAML, JSON, flags or Python) against option ``name``: its type,
    choices and ``valid`` rule; return it normalised."""
    spec = _spec(name)
    if spec is None:
        raise ConfigError(f"unknown option '--{name}'" + _suggest(name))
    _, f, tp = spec
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
    """Option name -> value from flat keys and/or sections; unknown names are kept for
    :func:`from_dict` to check after ``imports``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of options, got {type(data).__name__}")
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS and isinstance(value, Mapping):
            value = dict(value)
            if key == "loss" and isinstance(value.get("extra"), Mapping):
                value.update(value.pop("extra"))  # as Config.to_dict stores them
            for name in value:
                if name in FIELDS and FIELDS[name][0] != key:
                    raise ConfigError(f"{source}: {key}.{name}: --{name} belongs to the "
                                      f"{FIELDS[name][0]} section")
            flat.update(value)
        elif key in SECTIONS and key not in FIELDS:  # "model: lite-mono" is the option
            raise ConfigError(f"{source}: section {key!r} must be a mapping of options")
        else:
            flat[key] = value
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
    flat = _flatten(data, str(path))
    import_extensions(flat.get("imports") or [])  # the options they register may follow
    for key in flat:
        if _spec(key) is None:
            raise ConfigError(f"{path}: unknown option {key!r}" + _suggest(key))
    return {**options, **flat}


def import_extensions(modules: Sequence[str]) -> None:
    """Import each of ``modules`` (``--import``): a module name, found from the working directory
    or ``PYTHONPATH``, or a ``.py`` file (loaded once per resolved path)."""
    for name in modules:
        try:
            if name.endswith(".py") or os.sep in name:
                if not Path(name).is_file():
                    raise ConfigError(f"--import {name}: no such file")
                digest = hashlib.sha1(str(Path(name).resolve()).encode()).hexdigest()[:12]
                key = f"litemono_import_{digest}"
                if key not in sys.modules:
                    spec = importlib.util.spec_from_file_location(key, name)
                    sys.modules[key] = importlib.util.module_from_spec(spec)
                    spec.loader.exec_module(sys.modules[key])
            else:
                if os.getcwd() not in sys.path:
                    sys.path.append(os.getcwd())
                importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"--import {name}: {exc}, put {name}.py in the working directory "
                              "or on PYTHONPATH, or pass its path") from None


def from_dict(options: Mapping[str, Any]) -> Config:
    """Flat option names (or a nested ``to_dict``) -> validated :class:`Config`; the modules in
    ``imports`` are imported first (their options may be among ``options``)."""
    options = _flatten(options, "config")
    import_extensions(options.get("imports") or [])
    values = {name: coerce(name, value) for name, value in options.items()}
    sections: Dict[str, Dict[str, Any]] = {section: {} for section in SECTIONS}
    extra = {name: _default(spec[1]) for name, spec in EXTRA_OPTIONS.items()}
    for name, value in values.items():
        if name in FIELDS:
            sections[FIELDS[name][0]][name] = value
        else:
            extra[name] = value
    sections["loss"]["extra"] = extra
    cfg = Config(*(cls(**sections[section]) for section, cls in SECTIONS.items()))
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """The one place that rejects bad combinations of options: the built-in ones, then registered
    terms' ``EXTRA_CHECKS`` (one value: :func:`coerce`; registry names: where nets are built)."""
    m, d, l = cfg.model, cfg.data, cfg.loss
    for ok, message in (
            (len(d.frame_ids) > 1 or d.use_stereo,
             "--frame_ids [0] needs --use_stereo: there is no source frame to warp"),
            (l.min_depth < l.max_depth,
             f"--min_depth {l.min_depth} must be < --max_depth {l.max_depth}"),
            (not m.spatial_attention or m.attention in (None, "spatial"),
             f"--spatial_attention is short for --attention spatial, which contradicts "
             f"--attention {m.attention}, drop --spatial_attention"),
            (d.dataset != "folder" or d.intrinsics is not None,
             "--dataset folder needs --intrinsics <file.yaml>"),
            (l.distill_weight == 0 or d.teacher_dir is not None,
             "--distill_weight > 0 needs --teacher_dir (run precompute_teacher.py)"),
            (set(l.distill_scales) <= set(m.scales),
             f"--distill_scales {l.distill_scales} must be among --scales {m.scales}"),
            (l.chamfer_weight == 0 or m.bins > 0,
             "--chamfer_weight > 0 needs the bin head: set --bins (e.g. 64)"),
            (l.chamfer_weight == 0 or m.bin_mode != "fixed",
             "--chamfer_weight > 0 with --bin_mode fixed: fixed bin centres cannot move; use "
             "--bin_mode adaptive"),
            (l.chamfer_weight == 0 or d.teacher_dir is not None,
             "--chamfer_weight > 0 needs --teacher_dir (run precompute_teacher.py)"),
            (l.teacher_mask or l.teacher_zero_below == 0,
             f"--no_teacher_mask uses every pixel, which contradicts --teacher_zero_below "
             f"{l.teacher_zero_below}; drop one")):
        if not ok:
            raise ConfigError(message)
    for check in EXTRA_CHECKS:
        check(cfg)


def _add_flag(group: Any, name: str, f: dataclasses.Field, tp: Any) -> None:
    if typing.get_origin(tp) is typing.Union:  # Optional[X]: the flag takes an X
        tp = typing.get_args(tp)[0]
    item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
    kwargs = dict(default=argparse.SUPPRESS,
                  help=f"{f.metadata['help']} (default: {_default(f)!r})")
    if tp is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif typing.get_origin(item) is list:  # nested lists are given as JSON text
        kwargs["type"] = json.loads
    elif item is not None:
        kwargs.update(nargs="+", type=item)
    else:
        kwargs.update(type=tp, choices=_choices(f))
    group.add_argument("--" + name, **kwargs)


def add_config_arguments(parser: argparse.ArgumentParser,
                         sections: Sequence[str] = tuple(SECTIONS)) -> None:
    """Add ``--config``, ``--import`` and a flag per option of ``sections``; no flag has a default
    (SUPPRESS), so only given flags override YAML and dataclass defaults."""
    quiet = argparse.SUPPRESS
    parser.add_argument("--config", action="append", default=quiet,
                        help="YAML file(s) of options; later files and flags override earlier")
    parser.add_argument("--import", dest="imports", action="append", default=quiet,
                        metavar="MODULE", help=FIELDS["imports"][1].metadata["help"])
    for section in sections:
        group = parser.add_argument_group(section)
        for name, (where, f, tp) in [*FIELDS.items(), *EXTRA_OPTIONS.items()]:
            if where == section and name != "imports":
                _add_flag(group, name, f, tp)
    group = parser.add_argument_group("aliases (upstream's spelling)")
    if "loss" in sections:
        group.add_argument("--no_ssim", dest="ssim", action="store_false", default=quiet,
                           help="same as --no-ssim")
        group.add_argument("--no_teacher_mask", dest="teacher_mask", action="store_false",
                           default=quiet, help="same as --no-teacher_mask")
        group.add_argument("--disable_automasking", dest="automasking", action="store_false",
                           default=quiet, help="same as --no-automasking")
    if "train" in sections:
        group.add_argument("--no_cuda", dest="device", action="store_const", const="cpu",
                           default=quiet, help="same as --device cpu")


def imports_in(argv: Sequence[str]) -> List[str]:
    """The ``--import`` values of a command line (read before its parser is built)."""
    found = []
    for i, arg in enumerate(argv):
        if arg == "--import" and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith("--import="):
            found.append(arg.split("=", 1)[1])
    return found


def config_from_namespace(args: argparse.Namespace) -> Config:
    """Resolve defaults < YAML (``args.config``) < the flags present in ``args``."""
    import_extensions(getattr(args, "imports", None) or [])  # their YAML keys are known then
    options: Dict[str, Any] = {}
    for path in getattr(args, "config", None) or []:
        options.update(load_yaml(path))
    flags = {k: v for k, v in vars(args).items() if _spec(k) is not None}
    if "imports" in flags:  # --import adds to the YAML files' imports
        flags["imports"] = [*options.get("imports", []), *flags["imports"]]
    options.update(flags)
    return from_dict(options)


def parse_config(argv: Optional[Sequence[str]] = None, description: str = "") -> Config:
    """Command line -> validated :class:`Config` (bad values exit via argparse, status 2, naming the
    flag); ``--import`` modules are imported first, so their options are flags."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(description=description)
    try:
        import_extensions(imports_in(argv))
    except ConfigError as exc:
        parser.error(str(exc))
    add_config_arguments(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (options of a loss term "
                     "registered in your own module? pass its module with --import)")
    try:
        return config_from_namespace(args)
    except ConfigError as exc:
        parser.error(str(exc))


def lr_schedule_params(lr: Sequence[float]) -> tuple:
    """Expand ``--lr`` to the six-number form (one number = the peak of both networks)."""
    if len(lr) == 6:
        return tuple(float(v) for v in lr)
    return (float(lr[0]), UPSTREAM_LR[1], UPSTREAM_LR[2], float(lr[0]), *UPSTREAM_LR[4:])
