"""Command-line flags derived from config dataclasses, and the precedence defaults < --config < --set < flags."""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import Any, TypeVar

from artdiff.config import coerce, from_dict, load_yaml, merge, parse_override
from artdiff.errors import UserError

T = TypeVar("T")


def add_dataclass_args(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                       skip: tuple[str, ...] = (), config_flags: bool = True) -> None:
    """Add one flag per field of `cls` (help from the field's metadata), plus --config and --set.

    A second call for a group of the same parser (an argument group) passes config_flags=False.
    """
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        meta = field.metadata
        if field.name in skip or not meta.get("cli", True):
            continue
        hint = hints[field.name]
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": field.name, "default": argparse.SUPPRESS,
                                  "help": _help(meta.get("help", ""), field)}
        base, is_list = _unwrap(hint)
        if base is bool and not is_list:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if typing.get_origin(base) is typing.Literal:
                kwargs["choices"] = typing.get_args(base)
            if meta.get("metavar"):
                kwargs["metavar"] = meta["metavar"]
            if is_list:
                kwargs["action"] = "append"
        parser.add_argument(flag, **kwargs)
    if not config_flags:
        return
    parser.add_argument("--config", dest="config_file", metavar="FILE.yaml", default=None,
                        help="read options from a YAML file, or a shipped recipe by name (e.g. "
                             "clip-diffusion-art-16gb); command-line flags win")
    parser.add_argument("--set", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                        help="override one option of the YAML config, e.g. --set size=128 (repeatable)")


def config_path(text: str) -> Path:
    """--config's file: a path, or the bare name of a recipe shipped in artdiff/assets/recipes/."""
    path = Path(text)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path  # a file of the user's (load_yaml says so if it is missing)
    from artdiff.utils.assets import ASSETS

    recipe = ASSETS / "recipes" / f"{text}.yaml"
    if recipe.is_file():
        return recipe
    names = sorted(p.stem for p in (ASSETS / "recipes").glob("*.yaml"))
    raise UserError(f"--config {text}: no such file, and no shipped recipe of that name (recipes: "
                    f"{', '.join(names) or 'none'})")


def _help(text: str, field: dataclasses.Field) -> str:
    default = field.metadata.get("shown_default") or field.default
    if default is dataclasses.MISSING or default is None or isinstance(default, bool):
        return text
    return f"{text} (default: {default})"


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """Return the flag's base type and whether it collects a list."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType) and len(args) == 1:
        hint = args[0]
    if typing.get_origin(hint) in (list, tuple):
        inner = typing.get_args(hint)
        if inner and (typing.get_origin(hint) is list or inner[-1] is Ellipsis):
            return inner[0], True
    return hint, False


def args_to_config(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """Build `cls` from defaults, then --config, then --set, then explicit flags and `given` values."""
    data: dict[str, Any] = {}
    if getattr(args, "config_file", None):
        data.update(load_yaml(config_path(args.config_file)))
    for text in getattr(args, "overrides", []) or []:
        key_path, value = parse_override(text)
        merge(data, key_path, value)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in given or not hasattr(args, field.name):
            continue
        value = getattr(args, field.name)
        parse = field.metadata.get("parse")
        data[field.name] = _parse_flag(value, parse, hints[field.name], field.name)
    data.update({k: v for k, v in given.items() if v is not None})
    return from_dict(cls, data, where="options")


def _parse_flag(value: Any, parse: Any, hint: Any, name: str) -> Any:
    flag = "--" + name.replace("_", "-")
    if parse is not None:
        try:
            return parse(value)
        except ValueError as error:
            raise UserError(f"{flag} {value!r}: {error}") from None
    if isinstance(value, str):
        base, _ = _unwrap(hint)
        if base in (int, float, bool):
            return coerce(value, base, where=flag)
    return value
