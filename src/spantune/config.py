"""Typed configs: dataclasses filled from YAML, then from ``--section.key value`` CLI overrides.

Unknown keys and wrong types fail before any work starts, naming the key.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spantune.errors import SpantuneError

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, from_cli: bool) -> Any:
    """Check (YAML) or convert (CLI strings) ``value`` to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (from_cli and value in ("null", "None", "none")):
            if type(None) in args:
                return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, from_cli)
            except SpantuneError:
                continue
        raise SpantuneError(f"config key {key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise SpantuneError(f"config key {key}: expected a mapping, got {value!r}")
        return _build(tp, value, key + ".")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if from_cli and isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)):
            raise SpantuneError(f"config key {key}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]", from_cli) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SpantuneError(f"config key {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_cli and str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_cli:
            try:
                return int(value)
            except ValueError:
                pass
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise SpantuneError(f"config key {key}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise SpantuneError(f"unknown config key {prefix}{unknown[0]} (known: {', '.join(sorted(names))})")
    kwargs = {k: _coerce(v, hints[k], prefix + k, from_cli=False) for k, v in data.items()}
    return cls(**kwargs)


def parse_overrides(tokens: list[str]) -> list[tuple[str, str]]:
    """``["--train.lr", "1e-4", "--lora.r=8"]`` → ``[("train.lr", "1e-4"), ("lora.r", "8")]``."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or len(tok) <= 2:
            raise SpantuneError(f"unexpected argument {tok!r} (overrides look like --section.key value)")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise SpantuneError(f"override {tok} needs a value")
            key, value = tok[2:], tokens[i + 1]
            i += 2
        pairs.append((key.replace("-", "_"), value))
    return pairs


def apply_override(config: Any, key: str, value: str) -> None:
    """Set a dotted key on a dataclass tree, converting the string to the field's type."""
    parts = key.split(".")
    target = config
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(target)}
        if part not in names:
            raise SpantuneError(f"unknown config key {'.'.join(parts[:i + 1])} (known: {', '.join(sorted(names))})")
        if i == len(parts) - 1:
            tp = typing.get_type_hints(type(target))[part]
            setattr(target, part, _coerce(value, tp, key, from_cli=True))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise SpantuneError(f"config key {'.'.join(parts[:i + 1])} is not a section")


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from defaults, then the YAML file, then CLI override tokens."""
    data: dict[str, Any] = {}
    if yaml_path is not None:
        try:
            text = Path(yaml_path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SpantuneError(f"{yaml_path}: cannot read config: {exc.strerror or exc}") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{yaml_path}:{mark.line + 1}" if mark else str(yaml_path)
            raise SpantuneError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict):
            raise SpantuneError(f"{yaml_path}: the config must be a mapping")
    try:
        config = _build(cls, data)
    except SpantuneError as exc:
        raise SpantuneError(f"{yaml_path}: {exc}" if yaml_path else str(exc)) from None
    for key, value in parse_overrides(overrides or []):
        apply_override(config, key, value)
    return config


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def dump_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys of every non-section field of a dataclass tree, with their defaults."""
    out: list[tuple[str, Any]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
            out.append((prefix + f.name, default))
    return out


_OVERRIDE_PREFIX = "set:"


def add_override_options(parser: Any, cls: type, title: str = "config overrides") -> None:
    """Expose each config key as ``--section.key VALUE`` on an argparse parser (listed in --help)."""
    group = parser.add_argument_group(title)
    for key, default in leaf_fields(cls):
        group.add_argument(f"--{key}", dest=_OVERRIDE_PREFIX + key, metavar="VALUE", default=argparse.SUPPRESS,
                           help=f"(default {default})")


def overrides_from_args(args: Any) -> list[str]:
    """The override tokens given through :func:`add_override_options`, for :func:`load_config`."""
    return [tok for key, value in vars(args).items() if key.startswith(_OVERRIDE_PREFIX)
            for tok in (f"--{key[len(_OVERRIDE_PREFIX):]}", value)]
