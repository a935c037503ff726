"""What a training checkpoint holds, as one typed value: `RunState`.

`RunState.to_checkpoint()` is the only writer of a training checkpoint's content and
`RunState.from_checkpoint()` the only reader; reading checks every field and names the one that
is wrong. Layout (plain data and tensors, see geoposenet.checkpoint):
  model_config, model      the PoseNet (model also read alone by PoseNet.from_checkpoint)
  train_config             the run's settings (TrainConfig.to_dict(): recipe and options)
  loss_name, loss          the loss and its parameters (s_x, s_q for --loss learned)
  optimizer                Adam's state dict
  epoch, batch, step       the next epoch and batch to train (0-based), optimiser steps so far
  best                     lowest validation median position error so far (m), or None
  metrics                  the last evaluation's metrics by split
  sums                     the loss parts summed over the epoch so far (mean over processes)
  calibration              the uncertainty scales fitted on the validation split at the last
                           evaluation, {"epoch": E, kind: {"position", "rotation", ...}}
                           (geoposenet.calibration; absent in older checkpoints: {})
  written_by               the geoposenet version that wrote it (format version 2 on)
Format version 1 (geoposenet 0.1.0 before this module) has the same keys but written_by and
loads unchanged; other versions are refused by geoposenet.checkpoint with the version named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from geoposenet import __version__
from geoposenet.choices import LOSSES
from geoposenet.errors import CheckpointError


@dataclass
class Progress:
    """Where training stands: the next (epoch, batch) to train, and its bookkeeping."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)  # loss parts summed over this epoch
    calibration: dict[str, Any] = field(default_factory=dict)  # fitted on validation, by kind


@dataclass
class RunState:
    """A training checkpoint's content (see the module docstring for every field)."""

    model_config: dict[str, Any]
    model: dict[str, Tensor]
    config: dict[str, Any]
    loss_name: str
    loss: dict[str, Tensor]
    optimizer: dict[str, Any]
    progress: Progress
    written_by: str = __version__

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint content (save_checkpoint adds the format and version)."""
        p = self.progress
        return {
            "model_config": self.model_config,
            "model": self.model,
            "train_config": self.config,
            "loss_name": self.loss_name,
            "loss": self.loss,
            "optimizer": self.optimizer,
            "epoch": p.epoch,
            "batch": p.batch,
            "step": p.step,
            "best": p.best,
            "metrics": p.metrics,
            "sums": p.sums,
            "calibration": p.calibration,
            "written_by": self.written_by,
        }

    @classmethod
    def from_checkpoint(cls, content: dict[str, Any], path: Path) -> RunState:
        """The state in a loaded checkpoint; CheckpointError naming the first bad field."""
        read = _Fields(content, path)
        progress = Progress(
            epoch=read.count("epoch"),
            batch=read.count("batch"),
            step=read.count("step"),
            best=read.best(),
            metrics=read.get("metrics", dict),
            sums=read.sums(),
            calibration=read.calibration(),
        )
        loss_name = read.get("loss_name", str)
        if loss_name not in LOSSES:
            raise CheckpointError(f"{path}: loss_name {loss_name!r} is not one of {LOSSES}")
        return cls(
            model_config=read.get("model_config", dict),
            model=read.tensors("model"),
            config=read.get("train_config", dict),
            loss_name=loss_name,
            loss=read.tensors("loss"),
            optimizer=read.optimizer(),
            progress=progress,
            written_by=content.get("written_by", f"0.1.0 (format {content.get('version')})"),
        )


class _Fields:
    """Typed access to a checkpoint's fields; each failure names the file and the field."""

    def __init__(self, content: dict[str, Any], path: Path) -> None:
        self.content = content
        self.path = path

    def fail(self, key: str, expected: str) -> CheckpointError:
        found = self.content.get(key, "nothing")
        shown = type(found).__name__ if isinstance(found, dict | list) else repr(found)[:40]
        return CheckpointError(
            f"{self.path}: not a training checkpoint: {key!r} should be {expected}, got {shown}"
        )

    def get(self, key: str, kind: type) -> Any:
        value = self.content.get(key)
        if not isinstance(value, kind):
            raise self.fail(key, f"a {kind.__name__}")
        return value

    def count(self, key: str) -> int:
        value = self.content.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(key, "a whole number >= 0")
        return value

    def best(self) -> float | None:
        value = self.content.get("best")
        if value is not None and not (isinstance(value, float | int) and math.isfinite(value)):
            raise self.fail("best", "a finite number or None")
        return None if value is None else float(value)

    def sums(self) -> dict[str, float]:
        value = self.content.get("sums")
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, float | int) for k, v in value.items()
        ):
            raise self.fail("sums", "a dict of loss parts")
        return {k: float(v) for k, v in value.items()}

    def calibration(self) -> dict[str, Any]:
        value = self.content.get("calibration", {})
        if not isinstance(value, dict):
            raise self.fail("calibration", "a dict of uncertainty scales")
        return value

    def tensors(self, key: str) -> dict[str, Tensor]:
        value = self.get(key, dict)
        if not all(isinstance(v, Tensor) for v in value.values()):
            raise self.fail(key, "a state dict of tensors")
        return value

    def optimizer(self) -> dict[str, Any]:
        value = self.get("optimizer", dict)
        if not isinstance(value.get("state"), dict) or not isinstance(
            value.get("param_groups"), list
        ):
            raise self.fail("optimizer", "an optimiser state dict (state, param_groups)")
        return value
