"""Find the image files under a folder without trusting it: hidden entries skipped, odd names and folders reported."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from artdiff.utils.images import is_image_path

# Files beside the images that are read as captions or metadata, so not counted as ignored.
COMPANION_SUFFIXES = (".txt", ".caption", ".csv", ".tsv", ".jsonl", ".json", ".md")
BAD_NAME_FIX = "is not valid UTF-8; rename it to UTF-8 (e.g. with `convmv -f latin1 -t utf8`)"


@dataclass
class SourceListing:
    """What a walk of a folder found."""

    keys: list[str] = field(default_factory=list)  # image files, relative to the folder, "/"-separated
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (shown path, reason, detail)
    ignored: int = 0  # other files that are neither images nor caption/metadata files


def list_images(folder: Path, *, exclude: Path | None = None) -> SourceListing:
    """Image files under `folder` (hidden entries and `exclude` left out); links to folders are followed once."""
    folder = Path(folder)
    listing = SourceListing()
    seen = {_identity(folder)}  # a link back up the tree is walked once, not forever
    if exclude is not None and exclude.exists():
        seen.add(_identity(exclude))

    def unlistable(error: OSError) -> None:
        shown = _shown(Path(error.filename or folder), folder)
        listing.skipped.append((shown, "unreadable", f"folder cannot be listed: {error.strerror or error}"))

    for top, dirs, files in os.walk(folder, onerror=unlistable, followlinks=True):
        base = Path(top)
        dirs[:] = [d for d in dirs if _keep_folder(base / d, folder, seen, listing)]
        for name in files:
            path = base / name
            if name.startswith("."):
                continue
            if not is_image_path(path):
                if path.suffix.lower() not in COMPANION_SUFFIXES:
                    listing.ignored += 1
                continue
            key = path.relative_to(folder).as_posix()
            if _is_utf8(key):
                listing.keys.append(key)
            else:
                listing.skipped.append((_shown(path, folder), "bad-name", f"the file name {BAD_NAME_FIX}"))
    listing.keys.sort(key=lambda key: key.split("/"))  # by path parts, as sorted(rglob) ordered them: dedup keeps the first
    listing.skipped.sort()
    return listing


def _keep_folder(path: Path, root: Path, seen: set, listing: SourceListing) -> bool:
    """Whether to walk into a subfolder: not hidden, UTF-8 named, and not visited already (a link loop)."""
    if path.name.startswith("."):
        return False
    if not _is_utf8(path.name):
        listing.skipped.append((_shown(path, root), "bad-name", f"the folder name {BAD_NAME_FIX}"))
        return False
    try:
        identity = _identity(path)
    except OSError:
        return True  # os.walk reports the folder through onerror when it cannot list it
    if identity in seen:
        return False
    seen.add(identity)
    return True


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _is_utf8(text: str) -> bool:
    # Bytes that are not UTF-8 come back from the OS as lone surrogates, which cannot be written as UTF-8 JSON.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(path: Path, root: Path) -> str:
    """A path relative to the folder, printable and storable in UTF-8 (undecodable bytes shown as \\xNN)."""
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:
        relative = path.as_posix()
    return os.fsencode(relative).decode("utf-8", "backslashreplace")
