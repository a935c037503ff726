"""threads.ordered_map: input order whatever the timing, bounded look-ahead, early stop,
errors raised to the consumer; one_torch_thread restores the count."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from geoposenet.threads import one_torch_thread, ordered_map


def test_results_come_in_input_order_whatever_finishes_first() -> None:
    def slow_first(n: int) -> int:
        time.sleep(0.02 if n % 3 == 0 else 0.0)
        return n * n

    assert list(ordered_map(slow_first, range(20), threads=3)) == [n * n for n in range(20)]


def test_work_runs_in_several_threads_at_most_twice_the_threads_ahead() -> None:
    started: list[int] = []
    names: set[str] = set()
    lock = threading.Lock()

    def record(n: int) -> int:
        with lock:
            started.append(n)
            names.add(threading.current_thread().name)
        time.sleep(0.01)
        return n

    results = ordered_map(record, range(100), threads=2)
    assert next(results) == 0
    time.sleep(0.1)
    assert len(started) <= 5  # 4 submitted first, one more after the first was taken
    results.close()  # the consumer stops: nothing more starts
    count = len(started)
    time.sleep(0.05)
    assert len(started) == count < 100
    assert len(names) == 2


def test_an_error_reaches_the_consumer() -> None:
    def fail_at_three(n: int) -> int:
        if n == 3:
            raise ValueError("frame 3")
        return n

    results = ordered_map(fail_at_three, range(10), threads=2)
    assert [next(results) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="frame 3"):
        next(results)


def test_one_torch_thread_restores_the_count() -> None:
    before = torch.get_num_threads()
    with one_torch_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_work_runs_on_one_torch_thread_and_the_count_comes_back() -> None:
    before = torch.get_num_threads()
    seen = list(ordered_map(lambda _: torch.get_num_threads(), range(6), threads=2))
    assert seen == [1] * 6
    assert torch.get_num_threads() == before
    results = ordered_map(lambda n: n, range(100))  # threads=0: torch's count
    assert next(results) == 0 and torch.get_num_threads() == 1
    results.close()  # stopped early: the count is restored too
    assert torch.get_num_threads() == before
