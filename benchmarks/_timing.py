"""Paired timing of two implementations on a shared machine (the protocol both diffusers comparisons use).

The two calls alternate in ABBA order, so neither one always runs first (warm caches, clock drift). The
headline ratio is the median over pairs of ours / reference, each pair run back to back: load from other
tenants of a shared machine comes in phases of seconds, which a pair mostly shares and its ratio cancels.
Its quartiles show the spread; each side's fastest run (timeit's advice) is reported beside it.
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
    def pair_ratios(self) -> list[float]:
        """ours / reference for each back-to-back pair."""
        return [ours / ref for ours, ref in zip(self.ours_s, self.reference_s)]

    @property
    def ratio(self) -> float:
        """The median pair ratio: below 1, ours is faster."""
        return statistics.median(self.pair_ratios)

    def row(self) -> dict:
        """The figures a benchmark row reports, with every run time for other summaries."""
        quartiles = statistics.quantiles(self.pair_ratios, n=4) if len(self.ours_s) > 1 else [self.ratio] * 3
        return {"diffusers_s": round(min(self.reference_s), 6), "artdiff_s": round(min(self.ours_s), 6),
                "ratio": round(self.ratio, 3), "ratio_q1": round(quartiles[0], 3), "ratio_q3": round(quartiles[2], 3),
                "fastest_ratio": round(min(self.ours_s) / min(self.reference_s), 3), "runs": len(self.ours_s),
                "diffusers_runs_s": [round(t, 6) for t in self.reference_s],
                "artdiff_runs_s": [round(t, 6) for t in self.ours_s]}


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
