"""LoRA files on a loaded Stable Diffusion: read diffusers, kohya and A1111 files, apply each at a scale.

Loading goes through diffusers' StableDiffusionLoraLoaderMixin: `lora_state_dict` turns kohya/A1111 keys
(`lora_unet_...`, `lora_te_...`, `.alpha`) into diffusers' (`unet.` / `text_encoder.` prefixes), and
`load_lora_into_unet` / `load_lora_into_text_encoder` inject peft layers, so a file applies exactly as
`StableDiffusionPipeline.load_lora_weights` applies it. Each file is one named peft adapter, and its scale is the
adapter weight on the UNet and on the text encoder (A1111's `<lora:name:scale>` scales both). Before anything is
injected, every module a file targets must exist in this model: a file made for another model is refused.
Hashes follow A1111 (`extensions-builtin/Lora/network.py`): the first 12 hex digits of the sha256 of a
.safetensors file's tensor data (kohya's "addnet" hash, header skipped) or of a whole pickled file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from artdiff.errors import UserError, first_line

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"  # diffusers' file name in a LoRA folder
PICKLED = (".pt", ".bin", ".ckpt", ".pth")
UNET, TEXT_ENCODER = "unet", "text_encoder"  # diffusers' key prefixes
LORA_ADAPTER_METADATA_KEY = "lora_adapter_metadata"  # diffusers' safetensors header entry: LoraConfig per part
MAX_SCALE = 100.0  # A1111 has no limit; past this a LoRA is noise, and 1e30 overflows the merged weights
MAX_ABS_VALUE = 1e4  # per entry of a LoRA tensor (alphas included); trained ones are ~0.001-0.1, alphas <= rank


@dataclass(frozen=True)
class LoraSpec:
    """One --lora request: the file and its scale."""

    path: Path
    scale: float
    text: str  # as the user wrote it, for messages


@dataclass
class AppliedLora:
    """A LoRA now active on the model, and what the outputs record of it."""

    path: Path
    name: str
    hash: str
    scale: float
    unet_layers: int
    text_encoder_layers: int
    base_model_hash: str | None = None  # from an artdiff LoRA folder's artdiff.json

    @property
    def infotext_name(self) -> str:
        """The name for infotext's `Lora hashes`, sanitised as A1111 does."""
        return a1111_lora_name(self.name)

    def to_json(self) -> dict[str, Any]:
        """Plain data for the JSON sidecar."""
        return {"file": str(self.path), "name": self.name, "hash": self.hash, "scale": self.scale,
                "unet_layers": self.unet_layers, "text_encoder_layers": self.text_encoder_layers,
                "base_model_hash": self.base_model_hash}


def parse_lora_spec(spec: str) -> LoraSpec:
    """FILE_OR_DIR[:SCALE] -> the LoRA file and its scale (default 1.0); a bad scale or path is a one-line error."""
    text, scale = spec.strip(), 1.0
    if not Path(text).exists() and ":" in text:
        text, _, weight = text.rpartition(":")
        try:
            scale = float(weight)
        except ValueError:
            raise UserError(f"--lora {spec}: the scale {weight!r} is not a number; write FILE:SCALE, e.g. "
                            "style.safetensors:0.8") from None
        if not abs(scale) <= MAX_SCALE:  # `not <=` catches NaN too; 1e30 * a weight overflows to inf
            raise UserError(f"--lora {spec}: the scale must be a number from -{MAX_SCALE:g} to {MAX_SCALE:g} "
                            "(usually 0 to 1.5)")
    return LoraSpec(resolve_lora_file(Path(text)), scale, spec)


