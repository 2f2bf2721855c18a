"""Read image files safely (stat and header checked before any read), decode them to RGB, and resize them."""

from __future__ import annotations

import contextlib
import io
import os
import re
import stat
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

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
DEFAULT_MAX_PIXELS = 178_956_970  # Pillow's own hard limit (2 x MAX_IMAGE_PIXELS), kept as the default
DEFAULT_MAX_BYTES = 512 * 1024**2  # far above any real artwork file; a bound on what one read can cost
_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


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


def describe_file_kind(mode: int) -> str | None:
    """What a non-regular file is ("a FIFO (named pipe)", ...), or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


def check_file(info: os.stat_result, *, max_bytes: int | None) -> None:
    """Refuse, from its stat alone, a file that is not regular, is empty, or is larger than `max_bytes`."""
    kind = describe_file_kind(info.st_mode)
    if kind is not None:
        raise ImageReadError("not-a-file", f"{kind}; only regular files are read")
    if info.st_size == 0:
        raise ImageReadError("empty-file", "the file is zero bytes")
    if max_bytes is not None and info.st_size > max_bytes:
        raise ImageReadError("too-large", f"{_megabytes(info.st_size)} is over the {_megabytes(max_bytes)} limit")


def _megabytes(size: int) -> str:
    return f"{size / 1024**2:.1f} MB" if size >= 1024**2 else f"{size} bytes"


@contextlib.contextmanager
def open_regular_file(path: Path, *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Iterator[BinaryIO]:
    """Open a file for reading after checking its stat; FIFOs, devices and sockets (or links to them) stay unopened.

    Raises ImageReadError for a file that must not be read and OSError for one that cannot be.
    """
    check_file(os.stat(path), max_bytes=max_bytes)
    # O_NONBLOCK: should the path become a FIFO between stat and open, opening it cannot block.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    with os.fdopen(fd, "rb") as handle:
        check_file(os.fstat(fd), max_bytes=max_bytes)
        yield handle


@contextlib.contextmanager
def pixel_limit(max_pixels: int) -> Iterator[None]:
    """Let Pillow refuse images over `max_pixels` while the block runs (its global limit is restored after)."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow warns above this and raises above twice this: both refuse
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        found = re.search(r"\((\d+) pixels\)", str(error))  # Pillow's message names the size, then its own limit
        size = f"{found.group(1)} pixels" if found else "the image"
        raise ImageReadError("decompression-bomb", f"{size} is over the {max_pixels}-pixel limit") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def open_image(data: bytes | BinaryIO, *, max_pixels: int) -> Image.Image:
    """Open image bytes or a binary file lazily, refusing decompression bombs before any pixel is decoded."""
    if isinstance(data, (bytes, bytearray)):
        if not data:
            raise ImageReadError("empty-file", "the file is zero bytes")
        data = io.BytesIO(data)
    try:
        with pixel_limit(max_pixels):
            image = Image.open(data)
    except Image.UnidentifiedImageError:
        raise ImageReadError("not-an-image", "not a format Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageReadError("truncated", str(error)) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageReadError("decompression-bomb", f"{width}x{height} is over the {max_pixels}-pixel limit")
    return image


def decode_rgb(data: bytes | BinaryIO, *, background: tuple[int, int, int] = (255, 255, 255),
               max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes (or a binary file) to RGB: first frame, EXIF orientation, transparency over `background`."""
    image = open_image(data, max_pixels=max_pixels)
    source_mode, fmt = image.mode, image.format
    try:
        with pixel_limit(max_pixels):  # Pillow checks frames again as it decodes them (GIF)
            image.seek(0)  # GIF, multi-page TIFF: the first frame
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = to_rgb(image, background)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageReadError("truncated", str(error)) from None
    return DecodedImage(image=rgb, source_mode=source_mode, format=fmt)


def read_rgb(path: Path, *, background: tuple[int, int, int] = (255, 255, 255),
             max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int | None = DEFAULT_MAX_BYTES) -> DecodedImage:
    """Decode an image file to RGB, checking it (regular file, size, header) before reading it; see decode_rgb."""
    with open_regular_file(path, max_bytes=max_bytes) as handle:
        return decode_rgb(handle, background=background, max_pixels=max_pixels)


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
