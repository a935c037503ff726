"""Distributed training with PyTorch's own engine: torchrun launches the processes, this module
joins them into a process group and gives the trainer the few collectives it needs.

`torchrun --nproc_per_node=N -m geoposenet train ...` sets RANK, LOCAL_RANK and WORLD_SIZE (and
MASTER_ADDR/MASTER_PORT) in every process's environment; `launch` reads them, picks the backend
(nccl with device cuda:LOCAL_RANK on GPUs, gloo on CPU), and destroys the group on the way out,
also after an error. Without those variables (or with WORLD_SIZE=1) everything here is a no-op:
`World()` is a single process of rank 0, and its methods return their input.

Data parallelism as the trainer uses it: `--batch-size` is the global batch; every process draws
the same seeded global batches and trains on its slice (batch / processes items); model and loss
are one `Objective` module in DistributedDataParallel, so the loss's s_x and s_q are averaged like
every other gradient. BatchNorm statistics are computed per process over its slice (PyTorch's
SyncBatchNorm only runs on GPUs); rank 0's running statistics are the ones saved and evaluated.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset

from geoposenet.data import PoseDataset
from geoposenet.devices import full_precision, resolve_device
from geoposenet.errors import InputError
from geoposenet.losses import AleatoricLoss, Parts, PoseLoss
from geoposenet.models import PoseNet, predict

T = TypeVar("T")


def env_rank() -> int:
    """This process's global rank as torchrun set it (0 outside a distributed launch)."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class World:
    """This process's place among the training processes, and the collectives over them.
    rank: global rank (0 writes the run directory); local_rank: rank on this node (picks the GPU
    and builds the node's caches first); size: number of processes; device: this rank's device."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        """Wait until every process gets here."""
        if self.distributed:
            dist.barrier()

    def max(self, value: int) -> int:
        """The largest of every process's `value` (used to agree on stop flags)."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return int(tensor.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the processes (every process must pass the same keys)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return {k: float(v) / self.size for k, v in zip(keys, tensor.tolist(), strict=True)}

    def gather(self, value: T) -> list[T]:
        """Every process's `value` (any picklable object), in rank order, on every process."""
        if not self.distributed:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics are updated per rank)."""
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """`module` in DistributedDataParallel (which broadcasts rank 0's weights and buffers
        and averages gradients); the module itself in a single process."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def shard(self, count: int) -> list[int]:
        """This process's share of `count` items: indices rank, rank + size, ..."""
        return list(range(self.rank, count, self.size))

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """Run the block on local rank 0 first, then on the other ranks of the node, so one
        process per node fills the on-disk caches (images, downloaded weights) and the others
        read them."""
        if self.local_rank != 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()


class Objective(nn.Module):
    """Model and loss as one module: wrapped in DistributedDataParallel, the gradients of the
    loss's own parameters (s_x, s_q of the learned weighting) are averaged over the processes
    exactly like the network's. forward(images, batch) -> (loss, parts); under autocast
    (--amp) only the backbone runs in low precision, the pose head and the loss in float32.
    The aleatoric loss also gets the model's per-image s_x(I), s_q(I); every other loss
    ignores them (a model with that head may be fine-tuned with any loss)."""

    def __init__(self, model: PoseNet, loss: PoseLoss) -> None:
        super().__init__()
        self.model = model
        self.loss = loss

    def forward(self, images: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[Any, Parts]:
        features = self.model.features(images)  # under the caller's autocast, if any
        with full_precision(images.device.type):  # the pose head and the loss in float32
            prediction = self.model.regress(features.float())
            if isinstance(self.loss, AleatoricLoss):
                return self.loss(
                    prediction.position, prediction.quaternion, batch, prediction.log_scales
                )
            return self.loss(prediction.position, prediction.quaternion, batch)


def per_rank_batch(batch_size: int, world_size: int) -> int:
    """The per-process batch for a global `batch_size` (InputError unless it divides evenly)."""
    if batch_size % world_size:
        fits = sorted({max(batch_size // world_size, 1), batch_size // world_size + 1})
        options = " or ".join(str(f * world_size) for f in fits)
        raise InputError(
            f"--batch-size {batch_size} is the global batch and must be divisible by the "
            f"number of processes ({world_size}); try {options}"
        )
    return batch_size // world_size


def merge_shards(shards: Sequence[tuple[list[int], np.ndarray]], count: int) -> np.ndarray:
    """Put the rows of every process's shard (indices, rows) back in item order: (count, ...)."""
    rows = [r for _, r in shards if len(r)]
    merged = np.zeros((count, *rows[0].shape[1:]), dtype=rows[0].dtype)
    for indices, values in shards:
        merged[np.asarray(indices, dtype=np.int64)] = values
    return merged


def predict_sharded(
    world: World, model: PoseNet, dataset: PoseDataset, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """`models.predict` split over the processes: each predicts its `shard` of the items, then
    the shards are gathered, so every process returns all positions (N, 3) float64 (dataset
    coordinates) and canonical quaternions (N, 4) float64 in item order. In a single process
    this is `models.predict` itself."""
    if not world.distributed:
        poses = predict(model, dataset, batch_size)
        return poses.positions, poses.quaternions
    indices = world.shard(len(dataset))
    poses = predict(model, Subset(dataset, indices), batch_size)
    shards = world.gather((indices, poses.positions, poses.quaternions))
    count = len(dataset)
    return (
        merge_shards([(i, p) for i, p, _ in shards], count),
        merge_shards([(i, q) for i, _, q in shards], count),
    )


@contextmanager
def launch(device: str) -> Iterator[World]:
    """The World of this process. Under torchrun (WORLD_SIZE > 1) join the process group
    (nccl on CUDA, gloo on CPU) and leave it when the block ends, normally or by an exception.
    An already initialised group (a caller's own launcher) is used as is and left open."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if dist.is_available() and dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        size = dist.get_world_size()
        torch_device = resolve_device(device, local_rank if size > 1 else None)
        yield World(dist.get_rank(), local_rank, size, torch_device)
        return
    if size <= 1:
        yield World(device=resolve_device(device))
        return
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    rank, local_rank = env_rank(), int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = resolve_device(device, local_rank)
    if torch_device.type == "cuda":
        torch.cuda.set_device(torch_device)
        dist.init_process_group("nccl", device_id=torch_device)
    else:
        dist.init_process_group("gloo")
    try:
        yield World(rank, local_rank, size, torch_device)
    finally:
        dist.destroy_process_group()
