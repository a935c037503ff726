"""Training: `fit(config) -> run directory`.

A run directory holds config.json, log.jsonl (one JSON line per epoch), last.pt (written
atomically after every epoch and on SIGINT/SIGTERM) and best.pt (lowest median position error on
the validation split, held out from the training frames by `--val`, see geoposenet.validation;
not written with `--val none`). The test split is evaluated and logged, never used to choose.
TensorBoard events go to tensorboard/ when tensorboard is installed.

Reproducibility: the batch order is a permutation seeded by (seed, epoch); every item's crop and
points by (seed, epoch, index); and the global torch RNG (dropout) and the colour jitter are
reseeded at every step from (seed, epoch, batch, rank). A run therefore resumes from any
checkpoint, even mid-epoch, to bitwise the same weights as an uninterrupted run (CPU, same thread
count and number of processes).

Under torchrun every process trains on its slice of each global batch (see
geoposenet.distributed); rank 0 alone writes the run directory and shows progress, and the
processes agree after every step on stop signals and non-finite losses, so all stop together.
"""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from geoposenet.cache import atomic_write_text, remove_stale_temporaries
from geoposenet.checkpoint import load_checkpoint, save_checkpoint
from geoposenet.config import TrainConfig
from geoposenet.data import PoseDataset, augment_batch
from geoposenet.distributed import Objective, World, launch, per_rank_batch, predict_sharded
from geoposenet.errors import InputError, TrainingError, TrainingInterrupted
from geoposenet.evaluation import pose_errors, summarize
from geoposenet.losses import Parts, PoseLoss, make_loss
from geoposenet.models import PoseNet
from geoposenet.scene import Scene, Split
from geoposenet.validation import hold_out

MEDIANS = ("median_position_error_m", "median_rotation_error_deg")
# Fields that may change when resuming a run (everything else must match the stored config).
RESUMABLE_CHANGES = {"epochs", "eval_every", "workers", "threads", "device", "out", "data"}


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


@dataclass
class RunState:
    """Where training stands: the next (epoch, batch) to train and bookkeeping."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)  # loss parts summed over this epoch


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


class _StopSignals:
    """Turns SIGINT/SIGTERM into a flag checked after each step (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum

    def __enter__(self) -> _StopSignals:
        try:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _prepare_run(config: TrainConfig, resume: bool) -> tuple[Path, dict[str, Any] | None]:
    """Check the run directory; return it and the checkpoint to resume from (every process of a
    distributed run reads it). Refuses an --out that is (or lies under) a file, and one inside the
    dataset folder (the run's files would be read as data and pollute the dataset)."""
    run = Path(config.out)
    existing = next(p for p in (run, *run.parents) if p.exists())  # "." or "/" at worst
    if not existing.is_dir():
        what = "is a file" if existing == run else f"lies under the file {existing}"
        raise InputError(f"--out {run}: {what}; the run directory must be a folder")
    data = Path(config.data).resolve()
    if run.resolve() == data or data in run.resolve().parents:
        where = "is" if run.resolve() == data else "lies inside"
        raise InputError(
            f"--out {run}: {where} the dataset folder {config.data}; the run's files would be "
            "read as data and pollute the dataset: choose a run folder outside it"
        )
    last = run / "last.pt"
    if resume and last.exists():
        checkpoint = load_checkpoint(last)
        stored = TrainConfig.from_dict(checkpoint["train_config"]).to_dict()
        changed = [
            f"{key}: {stored[key]!r} -> {value!r}"
            for key, value in config.to_dict().items()
            if key not in RESUMABLE_CHANGES and stored.get(key) != value
        ]
        if changed:
            raise InputError(
                f"--resume {run}: the run was started with other settings ({'; '.join(changed)});"
                " resume with the same flags, or train into a new --out"
            )
        return run, checkpoint
    if last.exists():
        raise InputError(
            f"{run} already holds a training run (last.pt); pass --resume to continue it, "
            "or choose another --out"
        )
    return run, None  # created once the data has loaded: bad input leaves nothing behind


def _build_model(config: TrainConfig, scene: Scene) -> tuple[PoseNet, dict[str, Any] | None]:
    """A fresh model (offset = mean training centre) or one started from --init."""
    if config.init is None:
        offset = torch.as_tensor(scene.train_centre())
        return PoseNet(config.model_config(), offset=offset), None
    init = load_checkpoint(Path(config.init))
    model = PoseNet.from_checkpoint(config.init).train()
    if model.config.backbone != config.backbone:
        raise InputError(
            f"--init {config.init}: a {model.config.backbone} model, but --backbone is "
            f"{config.backbone}"
        )
    return model, init


def _log_line(run: Path, record: dict[str, Any]) -> None:
    """Append one record to log.jsonl atomically (a killed process leaves no partial line)."""
    path = run / "log.jsonl"
    before = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, before + json.dumps(record) + "\n")


