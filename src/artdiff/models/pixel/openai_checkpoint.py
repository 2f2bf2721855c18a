"""Read an original improved/guided-diffusion checkpoint file and build the diffusers UNet2DModel it holds.

The files are flat `model.state_dict()` pickles (fp32 master weights even for use_fp16 models); a .safetensors
copy of the same layout loads too. Pickles load with torch.load(weights_only=True), so no code in them runs.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from artdiff.errors import UserError, first_line
from artdiff.models import config_limits
from artdiff.models.pixel.openai_key_check import check_shapes
from artdiff.models.pixel.openai_unet_config import unet2d_config
from artdiff.models.pixel.openai_unet_keys import convert_tensors, key_entries, original_shape

if TYPE_CHECKING:
    from artdiff.models.pixel.openai_flags import OpenAIFlags

SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")
MAX_CHECKPOINT_BYTES = 16 << 30  # seven times guided-diffusion's largest (512 px, 2.2 GB); more is not one UNet
# Training scripts that wrap the weights; EMA first, since those are the weights one samples from.
WRAPPERS = ("ema", "ema_model", "state_dict", "model", "model_state_dict")


def is_openai_checkpoint_file(reference: str | Path) -> bool:
    """True for an existing file with a checkpoint suffix (.pt, .pth, .ckpt, .bin, .safetensors)."""
    path = Path(reference).expanduser()
    return path.is_file() and path.suffix.lower() in SUFFIXES


def read_openai_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Every named float tensor of the file, unwrapped from an {"ema"|"state_dict"|"model": ...} dict if wrapped."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder; pass the checkpoint file (.pt, .pth or .safetensors)")
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path} is not a checkpoint file (.pt, .pth, .ckpt, .bin or .safetensors)")
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path} is empty; download it again")
    if size > MAX_CHECKPOINT_BYTES:
        raise UserError(f"{path} is {size / 2**30:.1f} GiB, over the {MAX_CHECKPOINT_BYTES >> 30} GiB an "
                        "improved/guided-diffusion UNet can take; it is not one")
    free = config_limits.available_memory()
    if free is not None and size > free and not zipfile.is_zipfile(path):  # zip files are memory-mapped instead
        raise UserError(f"{path} is {size / 2**30:.1f} GiB but only {free / 2**30:.1f} GiB of memory is free; free "
                        "memory or load it on a larger machine")
    data = _load(path)
    for name in WRAPPERS:
        if isinstance(data, dict) and not any(torch.is_tensor(v) for v in data.values()) \
                and isinstance(data.get(name), dict):
            data = data[name]
    if not isinstance(data, dict):
        raise UserError(f"{path} holds a {type(data).__name__}, not a state dict of named tensors")
    tensors = {key: value for key, value in data.items() if isinstance(key, str) and torch.is_tensor(value)}
    if not tensors:
        raise UserError(f"{path} holds no named tensors; it is not a model checkpoint")
    if all(key.startswith("module.") for key in tensors):  # saved from a DistributedDataParallel wrapper
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    for key, value in tensors.items():
        if not value.is_floating_point():
            raise UserError(f"{path} stores {key} as {value.dtype}, but UNet weights are floating point; the file is "
                            "damaged or not an improved/guided-diffusion checkpoint")
    return tensors


def _load(path: Path) -> Any:
    if path.suffix.lower() == ".safetensors":
        try:
            return load_file(path)
        except (SafetensorError, OSError, ValueError) as error:
            raise UserError(f"{path} is not a readable safetensors file ({first_line(error)}); it may be truncated "
                            "or corrupt: download it again") from None
    from artdiff.models.single_file import torch_load_weights  # the one weights_only loader

    return torch_load_weights(path)


def file_sha256(path: Path) -> str:
    """The full file's sha256 (hex), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_unet(state: dict[str, torch.Tensor], flags: OpenAIFlags, *, where: str,
               dtype: torch.dtype = torch.float32) -> Any:
    """The UNet2DModel whose weights are `state` (original layout), after checking every key and shape."""
    from diffusers import UNet2DModel

    config = unet2d_config(flags)
    config_limits.check_config(config, where=f"the flags for {where}",
                               bytes_per_parameter=torch.empty((), dtype=dtype).element_size())
    with torch.device("meta"):  # shapes only: the file's tensors become the parameters below
        unet = UNet2DModel(**config)
    shapes = {name: tuple(tensor.shape) for name, tensor in unet.state_dict().items()}
    entries = key_entries(flags, shapes)
    expected = {entry.original: original_shape(entry, shapes) for entry in entries}
    check_shapes({name: tuple(tensor.shape) for name, tensor in state.items()}, expected, flags, where=where)
    converted = convert_tensors({name: tensor.to(dtype) for name, tensor in state.items()}, entries)
    unet.load_state_dict(converted, strict=True, assign=True)
    return unet.eval()


def unet_from_openai_file(path: Path, flags: OpenAIFlags, *, dtype: torch.dtype = torch.float32) -> Any:
    """Read, check and convert an original checkpoint file in one call."""
    return build_unet(read_openai_state_dict(path), flags, where=str(path), dtype=dtype)
