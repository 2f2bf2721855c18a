"""Crop geometry: centre and focal windows, letterbox padding, aspect-ratio buckets, and overlapping tiles."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

Box = tuple[int, int, int, int]  # (left, top, right, bottom) in source pixels


def window_size(width: int, height: int, aspect: float) -> tuple[int, int]:
    """Largest window of `aspect` (width / height) that fits inside width x height."""
    if width / height > aspect:
        return max(1, round(height * aspect)), height
    return width, max(1, round(width / aspect))


def center_box(width: int, height: int, aspect: float) -> Box:
    """Centre window of the given aspect, as large as fits."""
    w, h = window_size(width, height, aspect)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def pad_layout(width: int, height: int, target: tuple[int, int]) -> Box:
    """Where an image scaled to fit inside `target` sits in the letterbox (left, top, right, bottom)."""
    scale = min(target[0] / width, target[1] / height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    left, top = (target[0] - w) // 2, (target[1] - h) // 2
    return left, top, left + w, top + h


# ---- focal crop -------------------------------------------------------------------------------------

# Weights of the three saliency cues, in the spirit of A1111's focal-point crop (edges, entropy);
# colour contrast stands in for its face detector, which needs a model we do not ship.
FOCAL_WEIGHTS = {"edges": 0.5, "entropy": 0.3, "colour": 0.2}
FOCAL_ANALYSIS_SIDE = 256  # saliency is computed on a copy this size: the window does not need more


def saliency_map(image: Image.Image) -> np.ndarray:
    """Per-pixel interest in [0, 1] from edge strength, local entropy and colour contrast."""
    small = image.copy()
    small.thumbnail((FOCAL_ANALYSIS_SIDE, FOCAL_ANALYSIS_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float32) / 255.0  # (H, W, 3)
    luma = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    cues = {"edges": _edges(luma), "entropy": _local_entropy(luma), "colour": _colour_contrast(rgb)}
    total = sum(FOCAL_WEIGHTS[name] * _normalise(cue) for name, cue in cues.items())
    return _normalise(total)


def _normalise(x: np.ndarray) -> np.ndarray:
    span = float(x.max() - x.min())
    return (x - x.min()) / span if span > 1e-8 else np.zeros_like(x)


def _edges(luma: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude."""
    p = np.pad(luma, 1, mode="edge")
    gx = (p[:-2, 2:] + 2 * p[1:-1, 2:] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[1:-1, :-2] + p[2:, :-2])
    gy = (p[2:, :-2] + 2 * p[2:, 1:-1] + p[2:, 2:]) - (p[:-2, :-2] + 2 * p[:-2, 1:-1] + p[:-2, 2:])
    return np.hypot(gx, gy)


def _local_entropy(luma: np.ndarray, block: int = 8, levels: int = 16) -> np.ndarray:
    """Shannon entropy of the grey levels in each block, spread back to pixels."""
    h, w = luma.shape
    hb, wb = max(1, h // block), max(1, w // block)
    q = np.minimum((luma[: hb * block, : wb * block] * levels).astype(np.int64), levels - 1)
    blocks = q.reshape(hb, block, wb, block).transpose(0, 2, 1, 3).reshape(hb, wb, -1)
    counts = np.stack([(blocks == level).sum(-1) for level in range(levels)], -1).astype(np.float32)
    p = counts / counts.sum(-1, keepdims=True)
    entropy = -(p * np.log2(np.where(p > 0, p, 1.0))).sum(-1)  # (hb, wb)
    full = np.kron(entropy, np.ones((block, block), dtype=np.float32))
    return np.pad(full, ((0, h - full.shape[0]), (0, w - full.shape[1])), mode="edge")


def _colour_contrast(rgb: np.ndarray) -> np.ndarray:
    """Distance of each pixel's colour from the image's mean colour."""
    return np.linalg.norm(rgb - rgb.reshape(-1, 3).mean(0), axis=-1)


def focal_box(image: Image.Image, aspect: float) -> Box:
    """The window of `aspect`, as large as fits, that holds the most saliency (ties go to the centre)."""
    width, height = image.size
    w, h = window_size(width, height, aspect)
    if (w, h) == (width, height):
        return 0, 0, width, height
    saliency = saliency_map(image)
    horizontal = w < width
    profile = saliency.sum(axis=0 if horizontal else 1)  # interest along the free axis
    n = profile.shape[0]
    span = max(1, round(n * (w / width if horizontal else h / height)))
    sums = np.convolve(profile, np.ones(span), mode="valid")  # saliency of each window position
    # A gentle pull to the centre so that a flat image crops like `center`.
    offsets = np.arange(sums.shape[0])
    centre = (sums.shape[0] - 1) / 2
    scale = sums.max() if sums.max() > 0 else 1.0
    sums = sums - 0.02 * scale * np.abs(offsets - centre) / max(centre, 1)
    start = int(np.argmax(sums)) / n
    if horizontal:
        left = min(width - w, round(start * width))
        return left, 0, left + w, h
    top = min(height - h, round(start * height))
    return 0, top, w, top + h


def focal_debug_image(image: Image.Image, box: Box) -> Image.Image:
    """The image with its saliency as a red overlay and the chosen window outlined."""
    saliency = saliency_map(image)
    heat = Image.fromarray((saliency * 255).astype(np.uint8), mode="L").resize(image.size)
    red = Image.new("RGB", image.size, (255, 0, 0))
    shown = Image.composite(red, image.convert("RGB"), heat.point(lambda v: v * 0.6))
    draw = ImageDraw.Draw(shown)
    thickness = max(2, min(image.size) // 100)
    draw.rectangle(box, outline=(0, 255, 0), width=thickness)
    return shown


# ---- aspect-ratio buckets ---------------------------------------------------------------------------


def make_buckets(area: int, *, step: int = 64, max_ratio: float = 2.0, min_fill: float = 0.75) -> list[tuple[int, int]]:
    """Resolutions of min_fill*area to area pixels, sides multiples of `step`, aspect within 1/max_ratio..max_ratio."""
    buckets = []
    for width in range(step, area // step + 1, step):
        for height in range(step, area // width + 1, step):
            ratio = max(width, height) / min(width, height)
            if width * height >= min_fill * area and ratio <= max_ratio + 1e-9:
                buckets.append((width, height))
    if not buckets:
        raise ValueError(f"no bucket of about {area} pixels with sides a multiple of {step}; lower --bucket-step")
    return buckets


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest (in log space) to the image's; larger area wins ties."""
    log_aspect = math.log(width / height)
    return min(buckets, key=lambda b: (round(abs(math.log(b[0] / b[1]) - log_aspect), 9), -b[0] * b[1]))


# ---- tiles ------------------------------------------------------------------------------------------


def tile_boxes(width: int, height: int, tile: tuple[int, int], overlap: float) -> list[Box]:
    """Overlapping tile windows covering the whole image, evenly spaced, edges included."""

    def starts(length: int, size: int) -> list[int]:
        if length <= size:
            return [0]
        stride = size * (1.0 - overlap)
        count = math.ceil((length - size) / stride) + 1
        return [round(i * (length - size) / (count - 1)) for i in range(count)]

    tw, th = tile
    return [(x, y, x + tw, y + th) for y in starts(height, th) for x in starts(width, tw)]
