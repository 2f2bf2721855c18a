"""Errors a user can fix: the command line prints them as one line, without a traceback."""

from __future__ import annotations

from collections.abc import Sequence

# What usually turns a sample into NaN or infinity, named so a user knows where to look.
USUAL_SUSPECTS = ("the guidance scale (--cfg)", "prompt weights", "LoRA scales or weights", "embedding files",
                  "the scheduler config (betas)")


class UserError(Exception):
    """A mistake in the user's input (a path, an option, a file's format) with a message saying how to fix it."""


class NonFiniteError(UserError):
    """Sampling or decoding gave NaN, infinite or exploding values; the message names the likely causes."""

    def __init__(self, where: str, hints: Sequence[str] = ()) -> None:
        self.where = where  # e.g. "sampling, at step 3 of 20 (sigma 4.2)"
        self.hints = list(hints)  # the caller's likely causes, most likely first, e.g. "--cfg 1e30"
        others = [s for s in USUAL_SUSPECTS if s not in self.hints]
        causes = f"likely cause: {'; '.join(self.hints)}; other usual suspects: " if self.hints else "check "
        super().__init__(f"stopped: {where} gave NaN, infinite or runaway values; {causes}{', '.join(others)}")

    def with_hints(self, hints: Sequence[str]) -> NonFiniteError:
        """The same error with more likely causes put first (a caller knows which of its inputs were unusual)."""
        extra = [h for h in hints if h not in self.hints]
        return NonFiniteError(self.where, [*extra, *self.hints])


def first_line(error: BaseException, *, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), cut to `limit` characters."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
