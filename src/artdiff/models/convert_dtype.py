"""Copy a model directory with its floating-point safetensors weights stored in another precision."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from artdiff.errors import UserError
from artdiff.utils.dtypes import DTYPES
from artdiff.utils.io import check_new_folder, publish_folder


@dataclass
class ConvertResult:
    """Where the copy is and how much smaller (or larger) it got."""

    out: Path
    files: int
    bytes_before: int
    bytes_after: int

    def to_json(self) -> dict:
        """Plain data for --json."""
        return {"out": str(self.out), "weight_files": self.files, "bytes_before": self.bytes_before,
                "bytes_after": self.bytes_after}


def _convert_file(source: Path, target: Path, *dtypes: torch.dtype) -> None:
    """Write `source`'s tensors with each float one rounded through `dtypes` in turn (stored in the last)."""
    tensors = {}
    try:
        with safe_open(str(source), framework="pt") as handle:
            metadata = handle.metadata()
            for key in handle.keys():
                tensor = handle.get_tensor(key)
                if tensor.is_floating_point():
                    for dtype in dtypes:
                        tensor = tensor.to(dtype)
                tensors[key] = tensor
    except (SafetensorError, OSError) as error:
        raise UserError(f"{source} is not a readable safetensors file ({error})") from None
    save_file(tensors, str(target), metadata=metadata)


def convert_model_dtype(source: Path, out: Path, dtype: str) -> ConvertResult:
    """Copy `source` to `out` (written beside, then renamed); every *.safetensors float tensor becomes `dtype`.

    Loaders read the stored precision and cast to the one asked for, so an fp16 copy halves the size and
    loads as float32 wherever fp16 kernels are missing (CPUs).
    """
    source, out = Path(source), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    if not source.is_dir():
        raise UserError(f"{source} is not a model directory")
    from artdiff.models.components import component, references
    from artdiff.models.factory import read_model_info, resolve_model_dir

    source = resolve_model_dir(source)  # a training run stands for its model/
    if (source / "manifest.jsonl").is_file():
        raise UserError(f"{source} is a dataset (it has manifest.jsonl), not a model directory; pass the folder "
                        "of a trained or downloaded model")
    if not any(source.rglob("*.safetensors")):
        raise UserError(f"{source} holds no *.safetensors weights, so it is not a model directory artdiff can "
                        "convert")
    if out.resolve() == source.resolve():
        raise UserError("the output must be a new folder, not the model itself")
    check_new_folder(out)  # OUT could be anything, an earlier conversion or a folder of paintings
    info = read_model_info(source) if (source / "artdiff.json").is_file() else None
    parts = {name: component(source, info, name) for name in references(info, where=f"{source}/artdiff.json")} \
        if info else {}  # shipped folders it refers to: checked before anything is written
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns("*.safetensors"))
    weights = sorted(source.rglob("*.safetensors"))
    try:
        for file in weights:
            _convert_file(file, tmp / file.relative_to(source), DTYPES[dtype])
        if parts:
            _carry_references(tmp, parts, dtype)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written copy is left behind
        raise
    after = sum(f.stat().st_size for f in tmp.rglob("*.safetensors"))
    publish_folder(tmp, out)
    return ConvertResult(out, len(weights), sum(f.stat().st_size for f in weights), after)


def _carry_references(tmp: Path, parts: dict, dtype: str) -> None:
    """Keep the copy's references to shipped folders valid, at the precision a copied folder would now have.

    A reference names a folder shipped with artdiff, so it holds wherever the copy goes. Rounding to fp16 and
    then to bf16 (or back) is no single precision: that folder is then copied in, rounded through both.
    """
    from artdiff.models.components import Component, combined_precision, with_references
    from artdiff.models.factory import read_json, write_artdiff_json

    kept = {}
    for name, part in parts.items():
        precision = combined_precision(part.precision, dtype)
        if precision is None:
            shutil.copytree(part.path, tmp / name, ignore=shutil.ignore_patterns("*.safetensors"))
            for file in sorted(part.path.rglob("*.safetensors")):
                _convert_file(file, tmp / name / file.relative_to(part.path), DTYPES[part.precision], DTYPES[dtype])
        else:
            kept[name] = Component(part.path, None if precision == "fp32" else precision, part.asset).reference()
    write_artdiff_json(tmp, with_references(read_json(tmp / "artdiff.json") or {}, kept))
