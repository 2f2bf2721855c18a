"""The image preprocessing contract an encoder was trained with, and its torch implementation (no torchvision)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from artdiff import config as config_io
from artdiff.utils.images import PIL_KERNELS, Kernel

# OpenAI CLIP's normalisation (openai/CLIP clip.py; preprocessor_config.json of the openai/clip-* repos).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# PIL resample codes as stored in preprocessor_config.json (PIL.Image.Resampling values); 5 = hamming has no
# torch kernel and no artdiff name.
_PIL_RESAMPLE: dict[int, Kernel] = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "area"}
_ALWAYS_ANTIALIASED = ("lanczos", "area")
MAX_SIDE = 16384  # encoder inputs are 224-448 px; a side past this is a damaged file, not a contract

ImageInput = Image.Image | Tensor | Sequence[Image.Image | Tensor]


@dataclass(frozen=True)
class Preprocessing:
    """How pixels become encoder input: resize, centre crop, normalise (DESIGN §3 `preprocessing`)."""

    size: int = 224  # target of the shorter side (crop) or of both sides (no crop)
    kernel: Kernel = "bicubic"
    antialias: bool = True  # PIL-like low-pass when shrinking; False = plain F.interpolate (sd-image-variations)
    crop: bool = True  # True: shorter side to `size`, then a centre crop; False: squash to size x size
    crop_size: int | None = None  # side of the centre crop; None = size (real CLIP: 224 both)
    align_corners: bool = False  # kornia resize with align_corners=True trained sd-image-variations
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD

    def __post_init__(self) -> None:
        if self.kernel not in get_args(Kernel):
            raise ValueError(f"unknown resize kernel {self.kernel!r}; use one of {', '.join(get_args(Kernel))}")
        if self.kernel in _ALWAYS_ANTIALIASED and not self.antialias:
            raise ValueError(f"kernel {self.kernel!r} always antialiases; use bicubic, bilinear or nearest "
                             "without antialias")
        if self.align_corners and self.kernel not in ("bicubic", "bilinear"):
            raise ValueError(f"align_corners applies to bicubic and bilinear resizing, not {self.kernel}")
        if self.crop_size is not None and (not self.crop or self.crop_size > self.size):
            raise ValueError(f"crop_size {self.crop_size} needs crop on and at most size {self.size}")
        for name, side in (("size", self.size), ("crop_size", self.crop_size)):
            if side is not None and (isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_SIDE):
                raise ValueError(f"{name} {side!r} is not a whole number of pixels from 1 to {MAX_SIDE}")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                raise ValueError(f"{name} must be three finite numbers (R, G, B), got {values!r}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @property
    def output_size(self) -> int:
        """Side of the square tensor the encoder receives."""
        return self.crop_size or self.size

    def to_dict(self) -> dict[str, Any]:
        """Return plain data for artdiff.json."""
        return config_io.to_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "preprocessing") -> Preprocessing:
        """Build from artdiff.json's `preprocessing`; unknown keys are errors."""
        return config_io.from_dict(cls, data, where=where)

    @classmethod
    def from_hf_processor_config(cls, data: dict[str, Any]) -> Preprocessing:
        """Read a transformers CLIPImageProcessor preprocessor_config.json (PIL resize = antialiased)."""
        size, crop_size = data.get("size", 224), data.get("crop_size", 224)
        if isinstance(size, dict):  # {"shortest_edge": 224} or {"height": 224, "width": 224}
            size = size.get("shortest_edge") or size.get("height")
        if isinstance(crop_size, dict):
            crop_size = crop_size.get("height")
        resample = int(data.get("resample", 3))
        if resample not in _PIL_RESAMPLE:
            raise ValueError(f"preprocessor_config.json resample={resample} has no torch equivalent")
        # Without a centre crop transformers keeps the aspect ratio; a ViT needs a square, so squash instead.
        crop = bool(data.get("do_center_crop", True))
        return cls(
            size=int(size),
            kernel=_PIL_RESAMPLE[resample],
            antialias=True,
            crop=crop,
            crop_size=int(crop_size) if crop and int(crop_size) != int(size) else None,
            mean=tuple(data.get("image_mean", CLIP_MEAN)) if data.get("do_normalize", True) else (0.0, 0.0, 0.0),
            std=tuple(data.get("image_std", CLIP_STD)) if data.get("do_normalize", True) else (1.0, 1.0, 1.0),
        )


def to_pixels(images: ImageInput) -> list[Tensor]:
    """Turn PIL images or [0, 1] float tensors (B, 3, H, W) / (3, H, W) into a list of (3, H, W) float tensors."""
    if isinstance(images, Tensor):
        return list(_as_batch(images).unbind(0))
    if isinstance(images, Image.Image):
        images = [images]
    pixels = []
    for image in images:
        if isinstance(image, Image.Image):
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            pixels.append(torch.from_numpy(array).permute(2, 0, 1))  # (3, H, W)
        else:
            pixels.extend(to_pixels(image))
    return pixels


def preprocess(images: ImageInput, prep: Preprocessing) -> Tensor:
    """Apply the contract to images in [0, 1]: resize, centre crop, normalise; differentiable for tensors."""
    if isinstance(images, Tensor):  # one size for the whole batch: resize it at once
        return _normalise(_resize_crop(_as_batch(images), prep), prep)
    pixels = to_pixels(images)
    if not pixels:
        raise ValueError("no images to preprocess")
    return _normalise(torch.cat([_resize_crop(p[None], prep) for p in pixels]), prep)


def _as_batch(images: Tensor) -> Tensor:
    batch = images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"expected image tensors of shape (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
    if not batch.is_floating_point():
        raise ValueError(f"expected float image tensors in [0, 1], got {batch.dtype}; divide 8-bit images by 255")
    return batch


def _resize_crop(x: Tensor, prep: Preprocessing) -> Tensor:
    height, width = x.shape[-2:]
    if prep.crop:
        # transformers' shortest-edge rule: the longer side is floored, not rounded.
        short, long = min(height, width), max(height, width)
        new_long = int(prep.size * long / short)
        target = (prep.size, new_long) if height <= width else (new_long, prep.size)
    else:
        target = (prep.size, prep.size)
    if (height, width) != target:  # an image already at size is used as is, not resampled
        x = _resize(x, target, prep)
    if prep.crop:
        side = prep.output_size
        top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
        x = x[..., top:top + side, left:left + side]
    return x


def _resize(x: Tensor, size: tuple[int, int], prep: Preprocessing) -> Tensor:
    if prep.kernel == "lanczos":
        return _resize_lanczos(x, size)
    kwargs: dict[str, Any] = {}
    if prep.kernel in ("bicubic", "bilinear"):
        kwargs = {"align_corners": prep.align_corners, "antialias": prep.antialias}
    y = F.interpolate(x, size=size, mode=prep.kernel, **kwargs)
    # Clamp bicubic overshoot, as resizing an 8-bit image with PIL does.
    return y.clamp(0, 1)


def _resize_lanczos(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize with PIL's Lanczos on float ("F") planes: torch has no Lanczos kernel; not differentiable."""
    planes = x.detach().float().cpu().numpy()
    out = np.empty((*planes.shape[:2], *size), dtype=np.float32)
    for b, c in np.ndindex(*planes.shape[:2]):
        plane = Image.fromarray(planes[b, c]).resize(size[::-1], PIL_KERNELS["lanczos"])
        out[b, c] = np.asarray(plane)
    return torch.from_numpy(out).to(x.device, x.dtype).clamp(0, 1)


def _normalise(x: Tensor, prep: Preprocessing) -> Tensor:
    mean = torch.tensor(prep.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
