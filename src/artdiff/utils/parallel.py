"""Map a function over items in worker processes, yielding results as they finish."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count(requested: int, items: int) -> int:
    """Workers to use: `requested`, or one per core for 0, never more than there are items."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(requested or cores, items))


def parallel_map(fn: Callable[..., R], items: Sequence[T], *, workers: int, args: tuple = ()) -> Iterator[R]:
    """Yield fn(*args, item) for every item, in completion order, using `workers` processes.

    Processes are spawned, not forked, so a parent that has loaded torch (and its thread pools)
    cannot deadlock its children. One worker runs in-process, with no start-up cost.
    """
    count = worker_count(workers, len(items))
    if count == 1:
        for item in items:
            yield fn(*args, item)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        pending = set()
        queue = iter(items)
        # Keep a bounded number of jobs in flight so huge folders do not pile up in memory.
        for item in queue:
            pending.add(pool.submit(fn, *args, item))
            if len(pending) >= count * 4:
                break
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
                item = next(queue, None)
                if item is not None:
                    pending.add(pool.submit(fn, *args, item))
