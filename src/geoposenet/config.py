"""Training configuration: one dataclass, presets, and the merge of preset and flags.

The resolved config is written into every run directory (config.json) and every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from geoposenet.errors import InputError
from geoposenet.losses import LOSSES, NORMS
from geoposenet.models import BACKBONES, ModelConfig
from geoposenet.validation import parse_val

SCHEDULES = ("none", "cosine", "step")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units: lr per step, crop/resize in pixels."""

    data: str = ""
    out: str = ""
    format: str = "auto"
    preset: str = "paper"
    # model
    backbone: str = "googlenet"
    pretrained: str = "imagenet"
    dropout: float = 0.0
    resize: int = 256
    crop: tuple[int, int] = field(default=(224, 224))
    # loss
    loss: str = "learned"
    norm: str = "l1"
    beta: float = 500.0
    s_x: float = 0.0
    s_q: float = -3.0
    init: str | None = None  # checkpoint whose weights (and s_x, s_q) start this run
    # optimisation
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    weighting_lr: float | None = None  # lr of s_x, s_q (eq. 4); None: the same as lr
    weight_decay: float = 0.0
    schedule: str = "none"
    warmup_epochs: int = 0
    jitter: float = 0.0  # colour jitter strength (brightness/contrast/saturation), 0 = off
    points_per_frame: int = 128
    val: str = (
        "auto"  # validation split (geoposenet.validation): auto | none | fraction | sequences
    )
    # bookkeeping
    eval_every: int = 1
    workers: int = 0
    seed: int = 0
    device: str = "auto"
    deterministic: bool = True
    threads: int = 0  # 0: torch's default

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            backbone=self.backbone,
            pretrained=self.pretrained,
            dropout=self.dropout,
            resize=self.resize,
            crop=self.crop,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crop": list(self.crop)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        if "crop" in known:
            known["crop"] = _crop(known["crop"])
        return cls(**known)

    def validate(self) -> None:
        """InputError naming the first flag out of range."""
        checks = [
            (self.backbone in BACKBONES, f"--backbone must be one of {', '.join(BACKBONES)}"),
            (self.loss in LOSSES, f"--loss must be one of {', '.join(LOSSES)}"),
            (self.norm in NORMS, f"--norm must be one of {', '.join(NORMS)}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.epochs >= 1, f"--epochs must be at least 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}"),
            (0 < self.lr < math.inf, f"--lr must be positive and finite, got {self.lr}"),
            (self.weighting_lr is None or 0 < self.weighting_lr < math.inf,
             f"--weighting-lr must be positive and finite, got {self.weighting_lr}"),
            (0 < self.beta < math.inf, f"--beta must be positive and finite, got {self.beta}"),
            (0 <= self.weight_decay < math.inf,
             f"--weight-decay must be >= 0 and finite, got {self.weight_decay}"),
            (0 <= self.dropout < 1, f"--dropout must be in [0, 1), got {self.dropout}"),
            (0 <= self.jitter <= 1, f"--jitter must be in [0, 1], got {self.jitter}"),
            (self.resize >= 16, f"--resize must be at least 16 pixels, got {self.resize}"),
            (min(self.crop) >= 16, f"--crop must be at least 16 pixels, got {self.crop}"),
            (self.eval_every >= 1, f"--eval-every must be at least 1, got {self.eval_every}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.points_per_frame >= 0, "--points-per-frame must be >= 0"),
            (0 <= self.warmup_epochs < self.epochs, "--warmup-epochs must be below --epochs"),
            (self.device in ("auto", "cpu") or self.device.startswith("cuda"), "--device: "
             f"expected auto, cpu or cuda[:N], got {self.device!r}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        parse_val(self.val)


def _crop(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    height, width = value
    return (int(height), int(width))


# Presets: the paper's configuration (for GPUs) and a CPU-sized one with the same model.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "backbone": "googlenet",
        "resize": 256,
        "crop": (224, 224),
        "batch_size": 64,
        "loss": "learned",
        "lr": 1e-4,
        "epochs": 100,
    },
    "cpu": {
        "backbone": "googlenet",
        "resize": 128,
        "crop": (112, 112),
        "batch_size": 32,
        "loss": "learned",
        "lr": 1e-4,
        "epochs": 30,
    },
}


def resolve_config(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's values, then every override that is not None. Validated."""
    if preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "crop" in values:
        values["crop"] = _crop(values["crop"])
    config = TrainConfig.from_dict(values)
    config.validate()
    return config
