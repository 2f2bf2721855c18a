"""Paired timing of two implementations on a shared machine (the protocol both diffusers comparisons use).

The two calls alternate in ABBA order, so neither one always runs first (warm caches, clock drift). The
headline ratio is the median over pairs of ours / reference, each pair run back to back: load from other
tenants of a shared machine comes in phases of seconds, which a pair mostly shares and its ratio cancels.
Its quartiles show the spread; each side's fastest run (timeit's advice) is reported beside it.

On these shared vCPUs one and the same UNet call varies by 15% from run to run, far more than the loops
differ. So on CPU the networks (UNet, text encoder, VAE) are also timed from inside, with forward hooks:
the time outside them is the code that differs, and it is measured to within the noise of that code alone.
The hooks also record each network call's tensor shapes, dtypes and strides, to check both sides ask the
networks for the same work.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU seconds


class NetworkTimer:
    """Seconds spent inside some modules' forward calls, and the signature of each call (forward hooks)."""

    def __init__(self, modules: list[torch.nn.Module], clock: Callable[[], float]) -> None:
        self.clock, self.seconds, self.calls, self._depth, self._entered = clock, 0.0, [], 0, 0.0
        self._handles = [handle for module in modules for handle in (
            module.register_forward_pre_hook(self._enter, with_kwargs=True), module.register_forward_hook(self._leave))]

    def close(self) -> None:
        """Remove the hooks (the modules outlive one comparison)."""
        for handle in self._handles:
            handle.remove()

    def reset(self) -> None:
        self.seconds, self.calls = 0.0, []

    def _enter(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        # The timestep is left out: diffusers passes a 0-d integer tensor, we pass per-image floats; the UNet
        # expands both to the batch before its time embedding.
        tensors = [a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor) and a.ndim >= 2]
        self.calls.append((type(module).__name__, *((tuple(t.shape), str(t.dtype), t.stride()) for t in tensors)))
        self._depth += 1
        if self._depth == 1:
            self._entered = self.clock()

    def _leave(self, module: torch.nn.Module, args: tuple, output: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.seconds += self.clock() - self._entered


@dataclass
class Paired:
    """Both sides' run times (seconds), time inside the networks when timed, and their last outputs."""

    reference_s: list[float]
    ours_s: list[float]
    reference_out: object
    ours_out: object
    reference_inside_s: list[float] = field(default_factory=list)
    ours_inside_s: list[float] = field(default_factory=list)
    same_network_calls: bool | None = None  # None: the networks were not timed

    @property
    def pair_ratios(self) -> list[float]:
        """ours / reference for each back-to-back pair."""
        return [ours / ref for ours, ref in zip(self.ours_s, self.reference_s)]

    @property
    def ratio(self) -> float:
        """The median pair ratio: below 1, ours is faster."""
        return statistics.median(self.pair_ratios)

    def outside(self) -> tuple[list[float], list[float]]:
        """Each run's seconds outside the networks: reference, ours."""
        return ([t - i for t, i in zip(self.reference_s, self.reference_inside_s)],
                [t - i for t, i in zip(self.ours_s, self.ours_inside_s)])

    def row(self) -> dict:
        """The figures a benchmark row reports, with every run time for other summaries."""
        quartiles = statistics.quantiles(self.pair_ratios, n=4) if len(self.ours_s) > 1 else [self.ratio] * 3
        row = {"diffusers_s": round(min(self.reference_s), 6), "artdiff_s": round(min(self.ours_s), 6),
               "ratio": round(self.ratio, 3), "ratio_q1": round(quartiles[0], 3), "ratio_q3": round(quartiles[2], 3),
               "fastest_ratio": round(min(self.ours_s) / min(self.reference_s), 3), "runs": len(self.ours_s)}
        if self.same_network_calls is not None:
            ref_out, our_out = self.outside()
            # The same network work measured on both sides, pooled: its median stands for either side's.
            inside = statistics.median(self.reference_inside_s + self.ours_inside_s)
            row |= {"same_network_calls": self.same_network_calls,
                    "diffusers_inside_s": round(statistics.median(self.reference_inside_s), 6),
                    "artdiff_inside_s": round(statistics.median(self.ours_inside_s), 6),
                    "diffusers_outside_s": round(statistics.median(ref_out), 6),
                    "artdiff_outside_s": round(statistics.median(our_out), 6),
                    "outside_ratio": round(statistics.median(o / r for o, r in zip(our_out, ref_out)), 3),
                    "equal_network_ratio": round((inside + statistics.median(our_out))
                                                 / (inside + statistics.median(ref_out)), 4)}
        return row | {"diffusers_runs_s": [round(t, 6) for t in self.reference_s],
                      "artdiff_runs_s": [round(t, 6) for t in self.ours_s]}


def _once(fn: Callable[[], object], clock: Callable[[], float], timer: NetworkTimer | None
          ) -> tuple[float, float, list, object]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if timer is not None:
        timer.reset()
    start = clock()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = clock() - start
    return seconds, timer.seconds if timer else 0.0, list(timer.calls) if timer else [], out


def paired(reference: Callable[[], object], ours: Callable[[], object], repeats: int, *, clock: str = "wall",
           warmup: int = 1, networks: tuple[list[torch.nn.Module], list[torch.nn.Module]] | None = None) -> Paired:
    """Time `repeats` runs of each side in ABBA order after `warmup` untimed runs of each.

    networks: the modules each side calls (the same objects may serve both), timed from inside; leave it out
    on a GPU, where the hooks' synchronisation would change what is measured.
    """
    tick = CLOCKS[clock]
    timers: dict[str, NetworkTimer | None] = {"reference": None, "ours": None}
    if networks is not None:
        shared = {id(m) for m in networks[0]} == {id(m) for m in networks[1]}
        timers["reference"] = NetworkTimer(networks[0], tick)
        timers["ours"] = timers["reference"] if shared else NetworkTimer(networks[1], tick)
    try:
        return _alternate(reference, ours, repeats, tick, warmup, timers)
    finally:
        for timer in {id(t): t for t in timers.values() if t is not None}.values():
            timer.close()


def _alternate(reference: Callable[[], object], ours: Callable[[], object], repeats: int, tick: Callable[[], float],
               warmup: int, timers: dict[str, NetworkTimer | None]) -> Paired:
    for _ in range(warmup):
        reference(), ours()
    times: dict[str, list[float]] = {"reference": [], "ours": []}
    inside: dict[str, list[float]] = {"reference": [], "ours": []}
    calls: dict[str, list] = {}
    outputs: dict[str, object] = {}
    sides = {"reference": reference, "ours": ours}
    for i in range(repeats):
        order = ("reference", "ours") if i % 2 == 0 else ("ours", "reference")
        for name in order:
            seconds, inner, calls[name], outputs[name] = _once(sides[name], tick, timers[name])
            times[name].append(seconds)
            inside[name].append(inner)
    same = None if timers["ours"] is None else sorted(calls["reference"]) == sorted(calls["ours"])
    return Paired(times["reference"], times["ours"], outputs["reference"], outputs["ours"],
                  inside["reference"], inside["ours"], same)


def outside_text(row: dict) -> str:
    """The outside-the-networks figures of a row, for the printed table ('' when they were not timed)."""
    if "outside_ratio" not in row:
        return ""
    same = "same network calls" if row["same_network_calls"] else "NETWORK CALLS DIFFER"
    return (f"  outside networks {row['diffusers_outside_s'] * 1e3:7.1f} / {row['artdiff_outside_s'] * 1e3:7.1f} ms "
            f"= {row['outside_ratio']:.3f}, {same}")
