"""Map a function over items in worker processes, yielding results as they finish."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count(requested: int) -> int:
    """Workers to use: `requested`, or one per available core for 0."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, requested or cores)


@contextlib.contextmanager
def process_pool(workers: int) -> Iterator[Executor | None]:
    """A pool of spawned processes to share across passes, or None to work in-process.

    Processes are spawned, not forked, so a parent that has loaded torch (and its thread pools)
    cannot deadlock its children. One worker means in-process, with no start-up cost.
    """
    count = worker_count(workers)
    if count == 1:
        yield None
        return
    pool = ProcessPoolExecutor(max_workers=count, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_ignore_interrupts)
    try:
        # A kill (SIGTERM) is not held back like Ctrl-C: it may land while workers start, and they must be stopped.
        with interrupts_held():
            for _ in range(count):  # each submit to a pool with no idle worker starts one: start them all here
                pool.submit(_ready)
        yield pool
    except BaseException:
        # Ctrl-C or an error: drop the queued work; workers (which ignore Ctrl-C) finish their one item.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold Ctrl-C back in this process, and have the processes it starts meanwhile ignore it from birth.

    A spawned worker takes a while to import before its initializer can ignore Ctrl-C; one that arrives then
    would kill it and leave the pool waiting for it. An exec keeps only an ignored disposition, so the parent
    ignores SIGINT while it starts workers, with SIGINT blocked so that (on Linux, which keeps blocked signals
    pending even when ignored) a Ctrl-C in that window is delivered to the parent once the window closes.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    old_handler = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_handler if old_handler is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)


def _ready() -> None:
    """A no-op task: submitting it starts a worker."""


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops them; otherwise each would print a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parallel_map(fn: Callable[..., R], items: Sequence[T], *, pool: Executor | None, args: tuple = ()) -> Iterator[R]:
    """Yield fn(*args, item) for every item, in completion order; serially when there is no pool."""
    if pool is None or len(items) <= 1:
        for item in items:
            yield fn(*args, item)
        return
    queue = iter(items)
    # Keep a bounded number of jobs in flight so huge folders do not pile up in memory.
    in_flight = 4 * getattr(pool, "_max_workers", 2)
    pending = {pool.submit(fn, *args, item) for _, item in zip(range(in_flight), queue)}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            yield future.result()
            for item in [next(queue, _END)]:
                if item is not _END:
                    pending.add(pool.submit(fn, *args, item))


_END = object()
