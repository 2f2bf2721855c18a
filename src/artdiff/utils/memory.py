"""Estimate a generation request's peak memory before anything is allocated, and refuse what cannot fit.

The estimate counts what a diffusers UNet2DConditionModel and AutoencoderKL hold at once under inference
mode: the UNet's skip connections plus the working set of its widest level (resnets and transformer
blocks with GEGLU feed-forwards; attention through fused scaled_dot_product_attention kernels, which never
materialise the n x n maps), the sampler's state, and the VAE decoder at full resolution, which is usually
the peak. Calibrated on small SD-shaped models (two and four levels, 256 to 1280 px, CPU) against the measured
peak RSS, which it matches within 30%; MARGIN covers what it leaves out.

Pixel models (diffusers UNet2DModel, the layout of Ho et al. 2020 and Dhariwal & Nichol 2021) have no VAE: their
peak is the UNet at full image resolution, where the widest working set sits (resnets on the first level's
channels, and in the up path the concatenated skip). Their attention runs through the same fused kernels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch

from artdiff.errors import UserError

MARGIN = 1.25  # allocator fragmentation, kernel workspaces, the framework's own buffers
GRANULARITY = 64  # suggested sizes are multiples of 64 px, which every latent model accepts
UNET_WORKING = 32  # live (B, C, h, w)-sized tensors in one transformer block (norm, q/k/v/out, an 8C GEGLU), measured
OVERHEAD = 128 * 2**20  # first-use workspaces of the kernels and allocator arenas, measured on tiny models
DECODER_WORKING = 3  # live tensors per channel of a decoder resnet: input, its group norm, its activation
# live (B, C, h, w)-sized tensors at a UNet2DModel level (resnets, the up path's concatenated skip); measured peak
# RSS of both OpenAI layouts (conv and resnet resampling, scale-shift on and off) at 128 and 256 px gave 16 to 24
PIXEL_WORKING = 24
PIXEL_STATE = 12  # (B, 3, H, W) tensors a pixel sampler holds: x, noise, eps and variance (6), x0, mean, init, copies


def _ints(value, default: int) -> list[int]:
    if value is None:
        return [default]
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def unet_peak_bytes(config: Mapping, *, batch: int, height: int, width: int, dtype_bytes: int,
                    attention_maps: bool = False) -> int:
    """Activations of one UNet forward on (batch, C, height, width) latents: skips held plus the widest working set.

    attention_maps: count the (heads, n, n) score matrices, for attention without a fused kernel.
    """
    channels = _ints(config["block_out_channels"], 320)
    layers = max(_ints(config.get("layers_per_block"), 2))
    heads = max(_ints(config.get("num_attention_heads") or config.get("attention_head_dim"), 8))
    skips = channels[0] * height * width  # conv_in's output, held until the last up block
    working = 0
    for level, width_c in enumerate(channels):
        n = math.ceil(height / 2**level) * math.ceil(width / 2**level)
        skips += (layers + 1) * width_c * n  # each resnet's output and the downsampler's
        level_working = UNET_WORKING * width_c * n
        if attention_maps:
            level_working += 2 * heads * n * n  # scores and their softmax
        working = max(working, level_working)
    return batch * dtype_bytes * (skips + working)


def vae_decode_peak_bytes(config: Mapping, *, height: int, width: int, dtype_bytes: int,
                          tile: int | None = None) -> int:
    """One image through the decoder (Rombach et al. 2022's kl-f8 layout), whole or in tiles of `tile` px."""
    channels = list(reversed(_ints(config["block_out_channels"], 128)))  # the decoder runs deepest first
    if tile is not None and max(height, width) > tile:
        # diffusers' tiled_decode keeps every decoded tile (overlap 1/4, so (4/3)^2 of the image) and blends
        # them into rows and then the result: about three images' worth beside one tile's decode.
        return vae_decode_peak_bytes(config, height=tile, width=tile, dtype_bytes=dtype_bytes) + \
            3 * 3 * height * width * dtype_bytes
    levels, peak = len(channels), 0
    for i, c_out in enumerate(channels):
        c_in = channels[max(i - 1, 0)]  # a level's first resnet still sees the previous level's width
        n = math.ceil(height / 2 ** (levels - 1 - i)) * math.ceil(width / 2 ** (levels - 1 - i))
        peak = max(peak, DECODER_WORKING * (c_in + c_out) * n)
    return dtype_bytes * peak


def generation_peak_bytes(unet_config: Mapping, vae_config: Mapping, *, batch: int, copies: int, height: int,
                          width: int, factor: int, dtype_bytes: int, kept_images: int | None = None,
                          tile_threshold: int | None = None) -> int:
    """Peak bytes of sampling `batch` images of height x width px and decoding them one at a time.

    copies: conditions evaluated per image in one forward (2 for CFG's [negative, prompt]); kept_images:
    decoded images held until the call returns (default: the batch), as float32 (3, H, W).
    """
    h, w = math.ceil(height / factor), math.ceil(width / factor)
    latent = int(unet_config.get("in_channels", 4)) * h * w * dtype_bytes
    state = (8 + 2 * copies) * batch * latent  # x, noise, denoised, multistep history, the batched CFG input
    unet = unet_peak_bytes(unet_config, batch=batch * copies, height=h, width=w, dtype_bytes=dtype_bytes)
    tiled = tile_threshold is not None and max(height, width) > tile_threshold
    tile = int(vae_config.get("sample_size") or 512) if tiled else None
    decode = vae_decode_peak_bytes(vae_config, height=height, width=width, dtype_bytes=dtype_bytes, tile=tile)
    post = 3 * 3 * height * width * 4  # to float32, shift and clamp: three full-size copies of one image
    kept = (batch if kept_images is None else kept_images) * 3 * height * width * 4
    return OVERHEAD + max(state + unet, batch * latent + decode + post) + kept


def pixel_unet_peak_bytes(config: Mapping, *, batch: int, height: int, width: int, dtype_bytes: int,
                          attention_maps: bool = False) -> int:
    """Activations of one UNet2DModel forward on (batch, 3, height, width) pixels: skips held plus the widest level.

    attention_maps: count the (heads, n, n) score matrices at the attention levels, for attention without a
    fused kernel.
    """
    channels = _ints(config["block_out_channels"], 128)
    layers = max(_ints(config.get("layers_per_block"), 2))
    head_dim = config.get("attention_head_dim")
    attends = ["Attn" in str(kind) for kind in config.get("down_block_types") or ()] + [False] * len(channels)
    skips = channels[0] * height * width  # conv_in's output, held until the last up block
    working = 0
    for level, width_c in enumerate(channels):
        n = math.ceil(height / 2**level) * math.ceil(width / 2**level)
        skips += (layers + 1) * width_c * n  # each resnet's output and the downsampler's
        level_working = PIXEL_WORKING * width_c * n
        deepest = level == len(channels) - 1  # the middle block attends at the lowest resolution
        if attention_maps and (attends[level] or deepest):
            heads = max(1, width_c // int(head_dim)) if head_dim else 1
            level_working += 2 * heads * n * n  # scores and their softmax
        working = max(working, level_working)
    return batch * dtype_bytes * (skips + working)


def pixel_sampling_peak_bytes(unet_config: Mapping, *, batch: int, height: int, width: int, dtype_bytes: int,
                              kept_images: int | None = None) -> int:
    """Peak bytes of sampling `batch` pixel images of height x width px with a UNet2DModel.

    kept_images: images held as float32 (3, H, W) until the call returns (default: the batch).
    """
    pixels = int(unet_config.get("in_channels", 3)) * height * width * dtype_bytes
    state = PIXEL_STATE * batch * pixels
    unet = pixel_unet_peak_bytes(unet_config, batch=batch, height=height, width=width, dtype_bytes=dtype_bytes)
    kept = (batch if kept_images is None else kept_images) * 3 * height * width * 4
    return OVERHEAD + state + unet + kept


def available_bytes(device: torch.device | str) -> int | None:
    """Memory a new allocation can use on the device; None when it cannot be told (then nothing is refused)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        # blocks torch's caching allocator holds but no tensor uses are free to it as well
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type == "cpu":
        return _cpu_available()
    return None


def _cpu_available() -> int | None:
    """The smaller of the system's MemAvailable and what the cgroup (a container's limit) still allows."""
    found = []
    meminfo = _read(Path("/proc/meminfo"))
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            found.append(int(line.split()[1]) * 1024)
    if not found:
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            pass
    cgroup = _cgroup_room()
    if cgroup is not None:
        found.append(cgroup)
    return min(found) if found else None


def _cgroup_room() -> int | None:
    """limit - usage of this process's memory cgroup (v2, else v1), page cache counted as free; None if unlimited."""
    for limit_file, usage_file, stat_file, key in (
            ("memory.max", "memory.current", "memory.stat", "inactive_file"),
            ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
             "total_inactive_file")):
        root = Path("/sys/fs/cgroup")
        limit, usage = _read(root / limit_file), _read(root / usage_file)
        if limit is None or usage is None:
            continue
        if not limit.strip().isdigit() or int(limit) >= 2**60:  # "max", or v1's "unlimited" sentinel
            return None
        cache = 0
        for line in (_read(root / stat_file) or "").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                cache = int(value)
        return max(0, int(limit) - int(usage) + cache)
    return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def check_generation_fits(unet_config: Mapping, vae_config: Mapping, *, device: torch.device | str, batch: int,
                          copies: int, height: int, width: int, factor: int, dtype_bytes: int,
                          kept_images: int | None = None, tile_threshold: int | None = None) -> None:
    """Refuse a request whose estimated peak exceeds the device's free memory, naming the largest size and batch that fit."""

    def need(b: int, h: int, w: int) -> float:
        kept = None if kept_images is None else max(kept_images, b)
        return MARGIN * generation_peak_bytes(unet_config, vae_config, batch=b, copies=copies, height=h, width=w,
                                              factor=factor, dtype_bytes=dtype_bytes, kept_images=kept,
                                              tile_threshold=tile_threshold)

    _refuse_what_cannot_fit(need, device=device, batch=batch, height=height, width=width)


