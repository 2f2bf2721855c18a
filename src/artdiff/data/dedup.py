"""Exact (content hash) and near (perceptual DCT hash, Hamming distance) duplicate detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_SIDE = 32  # pHash: DCT of a 32x32 greyscale copy, keep the 8x8 lowest frequencies
_N = np.arange(HASH_SIDE)
_DCT = np.cos(np.pi * (2 * _N[None, :] + 1) * _N[:, None] / (2 * HASH_SIDE))  # (k, n) DCT-II basis


def perceptual_hash(image: Image.Image) -> int:
    """64-bit pHash: signs of the 8x8 low DCT coefficients against their median (Zauner 2010)."""
    grey = np.asarray(image.convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), dtype=np.float64)
    coefficients = (_DCT @ grey @ _DCT.T)[:8, :8].ravel()
    bits = coefficients > np.median(coefficients[1:])  # the DC term would dominate the median
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


@dataclass(frozen=True)
class Candidate:
    """One decodable source image, as duplicate detection sees it."""

    key: str  # relative path
    sha256: str
    phash: int
    pixels: int


@dataclass(frozen=True)
class Duplicate:
    """A dropped image and the kept one it copies."""

    key: str
    duplicate_of: str
    kind: str  # "exact" or "near"
    distance: int


def find_duplicates(candidates: list[Candidate], *, near_threshold: int | None) -> list[Duplicate]:
    """Pick one image per group of copies: the largest, then the first by path; return the others."""
    order = sorted(candidates, key=lambda c: (-c.pixels, c.key))
    duplicates: list[Duplicate] = []
    kept_by_sha: dict[str, str] = {}
    kept_keys: list[str] = []
    kept_hashes = np.zeros(len(order), dtype=np.uint64)  # the first len(kept_keys) are in use
    for candidate in order:
        if candidate.sha256 in kept_by_sha:
            duplicates.append(Duplicate(candidate.key, kept_by_sha[candidate.sha256], "exact", 0))
            continue
        if near_threshold is not None and kept_keys:
            distances = _popcount(kept_hashes[: len(kept_keys)] ^ np.uint64(candidate.phash))
            nearest = int(np.argmin(distances))
            if distances[nearest] <= near_threshold:
                duplicates.append(Duplicate(candidate.key, kept_keys[nearest], "near", int(distances[nearest])))
                continue
        kept_by_sha[candidate.sha256] = candidate.key
        kept_hashes[len(kept_keys)] = np.uint64(candidate.phash)
        kept_keys.append(candidate.key)
    return sorted(duplicates, key=lambda d: d.key)


def _popcount(values: np.ndarray) -> np.ndarray:
    """Bits set in each uint64."""
    as_bytes = values.view(np.uint8).reshape(-1, 8)
    return np.unpackbits(as_bytes, axis=1).sum(axis=1)
