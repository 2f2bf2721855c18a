"""Vet a pretrained folder's config.json and weight files before diffusers or transformers reads them.

The libraries report a damaged file as a long internal error, fall back to default configs when config.json is
not a file, and unpickle `.bin` weights when no safetensors are there. Here each of these is one line naming the
file and the fix, and only safetensors weights are ever read (DESIGN §1.6: no code runs from a checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from artdiff.errors import UserError

PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# Integer tensors a weights file may carry besides the float parameters (old transformers, BatchNorm counters).
INT_BUFFERS = ("position_ids", "num_batches_tracked")
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
RESTORE = "copy or download the model again"
# No ready-made command: loading such a file runs its code, which only its owner can decide to allow.
CONVERT_HINT = ("convert it to .safetensors only if you trust its source (load it once in PyTorch allowing "
                "its code, then write its tensors with safetensors.torch.save_file), or ask its author for a "
                ".safetensors copy")


def read_json_file(path: Path, *, what: str = "JSON") -> dict[str, Any]:
    """A JSON object from a file that must exist; a folder, empty file or bad JSON is a one-line error."""
    if path.is_dir():
        raise UserError(f"{path} is a folder where a {what} file is expected; {RESTORE}")
    if not path.is_file():
        raise UserError(f"{path} is missing; {RESTORE}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text, so not {what}; {RESTORE}") from None
    if not text.strip():
        raise UserError(f"{path} is empty; {RESTORE}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}); {RESTORE}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object, not a {type(data).__name__}; {RESTORE}")
    return data


def check_weights(folder: Path) -> list[Path]:
    """The folder's safetensors files, each with a readable header and float tensors; pickles are refused."""
    for index in sorted(folder.glob("*.safetensors.index.json")):
        shards = read_json_file(index).get("weight_map")
        if not isinstance(shards, dict):
            raise UserError(f"{index} has no weight_map; {RESTORE}")
        for shard in sorted(set(map(str, shards.values()))):
            if not (folder / shard).is_file():
                raise UserError(f"{folder / shard}, a part of the weights listed in {index.name}, is missing; "
                                f"{RESTORE}")
    entries = sorted(folder.glob("*.safetensors"))
    for entry in entries:
        if not entry.is_file():
            raise UserError(f"{entry} is a folder where a weights file is expected; {RESTORE}")
    if not entries:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLED and p.is_file())
        if pickled:
            raise UserError(f"{folder} has only pickled weights ({', '.join(pickled)}), and artdiff never loads "
                            f"pickles, which can run code; {CONVERT_HINT}")
        raise UserError(f"{folder} has no weights (*.safetensors); {RESTORE}")
    for entry in entries:
        check_safetensors(entry)
    return entries


def check_safetensors(path: Path) -> None:
    """Read the header (the tensor table, no data); truncation and non-float parameters are named."""
    if path.is_dir():
        raise UserError(f"{path} is a folder where a weights file is expected; {RESTORE}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                dtype = handle.get_slice(key).get_dtype()
                if dtype not in FLOAT_DTYPES and not key.endswith(INT_BUFFERS):
                    raise UserError(f"{path} stores {key} as {dtype}, but model weights are floating point; the "
                                    f"file is damaged or not a weights file: {RESTORE}")
    except (SafetensorError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a readable safetensors file ({reason}); it may be truncated or corrupt: "
                        f"{RESTORE}") from None