def resolve_lora_file(path: Path) -> Path:
    """The weights file of a LoRA: the file itself, or a folder's pytorch_lora_weights.safetensors (also a run's model/)."""
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"--lora {path} does not exist; pass a LoRA .safetensors file or the folder that holds "
                        f"{LORA_WEIGHT_NAME}")
    for candidate in (path / LORA_WEIGHT_NAME, path / "model" / LORA_WEIGHT_NAME):
        if candidate.is_file():
            return candidate
    found = sorted(path.glob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    raise UserError(f"--lora {path} is a folder without {LORA_WEIGHT_NAME}" +
                    (f" and with {len(found)} .safetensors files; name the file" if found else ""))


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """A LoRA file's tensors and diffusers' adapter metadata (a LoraConfig per part, e.g. its lora_alpha), if any.

    safetensors, or a pickled .pt/.bin/.ckpt loaded with weights_only (no code runs; no metadata).
    """
    suffix = path.suffix.lower()
    if suffix not in (".safetensors", *PICKLED):
        raise UserError(f"--lora {path}: unknown file type {suffix or '(none)'}; pass a .safetensors LoRA file")
    state, metadata = _read_safetensors(path) if suffix == ".safetensors" else (_read_pickled(path), None)
    _check_values(path, state)
    return state, metadata


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = (handle.metadata() or {}).get(LORA_ADAPTER_METADATA_KEY)
        state = load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise UserError(f"--lora {path} cannot be read ({first_line(error, limit=300)}); the file is damaged or not a "
                        "LoRA .safetensors file") from None
    try:
        metadata = json.loads(raw) if raw else None
    except ValueError as error:
        raise UserError(f"--lora {path}: its {LORA_ADAPTER_METADATA_KEY} header entry is not valid JSON "
                        f"({first_line(error, limit=300)}); the file is damaged") from None
    if metadata is not None and not isinstance(metadata, dict):
        raise UserError(f"--lora {path}: its {LORA_ADAPTER_METADATA_KEY} header entry is not a JSON object")
    return state, metadata


def _read_pickled(path: Path) -> dict[str, torch.Tensor]:
    """A pickled .pt/.bin/.ckpt read with weights_only, so no code from the file runs."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights_only" in str(error) or "GLOBAL" in str(error):  # torch's refusal of a global it will not run
            raise UserError(f"--lora {path} holds pickled objects artdiff will not execute; convert it to "
                            ".safetensors where you trust it (torch.load, then safetensors.torch.save_file)") from None
        raise UserError(f"--lora {path} cannot be read as a PyTorch file ({first_line(error, limit=300)})") from None
    except (OSError, RuntimeError, ValueError, EOFError) as error:
        raise UserError(f"--lora {path} cannot be read ({first_line(error, limit=300)}); pass a LoRA .safetensors file") from None
    data = data.get("state_dict", data) if isinstance(data, dict) else data
    if isinstance(data, dict) and all(isinstance(v, torch.Tensor) for v in data.values()):
        return data
    raise UserError(f"--lora {path} does not hold a flat table of tensors; it is not a LoRA file")


def _check_values(path: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse NaN, inf and magnitudes no training makes (1e38): merged into a layer they overflow to a black image."""
    for key, value in state.items():
        if not value.is_floating_point() or value.numel() == 0:
            continue
        largest = value.detach().abs().max().item()  # NaN propagates through max
        if not largest <= MAX_ABS_VALUE:
            what = "NaN or infinite values" if not math.isfinite(largest) else f"a value of magnitude {largest:.3g}"
            raise UserError(f"--lora {path}: tensor {key} holds {what} (trained LoRAs stay far below "
                            f"{MAX_ABS_VALUE:g}); the file is damaged")


def lora_hash(path: Path) -> str:
    """A1111's LoRA short hash: sha256 of a .safetensors file's data after its header (of a whole .pt), 12 digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if path.suffix.lower() == ".safetensors":
            header = int.from_bytes(handle.read(8), "little")
            handle.seek(8 + header)
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def display_name(path: Path) -> str:
    """The name A1111 would use (the file stem); for diffusers' generic file name, the folder's (or run's) name."""
    if path.name != LORA_WEIGHT_NAME:
        return path.stem
    folder = path.resolve().parent
    return folder.parent.name if folder.name == "model" and folder.parent.name else folder.name


def a1111_lora_name(name: str) -> str:
    """A LoRA's name as A1111 writes it in `Lora hashes`: ':' and ',' removed (extra_networks_lora.remove_symbols)."""
    return name.translate(_REMOVE_SYMBOLS)


_REMOVE_SYMBOLS = str.maketrans(dict.fromkeys(":,"))


def _base_model_hash(path: Path) -> str | None:
    """The base model an artdiff-trained LoRA records in its folder's artdiff.json, if any."""
    info = path.parent / "artdiff.json"
    try:
        data = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else {}
    except (OSError, ValueError):
        return None
    return data.get("base_model_hash") if isinstance(data, dict) and data.get("kind") == "lora" else None


def _unet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's entries in peft naming (`module.lora_A.weight`), as load_lora_adapter sees them."""
    from diffusers.utils import convert_unet_state_dict_to_peft

    unet = {k.removeprefix(f"{UNET}."): v for k, v in state.items() if k.startswith(f"{UNET}.")}
    if unet and "lora_A" not in next(iter(unet)):
        unet = convert_unet_state_dict_to_peft(unet)
    return unet


def _text_encoder_keys(state: dict[str, torch.Tensor], text_encoder: Any) -> dict[str, torch.Tensor]:
    """The text encoder's entries in peft naming, as diffusers' _load_lora_into_text_encoder sees them."""
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_peft

    te = {k.removeprefix(f"{TEXT_ENCODER}."): v for k, v in state.items() if k.startswith(f"{TEXT_ENCODER}.")}
    if not te:
        return te
    te = convert_state_dict_to_peft(convert_state_dict_to_diffusers(te))
    if not hasattr(text_encoder, "text_model"):  # transformers 5 flattens CLIPTextModel
        te = {k.removeprefix("text_model."): v for k, v in te.items()}
    return te


def _check_targets(spec: LoraSpec, keys: dict[str, torch.Tensor], network: torch.nn.Module, part: str,
                   model_name: str) -> int:
    """Refuse a file whose layers are not all in this network; return how many layers it adapts."""
    modules = dict(network.named_modules())
    wanted = {key.split(".lora_")[0] for key in keys}
    missing = sorted(wanted - set(modules))
    if missing:
        raise UserError(f"--lora {spec.path.name}: {len(missing)} of its {len(wanted)} {part} layers are not in "
                        f"{model_name} (e.g. {missing[0]}); it was made for another model")
    for key, value in sorted(keys.items()):
        name, _, kind = key.partition(".lora_")
        weight = getattr(modules[name], "weight", None)  # Linear (out, in) or Conv2d (out, in, k, k)
        if weight is None or value.ndim < 2 or weight.ndim < 2:
            continue
        # lora_A reads the layer's input features, lora_B writes its output features
        side, have, want = (("input", value.shape[1], weight.shape[1]) if kind.startswith("A.")
                            else ("output", value.shape[0], weight.shape[0]) if kind.startswith("B.") else ("", 0, 0))
        if have != want:
            raise UserError(f"--lora {spec.path.name}: its {part} layer {name} has {have} {side} features, "
                            f"{model_name}'s has {want}; it was made for another model")
    return len(wanted)


@contextlib.contextmanager
def _quiet_loaders() -> Iterator[None]:
    """Keep diffusers' logger to critical messages, and peft from warning that a second adapter is one more."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity(diffusers_logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config` attribute")
            yield
    finally:
        diffusers_logging.set_verbosity(level)


def apply_loras(unet: Any, text_encoder: Any, specs: list[LoraSpec], *, model_name: str) -> list[AppliedLora]:
    """Load each LoRA as adapter `lora{i}` on the UNet (and text encoder when the file has its layers) at its scale.

    Args:
        unet: diffusers UNet2DConditionModel, changed in place.
        text_encoder: transformers CLIPTextModel, changed in place.
        specs: the files and scales, from parse_lora_spec.
        model_name: the model's name for messages.

    Returns:
        One AppliedLora per spec, in order.
    """
    from diffusers.loaders import StableDiffusionLoraLoaderMixin as Loader
    from diffusers.loaders.lora_base import set_adapters_for_text_encoder

    applied: list[AppliedLora] = []
    unet_adapters: dict[str, float] = {}
    te_adapters: dict[str, float] = {}
    for i, spec in enumerate(specs):
        raw, metadata = read_lora_file(spec.path)
        if not raw or not any("lora" in k for k in raw):
            raise UserError(f"--lora {spec.path.name} has no LoRA weights (no 'lora' keys); is it a LoRA file?")
        try:  # read here, so a file's adapter metadata is passed on as diffusers' own loader passes it
            state, alphas = Loader.lora_state_dict(raw)
        except (ValueError, KeyError, RuntimeError, IndexError) as error:
            raise UserError(f"--lora {spec.path.name}: diffusers cannot convert its keys ({first_line(error, limit=300)})"
                            ) from None
        stray = sorted(k for k in state if not k.startswith((f"{UNET}.", f"{TEXT_ENCODER}.")))
        if stray or not all("lora" in k for k in state):
            example = stray[0] if stray else next(k for k in state if "lora" not in k)
            raise UserError(f"--lora {spec.path.name}: key {example!r} is not a LoRA layer of a Stable Diffusion "
                            f"UNet or text encoder; it was made for another kind of model")
        te_keys = _text_encoder_keys(state, text_encoder)
        n_unet = _check_targets(spec, _unet_keys(state), unet, "UNet", model_name)
        n_te = _check_targets(spec, te_keys, text_encoder, "text-encoder", model_name)
        if not n_unet + n_te:
            raise UserError(f"--lora {spec.path.name} has no layers for a Stable Diffusion UNet or text encoder")
        adapter = f"lora{i}"
        try:
            with _quiet_loaders():  # its own log of a failed load is many lines; the UserError below is one
                if n_unet:
                    Loader.load_lora_into_unet(state, alphas, unet, adapter_name=adapter, metadata=metadata)
                    unet_adapters[adapter] = spec.scale
                if n_te:
                    Loader.load_lora_into_text_encoder(state, alphas, text_encoder, adapter_name=adapter,
                                                       metadata=metadata)
                    te_adapters[adapter] = spec.scale
        except (ValueError, RuntimeError, KeyError) as error:
            raise UserError(f"--lora {spec.path.name} does not fit {model_name} ({first_line(error, limit=300)})") from None
        applied.append(AppliedLora(spec.path, display_name(spec.path), lora_hash(spec.path), spec.scale, n_unet,
                                   n_te, _base_model_hash(spec.path)))
    if unet_adapters:
        unet.set_adapters(list(unet_adapters), list(unet_adapters.values()))
    if te_adapters:
        set_adapters_for_text_encoder(list(te_adapters), text_encoder, list(te_adapters.values()))
    return applied
