"""One training step and what fixes it: the batch order, the learning rate and the step's seed.

Reproducibility: the batch order is a permutation seeded by (seed, epoch); every item's crop and
points by (seed, epoch, index) (geoposenet.data); the global torch RNG (dropout) and the colour
jitter are reseeded at every step from (seed, epoch, batch, rank). All three are pure functions
of the position in training, so a run resumes from any checkpoint, even mid-epoch, to bitwise
the same weights (CPU, same thread count and number of processes).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Sampler

from geoposenet.config import TrainConfig
from geoposenet.data import augment_batch
from geoposenet.devices import autocast
from geoposenet.distributed import World
from geoposenet.errors import InputError


class EpochBatches(Sampler[list[int]]):
    """Batches of indices for one epoch: a permutation seeded by (seed, epoch), cut into full
    batches (the last partial batch is dropped; BatchNorm needs > 1 item), starting at batch
    `start` so a resumed run skips what was already trained. With `world` processes, every
    process cuts the same global batches and yields its slice `rank` of each (batch_size /
    world items): the slices are disjoint and together make up the single-process batch."""

    def __init__(self, length: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.length = length
        self.batch_size = min(batch_size, length)
        self.batch_size -= self.batch_size % world  # whole slices (when the data set is small)
        if self.batch_size == 0:
            raise InputError(f"{length} training items cannot fill a batch for {world} processes")
        self.seed = seed
        self.rank = rank
        self.world = world
        self.epoch = 0
        self.start = 0

    def batches(self) -> list[np.ndarray]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.length)
        count = self.length // self.batch_size
        return [order[i * self.batch_size : (i + 1) * self.batch_size] for i in range(count)]

    def __len__(self) -> int:
        return max(self.length // self.batch_size - self.start, 0)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches()[self.start :]:
            share = len(batch) // self.world
            yield batch[self.rank * share : (self.rank + 1) * share].tolist()


def learning_rate(config: TrainConfig, epoch: int, batch: int, batches_per_epoch: int) -> float:
    """The schedule as a pure function of the position in training (no state to save):
    linear warmup over `warmup_epochs`, then constant, cosine to zero, or x0.1 at 50% and 75%."""
    t = epoch + batch / max(batches_per_epoch, 1)
    if t < config.warmup_epochs:
        return config.lr * (t + 1 / max(batches_per_epoch, 1)) / config.warmup_epochs
    progress = (t - config.warmup_epochs) / max(config.epochs - config.warmup_epochs, 1e-9)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if config.schedule == "step":
        return config.lr * (0.1 ** int(progress >= 0.5)) * (0.1 ** int(progress >= 0.75))
    return config.lr


def step_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """A 63-bit seed for the randomness (dropout, jitter) of one training step of one process;
    rank 0's is the single-process seed."""
    key = (seed, epoch, batch, 7) + ((rank,) if rank else ())
    return int(np.random.default_rng(key).integers(2**63 - 1))


@dataclass
class StepResult:
    """The loss parts of one step (floats) and whether every process's loss was finite (when
    not, no process stepped the optimiser)."""

    parts: dict[str, float]
    finite: bool


class TrainingStep:
    """One optimiser step: batch, learning rate and seed -> loss parts.

    objective: model and loss as one module (DDP-wrapped when distributed), called as
    objective(images, batch) -> (loss, parts); lr_scales: the factor of each optimiser param
    group (network, then loss parameters s_x, s_q: --weighting-lr / --lr)."""

    def __init__(
        self,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scales: tuple[float, float],
        config: TrainConfig,
        world: World,
    ) -> None:
        self.objective = objective
        self.optimizer = optimizer
        self.lr_scales = lr_scales
        self.jitter = config.jitter
        self.amp = config.amp
        self.world = world
        self.scaler = torch.amp.GradScaler("cuda") if config.amp == "fp16" else None

    def __call__(self, batch: dict[str, Tensor], lr: float, seed: int) -> StepResult:
        torch.manual_seed(seed)
        for group, scale in zip(self.optimizer.param_groups, self.lr_scales, strict=True):
            group["lr"] = lr * scale
        device = self.world.device
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        inputs = batch["image"]
        if self.jitter > 0:
            generator = torch.Generator(device=device).manual_seed(seed)
            j = self.jitter
            inputs = augment_batch(inputs, generator, j, j, j, min(0.05, j / 5))
        with autocast(self.amp, device):
            loss, parts = self.objective(inputs, batch)
        if self.world.max(int(not torch.isfinite(loss))):  # any process: all stop here
            return StepResult({k: float(v) for k, v in parts.items()}, finite=False)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:  # fp16: scale the loss so small gradients do not underflow
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        return StepResult({k: float(v) for k, v in parts.items()}, finite=True)
