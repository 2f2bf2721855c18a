"""Precomputed per-image features (VAE latents, encoder embeddings) cached beside the dataset.

The cache file is named by a fingerprint of everything that determines its contents: the manifest,
the preprocessing contract, and the identity of the encoder and VAE (a hash of their weight files). Any
change gives a new fingerprint, so a stale cache is never read. Compute functions are callables, so this
layer never imports a model class.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from artdiff.data.manifest import MANIFEST_NAME
from artdiff.utils.io import atomic_path
from artdiff.utils.progress import progress

CACHE_DIR = ".cache"


def fingerprint_files(paths: list[Path]) -> str:
    """sha256 over the contents of files (weights, configs), in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def fingerprint_folder(folder: Path) -> str:
    """Fingerprint of a model folder: its weight and config files."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix in (".safetensors", ".json", ".txt"))
    return fingerprint_files(files)


def cache_key(dataset_dir: Path, identity: dict[str, Any]) -> str:
    """Fingerprint of the dataset's manifest plus what the features depend on."""
    manifest = hashlib.sha256((Path(dataset_dir) / MANIFEST_NAME).read_bytes()).hexdigest()
    text = json.dumps({"manifest": manifest, **identity}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def cached_features(dataset_dir: Path, identity: dict[str, Any], compute: Callable[[list[int]], dict[str, torch.Tensor]],
                    count: int, *, batch_size: int = 64, cache_dir: Path | None = None,
                    show_progress: bool = True) -> dict[str, torch.Tensor]:
    """Features of every image, computed in batches by `compute(indices)` once and then read from the cache."""
    folder = Path(cache_dir) if cache_dir is not None else _default_dir(Path(dataset_dir))
    path = folder / f"features-{cache_key(dataset_dir, identity)}.safetensors"
    if path.is_file():
        features = _read_cache(path, count)
        if features is not None:
            return features
    parts: dict[str, list[torch.Tensor]] = {}
    starts = range(0, count, batch_size)
    for start in progress(starts, total=len(starts), desc="cache", enabled=show_progress):
        for name, value in compute(list(range(start, min(start + batch_size, count)))).items():
            parts.setdefault(name, []).append(value.detach().cpu())
    features = {name: torch.cat(values).contiguous() for name, values in parts.items()}
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(features, str(tmp), metadata={"identity": json.dumps(identity, sort_keys=True, default=str)})
    return features


def _read_cache(path: Path, count: int) -> dict[str, torch.Tensor] | None:
    """The cached features, or None (after one line on stderr) when the file is damaged and must be rebuilt."""
    try:
        features = load_file(str(path))
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:100]
    else:
        if (features or count == 0) and all(len(value) == count for value in features.values()):
            return features
        reason = f"it does not hold one row per image ({count})"
    print(f"artdiff: feature cache {path} is damaged ({reason}); rebuilding it", file=sys.stderr)
    return None


def _default_dir(dataset_dir: Path) -> Path:
    """The dataset's own .cache folder, or a per-user one when the dataset is read-only."""
    if os.access(dataset_dir, os.W_OK):
        return dataset_dir / CACHE_DIR
    digest = hashlib.sha256(str(dataset_dir.resolve()).encode()).hexdigest()[:16]
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "artdiff" / digest
