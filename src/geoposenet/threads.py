"""Rendering in threads: torch on one thread per renderer, and an ordered, lazy parallel map.

The renderers' per-frame array work (torch, numpy) releases the GIL, so frames rendered in
several Python threads use several cores; each frame's tensors are small, so one torch thread
per frame is fastest. Results come back in input order, so the output never depends on the
thread count.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one intra-op thread inside the block (the previous count restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ordered_map(
    function: Callable[[Item], Result], items: Iterable[Item], threads: int = 0
) -> Generator[Result, None, None]:
    """function(item) for each item, computed in `threads` threads (0: torch's thread count)
    and yielded in the order of `items`; torch runs on one intra-op thread until the iterator
    ends or is closed (the count restored then). At most 2 x `threads` results are computed
    ahead of the consumer; what has not started when the consumer stops is cancelled."""
    threads = threads or torch.get_num_threads()
    remaining = iter(items)
    with one_torch_thread(), ThreadPoolExecutor(threads) as pool:
        ahead: deque[Future[Result]] = deque(
            pool.submit(function, item) for item in itertools.islice(remaining, 2 * threads)
        )
        try:
            while ahead:
                result = ahead.popleft().result()
                ahead.extend(pool.submit(function, item) for item in itertools.islice(remaining, 1))
                yield result
        finally:
            for job in ahead:
                job.cancel()
