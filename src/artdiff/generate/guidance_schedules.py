"""Per-step guidance schedules: a number, a 'start:end' ramp, or Disco Diffusion's list form '[12]*400+[4]*600'.

The list form is read by a small tokeniser and parser, never by eval: terms `[v1, v2, ...]*n` (the entries
repeated n times, as Python's list repetition does; a bare `[v]` is one repetition) joined by `+`.

Indexing a list (Disco's convention): Disco's lists have one entry per training timestep (1000) and are read at
`args.cut_overview[1000 - t_int]` with `t_int = t + 1` for the original timestep t, which counts down from 999
to 0; so entry index = num_timesteps - 1 - t, and t = 999 reads entry 0. '[12]*400+[4]*600' thus gives 12 for
timesteps 999..600 and 4 for 599..0. A list with one entry per sampling step is read by the step instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Literal

MAX_ENTRIES = 100_000  # a list longer than this is a typo ("[1]*10000000"), refused before it is built

_EXPECTED = "expected a number (5000), a ramp 'start:end' (12:4) or Disco's list form '[12]*400+[4]*600'"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_TOKEN = re.compile(rf"\s*(?:(?P<number>{_NUMBER})|(?P<op>[\[\],*+:]))", re.ASCII)


@dataclass(frozen=True)
class Schedule:
    """One guidance value over a run: a constant, a linear ramp over the steps, or a per-timestep/step list."""

    kind: Literal["constant", "ramp", "list"]
    values: tuple[float, ...]  # constant: (v,); ramp: (start, end); list: every entry
    integer: bool = False  # values are counts: at() rounds a ramp to the nearest integer and returns an int
    name: str = field(default="schedule", compare=False)  # the option it came from, for error messages
    text: str = field(default="", compare=False)  # what the user wrote, for the sidecar

    def __post_init__(self) -> None:
        sizes = {"constant": (1, 1), "ramp": (2, 2), "list": (1, MAX_ENTRIES)}
        if self.kind not in sizes:
            raise ValueError(f"a schedule is 'constant', 'ramp' or 'list', not {self.kind!r}")
        low, high = sizes[self.kind]
        if not low <= len(self.values) <= high:
            raise ValueError(f"a {self.kind} schedule needs {low}..{high} values, got {len(self.values)}")

    def at(self, step: int, *, steps: int, timestep: int | None = None, num_timesteps: int = 1000) -> float:
        """The value at sampling step `step` of `steps` (step 0 first), whose original timestep is `timestep`."""
        if not 0 <= step < steps:
            raise ValueError(f"{self.name}: step {step} is outside a run of {steps} steps")
        if self.kind == "constant":
            value = self.values[0]
        elif self.kind == "ramp":
            start, end = self.values
            value = start if steps == 1 else start + (end - start) * step / (steps - 1)
        else:
            value = self.values[
                self._list_index(step, steps=steps, timestep=timestep, num_timesteps=num_timesteps)
            ]
        return math.floor(value + 0.5) if self.integer else value

    def _list_index(self, step: int, *, steps: int, timestep: int | None, num_timesteps: int) -> int:
        n = len(self.values)
        if n == num_timesteps and timestep is not None:
            if not 0 <= timestep < num_timesteps:
                raise ValueError(f"{self.name}: timestep {timestep} is outside 0..{num_timesteps - 1}")
            return num_timesteps - 1 - timestep  # Disco: t = 999 reads entry 0
        if n == steps:
            return step
        if n == num_timesteps:
            raise ValueError(f"{self.name} has one entry per timestep; pass the step's timestep to read it")
        raise ValueError(_length_message(self.name, n, steps=steps, num_timesteps=num_timesteps))


def _length_message(name: str, n: int, *, steps: int, num_timesteps: int) -> str:
    return f"{name} has {n} entries; give {num_timesteps} (one per timestep, Disco's form) or {steps} (one per step)"


def validate(schedule: Schedule, *, name: str, steps: int, num_timesteps: int = 1000) -> None:
    """Check a list schedule's length against the run before sampling starts."""
    if schedule.kind == "list" and len(schedule.values) not in (num_timesteps, steps):
        raise ValueError(
            _length_message(name, len(schedule.values), steps=steps, num_timesteps=num_timesteps)
        )


