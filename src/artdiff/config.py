"""Typed dataclass configs to and from YAML, with strict keys (after accelerate's config_args)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from artdiff.errors import UserError
from artdiff.utils.io import atomic_write_text

T = TypeVar("T")


def to_dict(cfg: Any) -> dict[str, Any]:
    """Turn a config dataclass into plain YAML-safe data (paths become strings, tuples lists)."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return to_dict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build `cls` from a mapping; unknown keys and values of the wrong type are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of option names to values, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    parsers = {f.name: f.metadata.get("parse") for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        parse = parsers.get(key)
        if parse is not None:  # a field with its own syntax, e.g. a size given as 256, "320x256" or [320, 256]
            try:
                kwargs[key] = parse(value)
            except ValueError as error:
                raise UserError(f"{where}.{key} {value!r}: {error}") from None
        else:
            kwargs[key] = coerce(value, hints[key], where=f"{where}.{key}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise UserError(f"{where}: {error}") from None


def coerce(value: Any, hint: Any, *, where: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise a UserError naming the option."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where=where)
            except UserError as error:
                errors.append(str(error))
        raise UserError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(str, args))}")
        return value
    if dataclasses.is_dataclass(hint):
        return value if isinstance(value, hint) else from_dict(hint, value, where=where)
    if origin in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, where=where) for v, a in zip(value, args, strict=True))
        items = [coerce(v, item, where=where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    return _coerce_scalar(value, hint, where=where)


def _coerce_scalar(value: Any, hint: Any, *, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool):
            raise UserError(f"{where}: expected a number, got {value!r}")
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise UserError(f"{where}: expected {'an integer' if hint is int else 'a number'}, got {value!r}") from None
        if hint is int and isinstance(value, float) and not value.is_integer():
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return number
    if hint is str:
        if isinstance(value, (dict, list)):
            raise UserError(f"{where}: expected text, got {value!r}")
        return str(value)
    if hint is Path:
        return Path(value)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set a.b=value` into its key path and YAML value."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected KEY=VALUE, for example --set size=128")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, str):
        try:
            value = float(value)  # PyYAML reads "1e-4" (no dot) as text; a user means the number
        except ValueError:
            pass
    return key.strip().split("."), value


def merge(base: dict[str, Any], key_path: list[str], value: Any) -> None:
    """Set `value` at a dotted key path inside nested dicts."""
    node = base
    for key in key_path[:-1]:
        node = node.setdefault(key, {})
    node[key_path[-1]] = value


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with one clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of option names to values")
    return data


def save_yaml(cfg: Any, path: str | Path) -> None:
    """Write a config dataclass as YAML, atomically."""
    atomic_write_text(Path(path), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,
           metavar: str | None = None, parse: Any = None, cli: bool = True, shown_default: str | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """Declare a config field with the help text and flag the command line derives from it."""
    metadata = {"help": help, "flag": flag, "metavar": metavar, "parse": parse, "cli": cli,
                "shown_default": shown_default}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_all(checks: list[tuple[bool, str]]) -> None:
    """Raise ValueError with the message of the first failed (ok, message) check of a config's __post_init__."""
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
