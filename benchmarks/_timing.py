"""Paired timing of two implementations on a shared machine (the protocol both diffusers comparisons use).

The two calls alternate in ABBA order, so neither one always runs first (warm caches, clock drift), and
the summary keeps each side's fastest run, the least disturbed by other load (as timeit advises), beside
the ratio of medians, which shows how far the typical run agrees with the fastest one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU seconds


@dataclass
class Paired:
    """Both sides' run times (seconds) and their last outputs."""

    reference_s: list[float]
    ours_s: list[float]
    reference_out: object
    ours_out: object

    @property
    def ratio(self) -> float:
        """Fastest run of ours over fastest run of the reference: below 1, ours is faster."""
        return min(self.ours_s) / min(self.reference_s)

    @property
    def median_ratio(self) -> float:
        return statistics.median(self.ours_s) / statistics.median(self.reference_s)

    def row(self) -> dict:
        """The figures a benchmark row reports."""
        return {"diffusers_s": round(min(self.reference_s), 6), "artdiff_s": round(min(self.ours_s), 6),
                "ratio": round(self.ratio, 3), "median_ratio": round(self.median_ratio, 3), "runs": len(self.ours_s)}


def _once(fn: Callable[[], object], clock: Callable[[], float]) -> tuple[float, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = clock()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return clock() - start, out


def paired(reference: Callable[[], object], ours: Callable[[], object], repeats: int, *, clock: str = "wall",
           warmup: int = 1) -> Paired:
    """Time `repeats` runs of each side in ABBA order after `warmup` untimed runs of each."""
    tick = CLOCKS[clock]
    for _ in range(warmup):
        reference(), ours()
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    outputs: dict[str, object] = {}
    sides = {"reference": reference, "ours": ours}
    for i in range(repeats):
        order = ("reference", "ours") if i % 2 == 0 else ("ours", "reference")
        for name in order:
            seconds, outputs[name] = _once(sides[name], tick)
            times[name].append(seconds)
    return Paired(times["reference"], times["ours"], outputs["reference"], outputs["ours"])