def _flag(name: str) -> str:
    return name if name.startswith("-") else "--" + name.replace("_", "-")


def _tokens(text: str, where: str) -> list[str]:
    """Split text into numbers and the operators [ ] , * + : ; anything else is a parse error."""
    tokens, pos, end = [], 0, len(text.rstrip())
    while pos < end:
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(f"{where}: {_EXPECTED}; cannot read {text[pos:].strip()[:12]!r}")
        tokens.append(match.group("number") or match.group("op"))
        pos = match.end()
    return tokens


def _is_number(token: str) -> bool:
    return re.fullmatch(_NUMBER, token, re.ASCII) is not None


def _parse_list(tokens: list[str], where: str) -> list[float]:
    """Expand `[v, ...]*n + ...`, checking every repeat count before anything is built."""
    entries: list[float] = []
    i = 0
    while True:
        if tokens[i : i + 1] != ["["]:
            raise ValueError(f"{where}: {_EXPECTED}; a list term starts with '['")
        i += 1
        term: list[float] = []
        while True:
            if i >= len(tokens) or not _is_number(tokens[i]):
                raise ValueError(f"{where}: {_EXPECTED}; a list holds numbers separated by ','")
            term.append(float(tokens[i]))
            i += 1
            if tokens[i : i + 1] == [","]:
                i += 1
            elif tokens[i : i + 1] == ["]"]:
                i += 1
                break
            else:
                raise ValueError(f"{where}: {_EXPECTED}; close each list with ']'")
        repeat = 1
        if tokens[i : i + 1] == ["*"]:
            count = tokens[i + 1] if i + 1 < len(tokens) else ""
            if not (count.isascii() and count.isdigit()):
                raise ValueError(f"{where}: {_EXPECTED}; repeat a list by a whole number, as in '[4]*600'")
            # Compare digit counts first, so a thousand-digit count is never even converted.
            repeat = int(count) if len(count) <= 7 else MAX_ENTRIES + 1
            i += 2
        if len(entries) + len(term) * repeat > MAX_ENTRIES:
            raise ValueError(
                f"{where}: the list has over {MAX_ENTRIES:,} entries; give one per timestep or step"
            )
        entries.extend(term * repeat)
        if i == len(tokens):
            break
        if tokens[i] != "+":
            raise ValueError(f"{where}: {_EXPECTED}; join list terms with '+'")
        i += 1
    if not entries:
        raise ValueError(f"{where}: the list has no entries; give at least one value")
    return entries


def _parse_text(text: str, where: str) -> tuple[Literal["constant", "ramp", "list"], list[float]]:
    tokens = _tokens(text, where)
    if not tokens:
        raise ValueError(f"{where}: {_EXPECTED}")
    if tokens[0] == "[":
        return "list", _parse_list(tokens, where)
    if len(tokens) == 1 and _is_number(tokens[0]):
        return "constant", [float(tokens[0])]
    if len(tokens) == 3 and tokens[1] == ":" and _is_number(tokens[0]) and _is_number(tokens[2]):
        return "ramp", [float(tokens[0]), float(tokens[2])]
    raise ValueError(f"{where}: {_EXPECTED}")


def parse_schedule(
    text_or_number: str | float,
    *,
    name: str,
    integer: bool = False,
    minimum: float | None = None,
) -> Schedule:
    """Parse a schedule option; raise a one-line ValueError naming the option and the fix."""
    shown = (
        text_or_number
        if not isinstance(text_or_number, str) or len(text_or_number) <= 60
        else (text_or_number[:57] + "...")
    )
    where = f"{_flag(name)} {shown!r}"
    if isinstance(text_or_number, bool) or not isinstance(text_or_number, (str, int, float)):
        raise ValueError(f"{where}: {_EXPECTED}")
    if isinstance(text_or_number, str):
        kind, values = _parse_text(text_or_number, where)
        text = text_or_number.strip()
    else:
        kind, values, text = "constant", [float(text_or_number)], str(text_or_number)
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"{where}: every value must be a finite number")
        if integer and value != int(value):
            raise ValueError(f"{where}: this option counts things; give whole numbers (got {value:g})")
        if minimum is not None and value < minimum:
            raise ValueError(f"{where}: values must be at least {minimum:g} (got {value:g})")
    return Schedule(kind=kind, values=tuple(values), integer=integer, name=name, text=text)
