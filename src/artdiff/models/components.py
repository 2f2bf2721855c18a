"""Shared components: a model directory may refer to a folder shipped with artdiff instead of carrying a copy.

In artdiff.json, `"components": {"encoder": {"asset": "cloob-mini", "precision": "fp16"}}` stands for an
`encoder/` subfolder. The rule, kept narrow so that a model file cannot make artdiff read an arbitrary folder:
- only the parts in COMPONENTS may be referred to, and each only to a folder of the kind it needs (a joint
  encoder for `encoder`, by that folder's artdiff.json);
- `asset` is a plain folder name inside artdiff's own assets/ (no path, no `..`), so the reference means the
  same thing wherever the model directory is copied;
- `precision` (optional) rounds the loaded weights to fp16 or bf16, as if the folder had been copied with
  `artdiff convert --dtype`: a reference then loads exactly the weights a converted copy would have held.
A model with both the subfolder and a reference is refused: which one it means is not clear.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.model_info import ModelInfo
from artdiff.utils.assets import ASSETS
from artdiff.utils.dtypes import DTYPES

COMPONENTS = {"encoder": "joint-encoder"}  # part name -> the kind its folder's artdiff.json must declare
PRECISIONS = DTYPES  # the names --precision accepts
ASSET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@dataclass(frozen=True)
class Component:
    """Where a model's part lives, and the precision its weights are rounded to after loading (None: as stored)."""

    path: Path
    precision: str | None = None
    asset: str | None = None  # the shipped folder's name when the part is a reference

    def reference(self) -> dict[str, str] | None:
        """The artdiff.json entry that refers to this part, or None when it is a folder of the model's own."""
        if self.asset is None:
            return None
        return {"asset": self.asset, **({"precision": self.precision} if self.precision else {})}


def references(info: ModelInfo, *, where: str) -> dict[str, dict[str, str]]:
    """The checked `components` of an artdiff.json: part name -> {"asset", "precision"?}."""
    components = info.extra.get("components")
    if components is None:
        return {}
    if not isinstance(components, dict):
        raise UserError(f"{where}: 'components' must be an object such as "
                        '{"encoder": {"asset": "cloob-mini"}}')
    for name, entry in components.items():
        if name not in COMPONENTS:
            raise UserError(f"{where}: components.{name} is not a part a model may refer to; only "
                            f"{', '.join(COMPONENTS)}")
        if not isinstance(entry, dict) or set(entry) - {"asset", "precision"} or "asset" not in entry:
            raise UserError(f'{where}: components.{name} must be {{"asset": NAME}} with an optional "precision"')
        asset, precision = entry["asset"], entry.get("precision")
        if not isinstance(asset, str) or not ASSET_NAME.fullmatch(asset):
            raise UserError(f"{where}: components.{name}.asset {asset!r} is not the name of a folder shipped with "
                            "artdiff (a plain folder name such as cloob-mini, no path)")
        if precision is not None and precision not in PRECISIONS:
            raise UserError(f"{where}: components.{name}.precision {precision!r} is not one of "
                            f"{', '.join(PRECISIONS)}")
    return components


def component(folder: Path, info: ModelInfo, name: str) -> Component:
    """The model's own `name/` subfolder, or the shipped folder its artdiff.json refers to, checked."""
    folder = Path(folder)
    where = f"{folder}/artdiff.json"
    entry = references(info, where=where).get(name)
    if entry is None:
        if not (folder / name).is_dir():
            raise UserError(f"{folder} is missing its {name}/ folder; it is not a complete {info.kind} model")
        return Component(folder / name)
    if (folder / name).exists():
        raise UserError(f"{folder} has both its own {name}/ folder and components.{name} in artdiff.json; remove one, "
                        "so that it is clear which it uses")
    target = ASSETS / entry["asset"]
    if not target.is_dir():
        raise UserError(f"{where} refers to the shipped {entry['asset']} for its {name}, which this install lacks "
                        f"({target}); reinstall artdiff, or put the {name} folder into the model directory")
    kind = (factory.read_json(target / "artdiff.json") or {}).get("kind")
    if kind != COMPONENTS[name]:
        raise UserError(f"{where} refers to the shipped {entry['asset']} for its {name}, but that folder is "
                        f"{'a ' + str(kind) if kind else 'no artdiff model'}, not a {COMPONENTS[name]}")
    return Component(target, entry.get("precision"), entry["asset"])


def shipped_component(path: Path, precision: str | None = None) -> Component:
    """A component at `path`, recognised as a reference when it is a folder shipped in artdiff's assets."""
    path = Path(path)
    asset = path.name if path.resolve().parent == ASSETS.resolve() and ASSET_NAME.fullmatch(path.name) else None
    return Component(path, precision, asset)


@torch.no_grad()
def round_to_precision(module: torch.nn.Module, precision: str | None) -> torch.nn.Module:
    """Round every floating weight and saved buffer of `module` to `precision`, keeping its dtype.

    Each becomes a new tensor, as loading a converted file makes one: weights loaded from a float32 file can be
    views at any alignment of the file's buffer, and CPU kernels then round differently in the last bit.
    """
    if precision is None or PRECISIONS[precision] == torch.float32:
        return module
    lower = PRECISIONS[precision]
    for sub in module.modules():
        for parameter in sub.parameters(recurse=False):
            if parameter.is_floating_point():
                parameter.data = parameter.data.to(lower).to(parameter.dtype)
        for name, buffer in sub.named_buffers(recurse=False):
            if buffer.is_floating_point() and name not in sub._non_persistent_buffers_set:
                setattr(sub, name, buffer.to(lower).to(buffer.dtype))
    return module


def combined_precision(first: str | None, then: str) -> str | None:
    """The one precision equal to rounding to `first` and then to `then`, or None when no single one is."""
    lossy = [p for p in (first, then) if p not in (None, "fp32")]
    if len(set(lossy)) > 1:
        return None
    return lossy[0] if lossy else "fp32"


def with_references(data: dict[str, Any], parts: dict[str, dict[str, str]]) -> dict[str, Any]:
    """artdiff.json data with its `components` replaced by `parts` (dropped when empty)."""
    data = {k: v for k, v in data.items() if k != "components"}
    return {**data, "components": parts} if parts else data
