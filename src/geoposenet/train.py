"""Training: `fit(config) -> run directory`, the epoch driver.

The parts come from geoposenet.parts, each optimiser step from geoposenet.step (where the
reproducibility guarantees are stated), the run directory from geoposenet.rundir, the reports
from geoposenet.runlog, and a checkpoint is a geoposenet.runstate.RunState. The driver trains
epoch after epoch, evaluates the validation and test splits every `eval_every` epochs (best.pt
is chosen on validation only, never on test), logs, and writes last.pt after every epoch and
on SIGINT/SIGTERM, so training never loses more than one epoch.

Under torchrun every process trains on its slice of each global batch (see
geoposenet.distributed); rank 0 alone writes the run directory and shows progress, and the
processes agree after every step on stop signals and non-finite losses, so all stop together.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import Any

import torch
from tqdm import tqdm

from geoposenet.calibration import fit_calibration
from geoposenet.checkpoint import save_checkpoint
from geoposenet.config import TrainConfig
from geoposenet.data import PoseDataset
from geoposenet.devices import check_amp, set_threads
from geoposenet.distributed import Objective, World, launch, per_rank_batch, predict_sharded
from geoposenet.errors import InputError, TrainingError, TrainingInterrupted
from geoposenet.loader import Batch, Prefetched, batch_loader
from geoposenet.metrics import pose_errors, summarize
from geoposenet.parts import TrainingParts, build_parts, true_poses
from geoposenet.rundir import open_run, prepare_run
from geoposenet.runlog import (
    MEDIANS,
    Tensorboard,
    append_record,
    final_table,
    summary_line,
    truncate_log,
)  # fmt: skip
from geoposenet.runstate import Progress, RunState
from geoposenet.scene import Split
from geoposenet.step import EpochBatches, TrainingStep, learning_rate, step_seed


class StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step (main thread only); not
    entered, a flag that stays down."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> StopSignals:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def evaluate_splits(world: World, parts: TrainingParts, batch_size: int) -> dict[str, Any]:
    """Metrics of the validation split (when there is one) and of the test split, keyed by
    split. Each process predicts its shard of the frames (`batch_size` at a time) with rank 0's
    BatchNorm statistics; the shards are gathered so every process has the same metrics."""
    world.broadcast_buffers(parts.model)
    metrics: dict[str, Any] = {}
    splits: tuple[tuple[Split, PoseDataset | None], ...] = (
        ("val", parts.val_set),
        ("test", parts.test_set),
    )
    for split, dataset in splits:
        if dataset is not None:
            position, quaternion = predict_sharded(world, parts.model, dataset, batch_size)
            errors = pose_errors(position, quaternion, *true_poses(parts.scene, split))
            metrics[split] = summarize(*errors)
    return metrics


class Trainer:
    """The epoch driver of one run (one process of it when distributed)."""

    def __init__(self, config: TrainConfig, resume: bool, world: World) -> None:
        self.config, self.world = config, world
        self.per_rank = per_rank_batch(config.batch_size, world.size)
        self.run, restored = prepare_run(config, resume)
        if len(set(world.gather(restored is not None))) > 1:
            raise InputError(
                f"--resume: {self.run / 'last.pt'} exists for some processes and not for others; "
                "put --out on a filesystem all nodes share (or copy the run to every node)"
            )
        self.parts = parts = build_parts(config, world)
        self.progress = Progress()
        if restored is not None:
            parts.model.load_state_dict(restored.model)
            parts.loss.load_state_dict(restored.loss)
            parts.optimizer.load_state_dict(restored.optimizer)
            self.progress = restored.progress
        objective = world.wrap(Objective(parts.model, parts.loss))  # after restoring
        self.step = TrainingStep(objective, parts.optimizer, parts.lr_scales, config, world)
        self.sampler = EpochBatches(
            len(parts.train_set), config.batch_size, config.seed, world.rank, world.size
        )
        self.loader = batch_loader(
            parts.train_set, self.sampler, config.workers, world.device.type == "cuda"
        )
        self.stopped = 0  # the signal every process agreed to stop on (0: none)
        self.tensorboard: Tensorboard | None = None
        if world.is_main:
            print(f"validation split: {parts.holdout.description}", flush=True)
            open_run(self.run, config)
            truncate_log(self.run, self.progress.epoch)  # epochs to train (again): a fresh
            # start after a kill before the first last.pt clears that epoch's record too
            self.tensorboard = Tensorboard(self.run)

    def save(self, path: Path) -> None:
        """Write the run state (rank 0 only; the model is the unwrapped PoseNet)."""
        if not self.world.is_main:
            return
        parts = self.parts
        state = RunState(
            model_config=parts.model.config.to_dict(),
            model=parts.model.state_dict(),
            config=self.config.to_dict(),
            loss_name=self.config.loss,
            loss=parts.loss.state_dict(),
            optimizer=parts.optimizer.state_dict(),
            progress=self.progress,
        )
        save_checkpoint(path, state.to_checkpoint())

    def batches(self) -> AbstractContextManager[Iterable[Batch]]:
        """This epoch's batches: with --prefetch and --workers 0 prepared one ahead in a
        background thread (stopped when the block ends), else straight from the loader."""
        if self.config.prefetch and self.config.workers == 0:
            return Prefetched(self.loader)
        return nullcontext(self.loader)

    def train_epoch(self, stop: StopSignals) -> dict[str, Any]:
        """Train from (epoch, batch) to the end of the epoch or a stop signal; the epoch's log
        record (mean loss parts over its steps and the processes, lr, speed)."""
        config, progress, world = self.config, self.progress, self.world
        self.sampler.epoch, self.sampler.start = progress.epoch, progress.batch
        self.parts.train_set.set_epoch(progress.epoch)
        per_epoch = len(self.sampler.batches())
        if progress.batch == 0:
            progress.sums = {}
        sums, images, started = progress.sums, 0, time.perf_counter()
        self.step.objective.train()
        bar = tqdm(
            total=per_epoch, initial=progress.batch, leave=False, dynamic_ncols=True,
            desc=f"epoch {progress.epoch + 1}/{config.epochs}",
            disable=not (config.progress and world.is_main),
        )  # fmt: skip
        with self.batches() as batches:
            for batch in batches:
                lr = learning_rate(config, progress.epoch, progress.batch, per_epoch)
                seed = step_seed(config.seed, progress.epoch, progress.batch, world.rank)
                result = self.step(batch, lr, seed)
                if not result.finite:
                    raise self._diverged(result.parts)
                for key, value in result.parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                images += len(batch["image"]) * world.size
                progress.batch += 1
                progress.step += 1
                bar.update(1)
                bar.set_postfix({k: f"{v:.3g}" for k, v in result.parts.items()}, refresh=False)
                self.stopped = world.max(stop.received or 0)  # a signal on any process stops all
                if self.stopped:
                    break
        bar.close()
        progress.sums = world.mean(sums)  # restored sums are already means: unchanged by this
        seconds = time.perf_counter() - started
        return {
            "epoch": progress.epoch,
            "step": progress.step,
            "lr": learning_rate(config, progress.epoch, 0, per_epoch),  # the first step's
            "time_s": round(seconds, 3),
            "images_per_s": round(images / max(seconds, 1e-9), 2),
            "train": {k: v / max(progress.batch, 1) for k, v in progress.sums.items()},
        }

    def _diverged(self, parts: dict[str, float]) -> TrainingError:
        values = ", ".join(f"{k}={v:.4g}" for k, v in parts.items())
        if self.world.distributed:
            values = f"{values} on rank {self.world.rank} of {self.world.size}"
        p, last = self.progress, self.run / "last.pt"
        kept = (
            f"{last} keeps the last good epoch."
            if last.exists()
            else "no epoch had finished, so there is no checkpoint."
        )
        return TrainingError(
            f"the loss became non-finite at epoch {p.epoch + 1}, batch {p.batch + 1} (step "
            f"{p.step + 1}): {values}. Training stopped; {kept} Likely causes: a learning rate "
            f"too high for this loss (try a smaller --lr), or bad labels (run "
            f"'geoposenet check {self.config.data}')."
        )

    def end_epoch(self, record: dict[str, Any]) -> None:
        """Evaluate when due (best.pt on validation only; the uncertainty calibrated on
        validation only), log, then write last.pt."""
        progress, config, parts = self.progress, self.config, self.parts
        progress.epoch, progress.batch = progress.epoch + 1, 0
        if progress.epoch % config.eval_every == 0 or progress.epoch == config.epochs:
            progress.metrics = evaluate_splits(self.world, parts, self.per_rank)
            if parts.val_set is not None and self.world.is_main:  # only rank 0 saves
                truth = true_poses(parts.scene, "val")
                scales = fit_calibration(parts.model, parts.val_set, *truth, self.per_rank)
                progress.calibration = {"epoch": progress.epoch, **scales}
            for split, metrics in progress.metrics.items():
                record[split] = {k: metrics[k] for k in MEDIANS}
            if "val" in progress.metrics:  # chosen on validation only, never on test
                score = progress.metrics["val"]["median_position_error_m"]
                if progress.best is None or score < progress.best:
                    progress.best = score
                    self.save(self.run / "best.pt")
        if self.tensorboard is not None:  # rank 0; log first: a crash before last.pt only
            append_record(self.run, record)  # repeats the epoch
            self.tensorboard.add(record)
            unit = self.parts.scene.position_unit
            print(summary_line(record, config.epochs, unit), flush=True)
        self.save(self.run / "last.pt")

    def close(self) -> None:
        """Stop the TensorBoard writer's thread (rank 0)."""
        if self.tensorboard is not None:
            self.tensorboard.close()

    def fit(self) -> Path:
        with StopSignals() as stop:
            while self.progress.epoch < self.config.epochs:
                record = self.train_epoch(stop)
                if self.stopped:
                    self.save(self.run / "last.pt")
                    self.world.barrier()  # last.pt is complete before any process exits
                    p = self.progress
                    raise TrainingInterrupted(self.run, self.stopped, p.epoch, p.batch)
                self.end_epoch(record)
        if self.world.is_main:
            print(final_table(self.run, self.parts.scene.position_unit), flush=True)
        self.world.barrier()  # when fit returns on any process, rank 0 has written everything
        return self.run


def fit(config: TrainConfig, resume: bool = False, progress: bool | None = None) -> Path:
    """Train a PoseNet as `config` says; return the run directory. With `resume`, continue the
    run in `config.out` from its last.pt (a fresh start when there is none); `progress`
    overrides config.progress. Under torchrun (WORLD_SIZE > 1) this process joins the
    distributed run and leaves it on return or error."""
    if progress is not None:
        config = TrainConfig.from_dict({**config.to_dict(), "progress": progress})
    config.validate()
    set_threads(config.threads)
    with algorithms(config), launch(config.device) as world:
        check_amp(config.amp, world.device.type)
        trainer = Trainer(config, resume, world)
        try:
            return trainer.fit()
        finally:  # also when stopped or diverged: no TensorBoard thread is left running
            trainer.close()


@contextmanager
def algorithms(config: TrainConfig) -> Iterator[None]:
    """torch's global algorithm switches for a run, restored afterwards: deterministic
    algorithms as --deterministic says, and cuDNN's benchmark mode (it times its kernels and
    keeps the fastest) only when not deterministic."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    benchmark = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not config.deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.cudnn.benchmark = benchmark
