"""A1111's learning-rate schedule strings: "0.005:100, 1e-3:1000, 1e-5".

Semantics of AUTOMATIC1111 stable-diffusion-webui `modules/textual_inversion/learn_schedule.py`
(LearnScheduleIterator + LearnRateScheduler): comma-separated entries RATE:STEP train at RATE while
fewer than STEP optimizer steps are done (spaces around RATE and STEP and one trailing comma are fine); a bare RATE (or RATE:-1) holds to the end of training. When
the last entry has a STEP, training stops there. Entries after the open-ended one are unreachable in
A1111 and silently dropped; here they, like steps that do not increase (which A1111 walks through one
entry per step) and steps A1111 skips (0 and negatives other than -1), are one-line errors instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EXAMPLE = "'0.005:100, 1e-3:1000, 1e-5'"


@dataclass(frozen=True)
class LearnRateSchedule:
    """Piecewise-constant rates: pieces[i] = (rate, until) with `until` None for the open-ended last piece."""

    pieces: tuple[tuple[float, int | None], ...]

    @property
    def end_step(self) -> int | None:
        """The step at which A1111 stops training (the last entry's STEP), or None when it runs to max steps."""
        return self.pieces[-1][1]

    @property
    def peak(self) -> float:
        """The largest rate in the schedule."""
        return max(rate for rate, _ in self.pieces)

    def rate_at(self, step: int) -> float:
        """The rate of the update made after `step` optimizer steps (A1111's `scheduler.apply(opt, step)`)."""
        for rate, until in self.pieces:
            if until is None or step < until:
                return rate
        return self.pieces[-1][0]  # past the end: A1111 keeps the last rate while it stops

    def __str__(self) -> str:
        return ", ".join(f"{rate:g}" if until is None else f"{rate:g}:{until}" for rate, until in self.pieces)


def parse_lr_schedule(text: str) -> LearnRateSchedule:
    """Parse an A1111 schedule string; a malformed one raises a one-line ValueError naming the entry."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"learning-rate schedule is empty; give a rate such as 0.005, or {EXAMPLE}")
    pieces: list[tuple[float, int | None]] = []
    entries = text.split(",")
    if len(entries) > 1 and not entries[-1].strip():
        entries.pop()  # one trailing comma, which A1111 accepts ("0.005:100, 1e-5,"): it stops reading before it
    for entry in entries:
        entry = entry.strip()
        piece = _parse_entry(entry, text)
        if pieces and pieces[-1][1] is None:
            raise ValueError(f"learning-rate schedule {text!r}: {entry!r} follows the open-ended rate "
                             f"{pieces[-1][0]:g}, so it would never be used; put the rate without a step last")
        pieces.append(piece)
        if len(pieces) > 1 and pieces[-1][1] is not None and pieces[-1][1] <= pieces[-2][1]:
            raise ValueError(f"learning-rate schedule {text!r}: step {pieces[-1][1]} does not come after step "
                             f"{pieces[-2][1]}; steps must increase, as in {EXAMPLE}")
    if max(rate for rate, _ in pieces) == 0:
        raise ValueError(f"learning-rate schedule {text!r}: every rate is 0, so nothing would train")
    return LearnRateSchedule(tuple(pieces))


def _parse_entry(entry: str, text: str) -> tuple[float, int | None]:
    """One RATE or RATE:STEP entry; STEP -1 means "to the end", as in A1111."""
    where = f"learning-rate schedule {text!r}"
    if not entry:
        raise ValueError(f"{where} has an empty entry; write RATE or RATE:STEP separated by commas, as in {EXAMPLE}")
    parts = entry.split(":")
    if len(parts) > 2:
        raise ValueError(f"{where}: {entry!r} should be RATE or RATE:STEP, as in {EXAMPLE}")
    try:
        rate = float(parts[0])
    except ValueError:
        raise ValueError(f"{where}: {parts[0].strip()!r} is not a number (entry {entry!r})") from None
    if not math.isfinite(rate) or rate < 0:
        raise ValueError(f"{where}: rate {parts[0].strip()} must be a finite number >= 0")
    if len(parts) == 1:
        return rate, None
    try:
        step = int(parts[1])
    except ValueError:
        raise ValueError(f"{where}: {parts[1].strip()!r} is not a whole step number (entry {entry!r})") from None
    if step == -1:
        return rate, None
    if step < 1:
        raise ValueError(f"{where}: step {step} in {entry!r} must be at least 1 (or -1 for 'to the end')")
    return rate, step