def _truncate_log(run: Path, epoch: int) -> None:
    """Drop log lines of epochs >= `epoch` (they are trained again after a resume)."""
    path = run / "log.jsonl"
    if path.exists():
        kept = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("epoch", 0) < epoch
        ]
        atomic_write_text(path, "".join(line + "\n" for line in kept))


class _Trainer:
    """One training run (one process of it when distributed); `fit` below is its public face."""

    def __init__(self, config: TrainConfig, resume: bool, progress: bool, world: World) -> None:
        from geoposenet.readers import load_scene

        self.config = config
        self.world = world
        self.progress = progress and world.is_main
        self.device = world.device
        self.per_rank = per_rank_batch(config.batch_size, world.size)
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.run, checkpoint = _prepare_run(config, resume)
        if len(set(world.gather(checkpoint is not None))) > 1:
            raise InputError(
                f"--resume: {self.run / 'last.pt'} exists for some processes and not for others; "
                "put --out on a filesystem all nodes share (or copy the run to every node)"
            )
        with world.local_main_first():  # one process per node fills the caches
            self.scene, holdout = hold_out(
                load_scene(Path(config.data), format=config.format), config.val
            )
            frames = self.scene.frames
            if config.loss == "reprojection" and not any(f.point_ids.size for f in frames):
                raise InputError(
                    f"{config.data}: the reprojection loss needs 3D points; this dataset has none"
                )
            torch.manual_seed(config.seed)  # the head's (and a random backbone's) initial weights
            self.model, init = _build_model(config, self.scene)
            offset = self.model.offset.cpu().numpy()
            points = config.points_per_frame if config.loss == "reprojection" else 0
            self.train_set = self._dataset("train", offset, points)
            self.val_set = self._dataset("val", offset, 0) if holdout.val else None
            self.test_set = self._dataset("test", offset, 0)
        self.model.to(self.device)
        self.loss: PoseLoss = make_loss(
            config.loss, config.norm, config.beta, config.s_x, config.s_q
        )
        self.loss.to(self.device)
        if init is not None and init.get("loss_name") == config.loss and init.get("loss"):
            self.loss.load_state_dict(init["loss"])
        self.optimizer = torch.optim.Adam(
            [
                {"params": list(self.model.parameters()), "weight_decay": config.weight_decay},
                {"params": list(self.loss.parameters()), "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        # the schedule scales both groups; s_x, s_q may move faster (--weighting-lr)
        self.lr_scales = (1.0, (config.weighting_lr or config.lr) / config.lr)
        self.state = RunState()
        if checkpoint is not None:
            self._restore(checkpoint)
        self.objective = world.wrap(Objective(self.model, self.loss))  # after _restore
        self.stopped = 0  # the signal every process agreed to stop on (0: none)
        self.sampler = EpochBatches(
            len(self.train_set), config.batch_size, config.seed, world.rank, world.size
        )
        self.loader = DataLoader(
            self.train_set,
            batch_sampler=self.sampler,
            num_workers=config.workers,
            persistent_workers=config.workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        self.writer = None
        if world.is_main:
            print(f"validation split: {holdout.description}", flush=True)
            self.run.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run)  # of a process killed while writing
            self.writer = self._tensorboard()
            text = json.dumps(config.to_dict(), indent=2) + "\n"
            atomic_write_text(self.run / "config.json", text)

    def _dataset(self, split: Split, offset: np.ndarray, points: int) -> PoseDataset:
        config = self.config
        return PoseDataset(
            self.scene,
            split,
            offset,
            resize=config.resize,
            crop=config.crop,
            points_per_frame=points,
            seed=config.seed,
        )

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.loss.load_state_dict(checkpoint["loss"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = RunState(
            checkpoint["epoch"],
            checkpoint["batch"],
            checkpoint["step"],
            checkpoint.get("best"),
            checkpoint.get("metrics") or {},
            checkpoint.get("sums") or {},
        )
        if self.world.is_main:
            _truncate_log(self.run, self.state.epoch)

    def _tensorboard(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run / "tensorboard"))

    def checkpoint(self, path: Path) -> None:
        """Write the training state (rank 0 only; the model is the unwrapped PoseNet)."""
        if not self.world.is_main:
            return
        save_checkpoint(
            path,
            {
                "model_config": self.model.config.to_dict(),
                "model": self.model.state_dict(),
                "train_config": self.config.to_dict(),
                "loss_name": self.config.loss,
                "loss": self.loss.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "epoch": self.state.epoch,
                "batch": self.state.batch,
                "step": self.state.step,
                "best": self.state.best,
                "metrics": self.state.metrics,
                "sums": self.state.sums,
            },
        )

    def evaluate(self) -> dict[str, Any]:
        """Metrics of the validation split (when there is one) and of the test split, keyed by
        split. Each process predicts its shard of the frames with rank 0's BatchNorm statistics;
        the shards are gathered so every process has the same metrics."""
        self.world.broadcast_buffers(self.model)
        metrics: dict[str, Any] = {}
        evaluated: tuple[tuple[Split, PoseDataset | None], ...] = (
            ("val", self.val_set),
            ("test", self.test_set),
        )
        for split, dataset in evaluated:
            if dataset is None:
                continue
            position, quaternion = predict_sharded(self.world, self.model, dataset, self.per_rank)
            frames = self.scene.split(split)
            true_position = np.stack([f.centre for f in frames])
            true_quaternion = np.stack([f.quaternion for f in frames])
            pos, rot = pose_errors(position, quaternion, true_position, true_quaternion)
            metrics[split] = summarize(pos, rot)
        return metrics

    def train_epoch(self, stop: _StopSignals) -> tuple[dict[str, float], int, float]:
        """Train from (state.epoch, state.batch) to the end of the epoch or a stop signal.
        Returns the mean loss parts (over the epoch's steps and the processes), the number of
        images trained on (all processes) and the seconds it took."""
        config, state, world = self.config, self.state, self.world
        self.sampler.epoch, self.sampler.start = state.epoch, state.batch
        self.train_set.set_epoch(state.epoch)
        per_epoch = len(self.sampler.batches())
        if state.batch == 0:
            state.sums = {}
        sums = state.sums
        images, started = 0, time.perf_counter()
        self.objective.train()
        bar = tqdm(
            total=per_epoch,
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}/{config.epochs}",
            disable=not self.progress,
            leave=False,
            dynamic_ncols=True,
        )
        for batch in self.loader:
            seed = step_seed(config.seed, state.epoch, state.batch, world.rank)
            torch.manual_seed(seed)
            lr = learning_rate(config, state.epoch, state.batch, per_epoch)
            for group, scale in zip(self.optimizer.param_groups, self.lr_scales, strict=True):
                group["lr"] = lr * scale
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            inputs = batch["image"]
            if config.jitter > 0:
                generator = torch.Generator(device=self.device).manual_seed(seed)
                j = config.jitter
                inputs = augment_batch(inputs, generator, j, j, j, min(0.05, j / 5))
            loss, parts = self.objective(inputs, batch)
            if world.max(int(not torch.isfinite(loss))):  # any process: all stop here
                raise self._diverged(parts)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            values = {k: float(v) for k, v in parts.items()}
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
            images += len(inputs) * world.size
            state.batch += 1
            state.step += 1
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items()}, refresh=False)
            self.stopped = world.max(stop.received or 0)  # a signal on any process stops all
            if self.stopped:
                break
        bar.close()
        state.sums = world.mean(sums)  # restored sums are already means: unchanged by this
        count = max(state.batch, 1)
        return {k: v / count for k, v in state.sums.items()}, images, time.perf_counter() - started

    def _diverged(self, parts: Parts) -> TrainingError:
        values = ", ".join(f"{k}={float(v):.4g}" for k, v in parts.items())
        if self.world.distributed:
            values = f"{values} on rank {self.world.rank} of {self.world.size}"
        return TrainingError(
            f"the loss became non-finite at epoch {self.state.epoch + 1}, batch "
            f"{self.state.batch + 1} (step {self.state.step + 1}): {values}. Training stopped; "
            + (
                f"{self.run / 'last.pt'} keeps the last good epoch."
                if (self.run / "last.pt").exists()
                else "no epoch had finished, so there is no checkpoint."
            )
            + " Likely causes: a learning rate "
            f"too high for this loss (try a smaller --lr), or bad labels (run "
            f"'geoposenet check {self.config.data}')."
        )

    def fit(self) -> Path:
        config, state, world = self.config, self.state, self.world
        with _StopSignals() as stop:
            while state.epoch < config.epochs:
                train_parts, images, seconds = self.train_epoch(stop)
                if self.stopped:
                    self.checkpoint(self.run / "last.pt")
                    world.barrier()  # last.pt is complete before any process exits
                    raise TrainingInterrupted(self.run, self.stopped, state.epoch, state.batch)
                record: dict[str, Any] = {
                    "epoch": state.epoch,
                    "step": state.step,
                    "lr": learning_rate(config, state.epoch, 0, 1),
                    "time_s": round(seconds, 3),
                    "images_per_s": round(images / max(seconds, 1e-9), 2),
                    "train": train_parts,
                }
                state.epoch, state.batch = state.epoch + 1, 0
                last_epoch = state.epoch == config.epochs
                if state.epoch % config.eval_every == 0 or last_epoch:
                    state.metrics = self.evaluate()
                    for split, metrics in state.metrics.items():
                        record[split] = {k: metrics[k] for k in MEDIANS}
                    if "val" in state.metrics:  # chosen on validation only, never on test
                        score = state.metrics["val"]["median_position_error_m"]
                        if state.best is None or score < state.best:
                            state.best = score
                            self.checkpoint(self.run / "best.pt")
                if world.is_main:  # log first: a crash before last.pt only repeats the epoch
                    _log_line(self.run, record)
                    self._tensorboard_record(record)
                self.checkpoint(self.run / "last.pt")
        world.barrier()  # when fit returns on any process, rank 0 has written everything
        return self.run

    def _tensorboard_record(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record["train"].items():
            self.writer.add_scalar(f"train/{key}", value, record["epoch"])
        for split in ("val", "test"):
            for key, value in record.get(split, {}).items():
                self.writer.add_scalar(f"{split}/{key}", value, record["epoch"])
        self.writer.add_scalar("lr", record["lr"], record["epoch"])
        self.writer.flush()


def fit(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train a PoseNet as `config` says; return the run directory. With `resume`, continue the
    run in `config.out` from its last.pt (a fresh start when there is none). Under torchrun
    (WORLD_SIZE > 1) this process joins the distributed run and leaves it on return or error."""
    config.validate()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
    try:
        with launch(config.device) as world:
            trainer = _Trainer(config, resume, progress, world)
            try:
                return trainer.fit()
            finally:  # also when stopped or diverged: no TensorBoard thread is left running
                if trainer.writer is not None:
                    trainer.writer.close()
    finally:
        torch.use_deterministic_algorithms(deterministic)
