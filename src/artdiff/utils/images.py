"""Decode any image file to RGB and resize it with a chosen kernel, with or without antialiasing."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageCms, ImageColor, ImageOps

Kernel = Literal["lanczos", "bicubic", "bilinear", "area", "nearest"]

PIL_KERNELS = {
    "lanczos": Image.Resampling.LANCZOS,
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,  # box filter = area averaging when shrinking
    "nearest": Image.Resampling.NEAREST,
}
# Kernels torch can apply without antialiasing (torch.nn.functional.interpolate, antialias=False).
NO_ANTIALIAS_KERNELS = ("bicubic", "bilinear", "nearest")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageReadError(Exception):
    """An image that cannot be used, with a stable reason key (`truncated`, `not-an-image`, …)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """An image as RGB, with what it was before conversion."""

    image: Image.Image  # RGB, EXIF orientation applied
    source_mode: str  # PIL mode of the file, e.g. "P", "RGBA", "CMYK", "I;16"
    format: str | None


def parse_color(text: str) -> tuple[int, int, int]:
    """Parse a colour name or #rrggbb into an RGB triple."""
    try:
        return ImageColor.getrgb(text)[:3]
    except ValueError:
        raise ValueError(f"unknown colour {text!r}; use a name such as white or a hex code such as #808080") from None


def open_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Open image bytes lazily, refusing decompression bombs before any pixel is decoded."""
    if not data:
        raise ImageReadError("empty-file", "the file is zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as error:
        raise ImageReadError("decompression-bomb", str(error)) from None
    except Image.DecompressionBombWarning as error:
        raise ImageReadError("decompression-bomb", str(error)) from None
    except Image.UnidentifiedImageError:
        raise ImageReadError("not-an-image", "not a format Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("truncated", str(error)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError("decompression-bomb", f"{width}x{height} is more than {max_pixels} pixels")
    return image


def decode_rgb(data: bytes, *, background: tuple[int, int, int] = (255, 255, 255),
               max_pixels: int = 178_956_970) -> DecodedImage:
    """Decode image bytes to RGB: first frame, EXIF orientation, transparency over `background`."""
    image = open_image(data, max_pixels=max_pixels)
    source_mode, fmt = image.mode, image.format
    try:
        image.seek(0)  # GIF, multi-page TIFF: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = to_rgb(image, background)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError("truncated", str(error)) from None
    return DecodedImage(image=rgb, source_mode=source_mode, format=fmt)


def to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, compositing transparency over `background`."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        image = _high_bit_depth_to_l(image)
        mode = "L"
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode == "P" and "transparency" in image.info or mode in ("PA", "LA", "RGBa", "La"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _high_bit_depth_to_l(image: Image.Image) -> Image.Image:
    """Scale 16-bit (or 32-bit) greyscale to 8 bits by its bit depth, not by clipping at 255."""
    array = np.asarray(image)
    if image.mode == "F":
        scaled = np.clip(array, 0.0, 1.0) * 255.0 if array.max(initial=0) <= 1.0 else np.clip(array, 0, 255)
    else:
        peak = 65535 if image.mode.startswith("I;16") or array.max(initial=0) > 255 else 255
        scaled = array.astype(np.float64) * (255.0 / peak)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Convert CMYK through its embedded ICC profile when there is one, else Pillow's formula."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: the plain conversion is still a fair image
    return image.convert("RGB")


def resize(image: Image.Image, size: tuple[int, int], *, kernel: Kernel = "lanczos", antialias: bool = True,
           box: tuple[float, float, float, float] | None = None) -> Image.Image:
    """Resize (a `box` region of) an RGB image to `size` = (width, height).

    With antialias, Pillow's filters widen with the scale factor. Without, the result follows
    torch.nn.functional.interpolate(antialias=False), which is what models trained on tensors
    resized that way saw (the sd-image-variations quirk).
    """
    if antialias:
        return image.resize(size, PIL_KERNELS[kernel], box=box)
    if kernel not in NO_ANTIALIAS_KERNELS:
        raise ValueError(f"kernel {kernel!r} always antialiases; use bicubic, bilinear or nearest without antialias")
    if box is not None:
        image = image.crop(tuple(round(v) for v in box))
    return _resize_no_antialias(image, size, kernel)


def _resize_no_antialias(image: Image.Image, size: tuple[int, int], kernel: str) -> Image.Image:
    import torch  # imported here: only this path needs it
    import torch.nn.functional as F

    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    align = None if kernel == "nearest" else False
    y = F.interpolate(x, size=(size[1], size[0]), mode=kernel, align_corners=align, antialias=False)
    array = y[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(array, mode="RGB")


def is_image_path(path: Path) -> bool:
    """Whether a file's extension is one artdiff reads as an image."""
    return path.suffix.lower() in IMAGE_EXTENSIONS
