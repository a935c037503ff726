"""Batches for training and prediction: whole batches of a PoseDataset (`PoseDataset.batch`, one
gather per batch) through a DataLoader, and `Prefetched`, which prepares the next batches in a
background thread while the current one trains.

With `workers` > 0 the DataLoader's processes build the batches (and work ahead by themselves);
with 0 this process builds them, and `Prefetched` moves that work to a thread. The thread runs
numpy (the memory-mapped cache's reads and the gathers release the GIL) and, for CUDA, pins the
batch; it draws from no torch generator, and a batch is a pure function of (seed, epoch,
indices), so training is bitwise the same with or without it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar

from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler, Subset

from geoposenet.data import PoseDataset

T = TypeVar("T")
Batch = dict[str, Tensor]


class BatchView(Dataset[Batch]):
    """A PoseDataset (or the frames `indices` of it) whose items are whole batches:
    view[[i, j, ...]] = dataset.batch([indices[i], indices[j], ...])."""

    def __init__(self, dataset: PoseDataset, indices: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        self.indices = None if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)

    def __getitem__(self, positions: list[int]) -> Batch:
        frames = positions if self.indices is None else [self.indices[p] for p in positions]
        return self.dataset.batch(frames)


def batch_loader(
    dataset: PoseDataset,
    batches: Iterable[list[int]],
    workers: int = 0,
    pin_memory: bool = False,
    indices: Sequence[int] | None = None,
) -> DataLoader[Batch]:
    """A DataLoader yielding `dataset.batch(b)` for every list b of `batches` (a batch sampler,
    iterated afresh each epoch), built by `workers` persistent processes (0: this process);
    `pin_memory` for CUDA. With `indices`, b indexes into them (a Subset's frames)."""
    return DataLoader(
        BatchView(dataset, indices),
        sampler=batches,  # yields lists: one batch per "index"
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )


def in_order(
    source: Dataset[Any], batch_size: int, workers: int = 0, pin_memory: bool = False
) -> Iterable[dict[str, Any]]:
    """The items of `source` in order, `batch_size` at a time (the last batch may be smaller),
    collated: through `PoseDataset.batch` for a PoseDataset or a Subset of one, else the
    default collation of its items."""
    if isinstance(source, Subset) and isinstance(source.dataset, PoseDataset):
        dataset, indices = source.dataset, source.indices
    elif isinstance(source, PoseDataset):
        dataset, indices = source, None
    else:
        return DataLoader(source, batch_size=batch_size, num_workers=workers, pin_memory=pin_memory)
    batches = BatchSampler(SequentialSampler(range(len(source))), batch_size, drop_last=False)
    return batch_loader(dataset, batches, workers, pin_memory, indices)


class Prefetched(Generic[T]):
    """Iterates `source` in a daemon thread, up to `depth` items ahead of the consumer (plus the
    one in the making). Use it as a context manager: leaving the block (at the end, by break,
    an exception or a stop signal) stops the thread and waits for it, which finishes at most
    the item in progress. An exception raised in the thread is raised to the consumer at the
    position where it occurred."""

    def __init__(self, source: Iterable[T], depth: int = 1) -> None:
        self._source = source
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._produce, name="prefetch", daemon=True)

    def __enter__(self) -> Prefetched[T]:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._finished = True
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the thread and wait for it (idempotent)."""
        self._finished = True
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._offer(("item", item)):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            self._offer(("error", error))
            return
        self._offer(("end", None))

    def _offer(self, message: tuple[str, Any]) -> bool:
        """Queue `message` unless asked to stop (checked every 50 ms while the queue is full)."""
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False
