"""Read the raw flags of an OpenAI checkpoint from what its users have: a flags string, a YAML mapping or a file.

Three sources, as the codebases' READMEs and clip-diffusion-art write them:
- the `MODEL_FLAGS` / `DIFFUSION_FLAGS` strings of improved-diffusion and guided-diffusion (`--name value` or
  `--name=value`; pasted `MODEL_FLAGS="..."` assignments are accepted too);
- clip-diffusion-art's YAML `model_config` mapping (configs/*.yaml), read with yaml.safe_load;
- a path to a .yaml/.yml file (YAML) or a .txt/.sh file (flags) holding either.
Values stay raw here (strings, or YAML's own types); openai_flags types and checks them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from artdiff.errors import UserError

MAX_FLAG_FILE_BYTES = 1 << 20  # a flags file is a few lines; more is not one
FLAG_WORD = re.compile(r"(^|\s)--[A-Za-z]")  # a command line, even with words before its flags
ASSIGNMENT_PREFIXES = ("MODEL_FLAGS=", "DIFFUSION_FLAGS=", "TRAIN_FLAGS=", "SAMPLE_FLAGS=", "CLASSIFIER_FLAGS=")


@dataclass(frozen=True)
class RawFlags:
    """Flag names (underscored) with their raw values, and which kind of source held them."""

    values: dict[str, Any]
    kind: str  # "flags" (a command-line string) or "yaml" (clip-diffusion-art's model_config)


def read_flag_source(text: str) -> RawFlags:
    """Raw flags from a flags string, a YAML mapping, or a path to a file holding either."""
    text = text.strip()
    if not text:
        raise UserError("--flags is empty; pass the checkpoint's flags (--image_size 256 --num_channels 128 ...), "
                        "a YAML model_config file, or a preset name")
    path = Path(text).expanduser()
    if "\n" not in text and not text.startswith("-") and path.suffix.lower() in (".yaml", ".yml", ".txt", ".sh"):
        return _read_file(path)
    if text.startswith("-") or text.startswith(ASSIGNMENT_PREFIXES) or FLAG_WORD.search(text):
        return RawFlags(parse_flag_string(text), "flags")
    return RawFlags(_yaml_mapping(text, where="--flags"), "yaml")


def _read_file(path: Path) -> RawFlags:
    if not path.is_file():
        raise UserError(f"flags file {path} does not exist{' (it is a folder)' if path.is_dir() else ''}")
    if path.stat().st_size > MAX_FLAG_FILE_BYTES:
        raise UserError(f"flags file {path} is over {MAX_FLAG_FILE_BYTES >> 20} MiB; it is not a flags or YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"flags file {path} is not UTF-8 text") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        return RawFlags(_yaml_mapping(text, where=str(path)), "yaml")
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    return RawFlags(parse_flag_string(" ".join(lines)), "flags")


def _yaml_mapping(text: str, *, where: str) -> dict[str, Any]:
    """clip-diffusion-art's `model_config:` mapping, or a bare mapping of flag names to values."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{where} is neither a flags string (--image_size 256 ...), a preset name, nor valid YAML "
                        f"({reason})") from None
    if isinstance(data, dict) and isinstance(data.get("model_config"), dict):
        data = data["model_config"]
    if not isinstance(data, dict) or not data:
        from artdiff.models.pixel.openai_flags import PRESETS

        raise UserError(f"{where} {_short(text)!r} is neither a preset name ({', '.join(PRESETS)}), a flags string "
                        "(--image_size 256 --num_channels 128 ...), nor a YAML model_config mapping")
    bad = [key for key in data if not isinstance(key, str)]
    if bad:
        raise UserError(f"{where}: flag name {bad[0]!r} is not text")
    return {key.strip().replace("-", "_"): value for key, value in data.items()}


def parse_flag_string(text: str) -> dict[str, str]:
    """`--name value` and `--name=value` pairs of an argparse command line (the last of a repeated flag wins)."""
    try:
        tokens = shlex.split(text, comments=True)
    except ValueError as error:
        raise UserError(f"cannot read the flags ({error}): check the quotes in {_short(text)!r}") from None
    tokens = _expand_assignments(tokens)
    values: dict[str, str] = {}
    position = 0
    while position < len(tokens):
        token = tokens[position]
        if not token.startswith("--") or len(token) == 2:
            raise UserError(f"unexpected {token!r} in the flags: each flag is --name value (expand shell variables "
                            "such as $MODEL_FLAGS before passing them)")
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            position += 1
            if position == len(tokens) or tokens[position].startswith("--"):
                raise UserError(f"flag --{name} has no value (write --{name} VALUE)")
            value = tokens[position]
        values[name.replace("-", "_")] = value
        position += 1
    return values


def _expand_assignments(tokens: list[str]) -> list[str]:
    """Split `MODEL_FLAGS=--a 1 --b 2` (a pasted shell assignment, one token after shlex) into its flags."""
    expanded: list[str] = []
    for token in tokens:
        prefix = next((p for p in ASSIGNMENT_PREFIXES if token.startswith(p)), None)
        expanded.extend(shlex.split(token[len(prefix):]) if prefix else [token])
    return expanded


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."
