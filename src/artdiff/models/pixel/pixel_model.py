"""Pixel-space diffusion models: load one (a model directory, a run, or an original OpenAI file) or convert a file.

A model directory of kind `unconditional` is `artdiff.json` (schedule, variance, rescale_timesteps, image size,
pixel range, conditioning) plus `unet/`, a diffusers UNet2DModel folder. Converted directories also record the
source file's sha256 and resolved flags; trained ones their recipe.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from artdiff.errors import UserError
from artdiff.models import factory
from artdiff.models.model_info import DEFAULT_VARIANCE, ModelInfo
from artdiff.models.pixel.openai_checkpoint import (
    SUFFIXES,
    build_unet,
    file_sha256,
    read_openai_state_dict,
)
from artdiff.models.pixel.openai_flags import PRESETS, OpenAIFlags, parse_flags, pixel_model_info
from artdiff.utils.dtypes import DTYPES
from artdiff.utils.hashing import weights_hash
from artdiff.utils.io import check_new_folder, publish_folder

NEEDS_FLAGS = ("pass its flags with --flags \"--image_size 256 --num_channels 128 ...\" (the MODEL_FLAGS and "
               "DIFFUSION_FLAGS of its README), a YAML model_config file, or a preset name: " + ", ".join(PRESETS))


def size_multiple(unet: Any) -> int:
    """2^(levels - 1): a UNet2DModel halves the image once per level but the last, so sides must divide by it."""
    return 2 ** (len(unet.config.block_out_channels) - 1)


def check_makeable_size(unet: Any, side: int, *, what: str = "size") -> None:
    """Refuse, in one line, a side this UNet2DModel cannot make: a multiple of size_multiple(unet), at least it.

    The network is convolutional, so any such side works, not only the one it was trained at.
    """
    factor = size_multiple(unet)
    if side < factor or side % factor:
        low = max(factor, side // factor * factor)
        nearby = f"{low} or {low + factor}" if low != side else f"{low + factor}"
        raise UserError(f"{what} {side}: this model makes sizes that are multiples of {factor} px (it halves the "
                        f"image {factor.bit_length() - 1} times), e.g. {nearby}")


@dataclass
class PixelModel:
    """A loaded pixel model: the network, what its artdiff.json says, and a short hash for infotext."""

    path: Path
    unet: Any  # diffusers UNet2DModel
    info: ModelInfo
    hash: str

    @property
    def image_size(self) -> int:
        """The side the network was trained at, in pixels."""
        return int(self.info.extra.get("image_size", self.unet.config.sample_size))

    @property
    def variance(self) -> str:
        """learned_range (6 output channels), fixed_small or fixed_large."""
        return str(self.info.extra.get("variance", DEFAULT_VARIANCE))

    @property
    def rescale_timesteps(self) -> bool:
        """Whether the network sees t * 1000 / T instead of t."""
        return bool(self.info.extra.get("rescale_timesteps", False))

    @property
    def num_classes(self) -> int | None:
        """Class count of a class-conditional model, None for an unconditional one."""
        conditioning = self.info.conditioning or {}
        return conditioning.get("num_classes") if conditioning.get("type") == "class-label" else None

    @property
    def schedule(self) -> dict[str, Any]:
        """The discrete betas in diffusers' terms (beta_schedule, beta_start, beta_end, num_train_timesteps)."""
        return dict(self.info.schedule or {})


