"""YAML into frozen dataclasses: type-checked fields, dotted overrides, one clear error.

`build(cls, data)` checks every value against the dataclass's type hints (`Literal`, unions,
tuples, mappings, numbers: YAML's ints become floats, lists become tuples) and raises a
`ConfigError` whose message names the dotted key and what is allowed. `apply_overrides`
applies `--set key=value` strings. Nothing here knows what an experiment is.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from experiment.safe_yaml import load_text, read_text
from objectives.config import ConfigError

_DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
NESTED_NAME_KEYS = ("lambdas", "slack", "params", "space")  # their keys may contain dots


def load_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file whose top level is a non-empty mapping; anything else is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment file not found")
    try:  # bounded: size, UTF-8, aliases, duplicate keys (experiment.safe_yaml)
        data = load_text(read_text(path))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    except ConfigError as error:
        text = str(error)
        raise ConfigError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; an experiment file needs at least a name")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {_kind(data)}")
    return data


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply `dotted.key=value` strings; values are read as YAML scalars (2e-3, true, [1,2])."""
    data = _deep_copy(data)
    for override in overrides:
        key, sep, text = override.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {override!r}: expected dotted.key=value")
        try:
            value = load_text(text)
        except yaml.YAMLError:
            value = text
        except ConfigError as error:
            raise ConfigError(f"override {override!r}: {error}") from None
        value = _number_or_same(value)
        set_dotted(data, key.strip(), value)
    return data


def build(cls: type, data: Any, prefix: str = "") -> Any:
    """`cls(**data)` for a frozen dataclass, every field checked against its type hint."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{prefix.rstrip('.') or 'experiment'}: expected a mapping, got {_kind(data)}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key; allowed under "
            f"{prefix.rstrip('.') or 'the top level'}: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(hints[name], value, prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{prefix.rstrip('.')}: {error}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    """Check `value` against a type hint, converting YAML's ints to floats and lists to tuples."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{key}: {value!r} is not one of {allowed}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {_kind(value)}")
        return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict) or hint is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_kind(value)}")
        if not args or args[1] is Any:
            return dict(value)
        return {str(k): _coerce(args[1], v, f"{key}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if hint is float:
        value = _number_or_same(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts. Keys inside `lambdas`/`slack`/`params` may contain dots."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        if part in NESTED_NAME_KEYS:
            rest = ".".join(parts[i + 1 :])
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: {part} is not a mapping")
            node[rest] = value
            return
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {'.'.join(parts[: i + 1])} is a value, not a mapping")
        node = child
    node[parts[-1]] = value


def plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as plain dicts and lists, float subclasses (numpy's)
    as floats: what YAML's safe dumper writes."""
    if isinstance(value, float):
        return float(value)
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def _number_or_same(value: Any) -> Any:
    """'2e-3' -> 0.002: YAML 1.1 reads exponents without a dot as text."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return float(value)
    return value


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
