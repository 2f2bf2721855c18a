"""Worker processes: started ignoring Ctrl-C, which the parent still receives."""

import multiprocessing
import signal

import pytest

from artdiff.utils.parallel import interrupts_held, parallel_map, process_pool


def report_sigint(queue):
    queue.put(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)


def square(x):
    return x * x


def test_a_process_started_while_interrupts_are_held_is_born_ignoring_them():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with interrupts_held():
        child = context.Process(target=report_sigint, args=(queue,))
        child.start()
    assert queue.get(timeout=60) is True
    child.join(timeout=60)


def test_a_ctrl_c_while_held_reaches_the_parent_afterwards():
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
            held = True  # still running: the interrupt waits for the window to close
    assert held and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_pool_maps_over_every_item():
    with process_pool(2) as pool:
        assert sorted(parallel_map(square, list(range(6)), pool=pool)) == [0, 1, 4, 9, 16, 25]
