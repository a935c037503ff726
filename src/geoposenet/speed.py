"""Training speed on any device, for benchmarks/throughput.py and benchmarks/gpu.py.

- `ModelOnly`: the training step (geoposenet.step.TrainingStep: jitter, autocast, forward,
  loss, backward, Adam) of a config's model and loss on one random batch already on the device;
- `Loop`: the trainer's own epoch loop (`Trainer.train_epoch`: batches gathered from the image
  cache, prefetched or from worker processes, copied to the device, the same step) over the
  config's dataset, whole epochs, with no evaluation or checkpoint between them.
Both measure wall-clock images/s (the device synchronised before the clock is read) and, on a
CUDA device, the peak memory allocated during the measurement.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch

from geoposenet.config import TrainConfig
from geoposenet.devices import check_amp, resolve_device
from geoposenet.distributed import Objective, World
from geoposenet.models import PoseNet
from geoposenet.parts import build_loss, make_optimizer
from geoposenet.step import TrainingStep, step_seed
from geoposenet.train import StopSignals, Trainer, algorithms


@dataclass(frozen=True)
class Speed:
    """One measurement: images per second over `steps` training steps, and the peak memory
    allocated on the CUDA device meanwhile (bytes; None on other devices)."""

    images_per_s: float
    steps: int
    peak_bytes: int | None = None


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max) of repeated measurements."""
    return min(values), statistics.median(values), max(values)


def _timed(device: torch.device, run: Callable[[], int], images_per_step: int) -> Speed:
    """Time `run()` (it returns the steps it made) on `device`: images/s and peak memory."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    steps = run()
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if cuda else None
    return Speed(steps * images_per_step / max(seconds, 1e-9), steps, peak)


def random_batch(
    config: TrainConfig, device: torch.device, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A batch as the loader gives it, random, on `device`: (B, 3, H, W) uint8 images, centred
    positions (B, 3), unit quaternions (B, 4) and, for the reprojection loss, P points 5 m in
    front of the origin per image with their mask."""
    generator = torch.Generator().manual_seed(seed)
    b, slots = config.batch_size, config.points_per_frame
    batch = {
        "image": torch.randint(
            0, 256, (b, 3, *config.crop), dtype=torch.uint8, generator=generator
        ),
        "position": torch.randn(b, 3, generator=generator),
        "quaternion": torch.nn.functional.normalize(torch.randn(b, 4, generator=generator), dim=1),
    }
    if config.loss == "reprojection":
        batch["points"] = torch.randn(b, slots, 3, generator=generator) + torch.tensor([0, 0, 5.0])
        batch["points_mask"] = torch.ones(b, slots, dtype=torch.bool)
    return {key: value.to(device) for key, value in batch.items()}


class ModelOnly:
    """The training step of `config` (its model with `config.pretrained` weights, loss,
    optimiser, --amp, --jitter) on one random batch on `config.device`; with `compiled`, the
    backbone (the whole of the step's compute but the linear head and the loss) goes through
    torch.compile, default mode, compiled during the first warm-up step."""

    def __init__(self, config: TrainConfig, compiled: bool = False) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        check_amp(config.amp, self.device.type)
        torch.manual_seed(config.seed)
        model = PoseNet(config.model_config()).to(self.device).train()
        if compiled:
            model.backbone.compile()
        loss = build_loss(config).to(self.device)
        optimizer, lr_scales = make_optimizer(model, loss, config)
        world = World(device=self.device)
        self.step = TrainingStep(Objective(model, loss), optimizer, lr_scales, config, world)
        self.batch = random_batch(config, self.device)
        self.steps_done = 0

    def measure(self, steps: int, warmup: int = 2) -> Speed:
        """Images/s of `steps` steps, after `warmup` untimed ones."""

        def run(count: int) -> int:
            for _ in range(count):
                seed = step_seed(self.config.seed, 0, self.steps_done)
                self.step(self.batch, self.config.lr, seed)
                self.steps_done += 1
            return count

        with algorithms(self.config):
            run(warmup)
            return _timed(self.device, lambda: run(steps), self.config.batch_size)


class Loop:
    """The trainer of `config` (a fresh run in `config.out`), trained epoch after epoch by its
    own `train_epoch` for measuring. Use as a context manager (closes the run's writers)."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.world = World(device=resolve_device(config.device))
        check_amp(config.amp, self.world.device.type)
        self.trainer = Trainer(config, resume=False, world=self.world)

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.trainer.close()

    def measure(self, steps: int) -> Speed:
        """Images/s of whole epochs, as many as make at least `steps` steps."""
        trainer, stop = self.trainer, StopSignals()  # not entered: never raised

        def run() -> int:
            done = 0
            while done < steps:
                trainer.train_epoch(stop)
                done += trainer.progress.batch
                trainer.progress.epoch, trainer.progress.batch = trainer.progress.epoch + 1, 0
            return done

        with algorithms(self.config):
            return _timed(self.world.device, run, self.config.batch_size)


@contextmanager
def loops(configs: dict[str, TrainConfig]) -> Iterator[dict[str, Loop]]:
    """A Loop per named config, all closed when the block ends."""
    with ExitStack() as stack:
        yield {name: stack.enter_context(Loop(config)) for name, config in configs.items()}