def check_pixel_sampling_fits(unet_config: Mapping, *, device: torch.device | str, batch: int, height: int,
                              width: int, dtype_bytes: int, kept_images: int | None = None) -> None:
    """Refuse a pixel-model request whose estimated peak exceeds free memory, naming the largest size and batch that fit."""

    def need(b: int, h: int, w: int) -> float:
        kept = None if kept_images is None else max(kept_images, b)
        return MARGIN * pixel_sampling_peak_bytes(unet_config, batch=b, height=h, width=w, dtype_bytes=dtype_bytes,
                                                  kept_images=kept)

    _refuse_what_cannot_fit(need, device=device, batch=batch, height=height, width=width)


def _refuse_what_cannot_fit(need, *, device: torch.device | str, batch: int, height: int, width: int) -> None:
    """Raise UserError when need(batch, height, width) bytes exceed the free memory, with the largest fitting request."""
    available = available_bytes(device)
    if available is None:
        return
    required = need(batch, height, width)
    if required <= available:
        return
    device_name = torch.device(device).type
    images = f"{batch} images of {width}x{height} need" if batch > 1 else f"an image of {width}x{height} needs"
    message = (f"{images} about {_size(required)} of memory "
               f"but the {device_name} has {_size(available)} free")
    fitting_batch = _largest(lambda b: need(b, height, width) <= available, batch - 1)
    if fitting_batch:
        raise UserError(f"{message}; generate at most {fitting_batch} at a time (--batch-size {fitting_batch}) "
                        "or use a smaller --size")
    long_side, short_side = max(height, width), min(height, width)

    def sides(k: int) -> tuple[int, int]:
        long = k * GRANULARITY
        short = max(GRANULARITY, short_side * long // long_side // GRANULARITY * GRANULARITY)
        return (long, short) if height >= width else (short, long)

    k = _largest(lambda k: need(1, *sides(k)) <= available, long_side // GRANULARITY)
    if not k:
        raise UserError(f"{message}; not even {GRANULARITY}x{GRANULARITY} fits: free memory, or use a smaller model "
                        "or half precision")
    h, w = sides(k)
    option = f"--size {w}" if w == h else f"--width {w} --height {h}"
    at_one = " at --batch-size 1" if batch > 1 else ""
    raise UserError(f"{message}; the largest size that fits is {w}x{h}{at_one} ({option})")


def _largest(fits, upper: int) -> int:
    """The largest k in [1, upper] with fits(k), for a fits that is true up to some k and false after; 0 if none."""
    low, high = 0, max(upper, 0)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"
