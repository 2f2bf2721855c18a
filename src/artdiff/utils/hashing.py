"""A model's short hash for infotext: cheap even for multi-GB weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

HEAD_BYTES = 1 << 20


def weights_hash(paths: list[Path]) -> str:
    """sha256 over each file's name, size and first MiB (10 hex digits, A1111's length); reading GBs per run is not."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(HEAD_BYTES))
    return digest.hexdigest()[:10]
