"""Where the models shipped inside the package live (src/artdiff/assets/)."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
SHIPPED_JUDGE = ASSETS / "judge"
SHIPPED_ENCODER = ASSETS / "cloob-mini"
SHIPPED_MODEL = ASSETS / "artdiff-mini"
SHIPPED_PIXEL_MODEL = ASSETS / "artdiff-pixel-mini"  # the unconditional 64 px pixel model (issue 13)


def shipped(path: Path, what: str) -> Path:
    """A shipped asset's folder, or a clear error if this install lacks it."""
    from artdiff.errors import UserError

    if not path.is_dir():
        raise UserError(f"the shipped {what} is missing from this install ({path}); reinstall artdiff "
                        f"or pass a folder of your own")
    return path
