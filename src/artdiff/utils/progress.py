"""Progress bars: the one place that imports tqdm."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def _shown(enabled: bool) -> bool:
    return enabled and sys.stderr.isatty()


def progress(items: Iterable[T], *, total: int | None = None, desc: str = "", enabled: bool = True,
             unit: str = "img") -> Iterator[T]:
    """Wrap an iterable in a progress bar on stderr, shown only when enabled and stderr is a terminal.

    `unit` names what one item is ("img", "step", "file"), so the rate reads as what it counts.
    """
    if not _shown(enabled):
        yield from items
        return
    from tqdm import tqdm

    yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)


class ProgressBar:
    """A manually advanced bar with a live status (loss, image j of n); silent when stderr is not a terminal."""

    def __init__(self, *, total: int | None, desc: str = "", unit: str = "step", enabled: bool = True) -> None:
        self._bar = None
        if _shown(enabled):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)

    def update(self, n: int = 1) -> None:
        """Advance by n items."""
        if self._bar is not None:
            self._bar.update(n)

    def status(self, **values: Any) -> None:
        """Show key=value pairs after the bar (e.g. loss=0.123); floats are shown to 4 significant digits."""
        if self._bar is not None:
            shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}
            self._bar.set_postfix(shown, refresh=False)

    def describe(self, desc: str) -> None:
        """Replace the text before the bar (e.g. "image 3/8")."""
        if self._bar is not None:
            self._bar.set_description_str(desc, refresh=False)

    def reset(self, total: int | None = None) -> None:
        """Start again at zero, e.g. for the next image's steps."""
        if self._bar is not None:
            self._bar.reset(total=total)

    def close(self) -> None:
        """Remove the bar from the terminal."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