def load_pixel_model(reference: str | Path, *, flags: str | OpenAIFlags | None = None,
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> PixelModel:
    """An `unconditional` model directory, a training run (its model/), or an original checkpoint file + flags.

    `flags` (a flags string, YAML model_config, or preset name; see openai_flags) is needed for, and only
    accepted with, an original .pt/.pth/.safetensors file.
    """
    path = Path(reference).expanduser()
    if path.is_file():
        return _load_original(path, flags, device=device, dtype=dtype)
    if not path.is_dir():
        raise UserError(f"model {reference} does not exist; pass an unconditional model folder, a training run, or "
                        "an improved/guided-diffusion checkpoint file with --flags")
    if flags is not None:
        raise UserError(f"--flags describes an original checkpoint file; {path} is a model folder, whose artdiff.json "
                        "already describes it (drop --flags)")
    folder = factory.resolve_model_dir(path)
    info = factory.read_model_info(folder)
    if info.kind != "unconditional":
        article = "an" if info.kind[:1].lower() in "aeiou" else "a"
        raise UserError(f"{folder} is {article} {info.kind} model, not an unconditional pixel model (artdiff.json kind "
                        "'unconditional')")
    if not (folder / "unet" / "config.json").is_file():
        raise UserError(f"{folder} has no unet/ folder (config.json + weights); copy or convert the model again")
    unet = factory.load_unet2d(folder / "unet", device=device, dtype=dtype)
    _check_agrees(unet, info, folder)
    return PixelModel(folder, unet, info, weights_hash(sorted((folder / "unet").glob("*.safetensors"))))


def _load_original(path: Path, flags: str | OpenAIFlags | None, *, device: str | torch.device,
                   dtype: torch.dtype) -> PixelModel:
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path} is a file but not a checkpoint (.pt, .pth, .ckpt, .bin, .safetensors); pass a model "
                        "folder or an improved/guided-diffusion checkpoint")
    if flags is None:
        raise UserError(f"{path} is an original checkpoint, which does not describe its own architecture; "
                        f"{NEEDS_FLAGS}")
    parsed = parse_flags(flags)
    unet = build_unet(read_openai_state_dict(path), parsed, where=str(path), dtype=dtype).to(device)
    info = pixel_model_info(parsed, source={"file": path.name})
    return PixelModel(path, unet, info, weights_hash([path]))


def _check_agrees(unet: Any, info: ModelInfo, folder: Path) -> None:
    """artdiff.json and unet/config.json must describe the same network (output channels, classes)."""
    learned = info.extra.get("variance") == "learned_range"
    channels = unet.config.out_channels
    if channels != (6 if learned else 3):
        raise UserError(f"{folder}: artdiff.json says variance {info.extra.get('variance', DEFAULT_VARIANCE)}, but unet/ "
                        f"predicts {channels} channels ({'6' if learned else '3'} expected); the folder is damaged")
    classes = (info.conditioning or {}).get("num_classes") if (info.conditioning or {}).get("type") == "class-label" \
        else None
    if classes != unet.config.num_class_embeds:
        raise UserError(f"{folder}: artdiff.json says {classes or 'no'} classes, unet/ has "
                        f"{unet.config.num_class_embeds or 'no'} class embeddings; the folder is damaged")


@dataclass
class PixelConvertResult:
    """Where a converted checkpoint went, what it is and how large."""

    out: Path
    source: Path
    format: str
    parameters: int
    image_size: int
    variance: str
    dtype: str
    bytes_before: int
    bytes_after: int

    def to_json(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {"out": str(self.out), "source": str(self.source), "format": self.format,
                "parameters": self.parameters, "image_size": self.image_size, "variance": self.variance,
                "dtype": self.dtype, "bytes_before": self.bytes_before, "bytes_after": self.bytes_after}


def convert_openai_checkpoint(file: str | Path, *, flags: str, out: str | Path, dtype: str = "fp32",
                              codebase: str | None = None) -> PixelConvertResult:
    """Write an improved/guided-diffusion checkpoint as an `unconditional` model directory (safetensors only).

    `codebase` (the format named on the command line) picks the defaults for omitted flags; a preset name in
    `flags` brings its own. The folder is written beside OUT and renamed into place, so OUT is either absent or
    complete.
    """
    file, out = Path(file).expanduser(), Path(out).expanduser()
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    check_new_folder(out)
    parsed = parse_flags(flags, codebase=None if isinstance(flags, str) and flags.strip() in PRESETS else codebase)
    unet = build_unet(read_openai_state_dict(file), parsed, where=str(file), dtype=DTYPES[dtype])
    info = pixel_model_info(parsed, source={"file": file.name, "sha256": file_sha256(file)})
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        factory.save_diffusers_model(unet, tmp / "unet")
        factory.write_model_info(tmp, info)
        publish_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-written copy is left behind
    written = sum(f.stat().st_size for f in (out / "unet").glob("*.safetensors"))
    return PixelConvertResult(out, file, parsed.codebase, sum(p.numel() for p in unet.parameters()),
                              parsed.image_size, info.extra["variance"], dtype, file.stat().st_size, written)
