"""Training settings: `TrainConfig` declares every setting once (type, default, kind, allowed
values, help: see geoposenet.settings), and presets give other defaults.

The resolved config is written into every run directory (config.toml, see geoposenet.configfile)
and every checkpoint. Recipe settings are fixed for a run; options may change when resuming.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from geoposenet.choices import (
    AMP_MODES,
    BACKBONE_NAMES,
    FORMATS,
    LOSSES,
    NORMS,
    SCHEDULES,
    UNCERTAINTY_HEADS,
)
from geoposenet.devices import device_problem
from geoposenet.errors import InputError
from geoposenet.settings import (
    Declared,
    at_least,
    declared,
    default_text,
    non_negative_finite,
    parse_crop,
    positive_finite,
    problems,
    setting,
    within,
)

if TYPE_CHECKING:
    from geoposenet.models import ModelConfig

LOG_SCALE_BOUND = 6.0
"""The aleatoric head's per-image s_x(I), s_q(I) are LOG_SCALE_BOUND tanh(raw / LOG_SCALE_BOUND),
within +-6: a loss weight exp(-s) of at most e^6 ~ 403, so no image can drive training to
infinity (models.PoseNet)."""

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


def _val_problem(spec: str) -> str | None:
    from geoposenet.validation import parse_val

    try:
        parse_val(spec)
    except InputError as error:
        return str(error).removeprefix("--val").lstrip(": ")
    return None


@dataclass
class TrainConfig:
    """Everything a training run depends on. Units: lr per step, resize/crop in pixels."""

    # recipe: what defines the trained model
    preset: str = setting("paper", "defaults to start from", choices=PRESETS)
    format: str = setting("auto", "dataset format", choices=FORMATS)
    images: str | None = setting(
        None, "image folder of a COLMAP model (unset: DATA/images) or nerfstudio capture (it "
        "replaces the first folder of every file_path, e.g. images_4), relative to DATA",
        metavar="DIR",
    )  # fmt: skip
    test_list: str | None = setting(
        None, "file of test image names, one a line; every other image trains (COLMAP, "
        "nerfstudio)", metavar="FILE",
    )  # fmt: skip
    test_every: int | None = setting(
        None, "every N-th image by name is a test image (COLMAP, nerfstudio): interleaved, only "
        "to compare with papers; unset: the dataset's lists, else held-out stretches",
        metavar="N", check=at_least(1),
    )  # fmt: skip
    scale: float | None = setting(
        None, "metres per model unit (COLMAP, nerfstudio); unset: positions in model units",
        check=positive_finite,
    )  # fmt: skip
    scale_from: str | None = setting(
        None, "file of known distances, lines 'imageA imageB distance_m', giving --scale",
        metavar="FILE",
    )  # fmt: skip
    val: str = setting(
        "auto",
        "validation split held out from the training frames, to choose best.pt: auto (whole "
        "sequences when there are >= 3, else the middle 15% of each, with gaps), a fraction "
        "such as 0.2, sequence names such as seq-03,seq-05, or none",
        metavar="SPEC",
        check=_val_problem,
    )
    backbone: str = setting("googlenet", "feature extractor", choices=BACKBONE_NAMES)
    pretrained: str = setting(
        "imagenet", "backbone weights: imagenet | none | FILE (a classifier state dict)",
        metavar="WEIGHTS",
    )  # fmt: skip
    init: str | None = setting(
        None, "start from this checkpoint's weights and s_x, s_q (e.g. to fine-tune)",
        metavar="CKPT",
    )  # fmt: skip
    dropout: float = setting(0.0, "dropout before the pose layer", check=within(0, 1, True))
    resize: int = setting(256, "shorter image side before cropping, pixels", check=at_least(16))
    crop: tuple[int, int] = setting(
        (224, 224), "network input, pixels: N or HxW (height x width, e.g. 96x128)",
        metavar="HxW", check=lambda c: None if min(c) >= 16 else f"must be at least 16 pixels, "
        f"got {c[0]}x{c[1]}",
    )  # fmt: skip
    loss: str = setting("learned", "loss function (eq. 2, 4, 7 of the paper)", choices=LOSSES)
    norm: str = setting("l1", "distance of the loss (the paper's gamma)", choices=NORMS)
    beta: float = setting(500.0, "weight of the orientation loss (--loss beta)",
                          check=positive_finite)  # fmt: skip
    s_x: float = setting(0.0, "initial s_x of the learned weighting (--loss learned)")
    s_q: float = setting(-3.0, "initial s_q of the learned weighting (--loss learned)")
    uncertainty: str = setting(
        "none", "per-image uncertainty: aleatoric = the head also predicts s_x(I), s_q(I) (within "
        "+-6, starting at --s-x, --s-q), trained by eq. 4 per image (--loss learned)",
        choices=UNCERTAINTY_HEADS,
    )  # fmt: skip
    batch_size: int = setting(64, "global batch (split over the processes)", check=at_least(1))
    lr: float = setting(1e-4, "Adam learning rate", check=positive_finite)
    weighting_lr: float | None = setting(
        None, "learning rate of s_x, s_q (--loss learned), same schedule; unset: --lr",
        check=positive_finite,
    )  # fmt: skip
    weight_decay: float = setting(0.0, "weight decay of the network (not of s_x, s_q)",
                                  check=non_negative_finite)  # fmt: skip
    schedule: str = setting("none", "learning-rate schedule after warm-up", choices=SCHEDULES)
    warmup_epochs: int = setting(0, "linear warm-up, epochs (below --epochs)", check=at_least(0))
    jitter: float = setting(0.0, "colour jitter strength, 0 = off", check=within(0, 1))
    points_per_frame: int = setting(128, "3D points per image (--loss reprojection)",
                                    check=at_least(0))  # fmt: skip
    seed: int = setting(0, "seeds weights, batch order, crops, dropout and jitter")
    deterministic: bool = setting(True, "deterministic torch algorithms")
    # run options: may change when resuming
    data: str = setting("", "dataset folder", "option", metavar="DATA", positional=True)
    out: str = setting("", "run directory", "option", metavar="RUN")
    epochs: int = setting(100, "epochs to train (may grow when resuming)", "option",
                          check=at_least(1))  # fmt: skip
    eval_every: int = setting(1, "evaluate validation and test every N epochs", "option",
                              check=at_least(1))  # fmt: skip
    workers: int = setting(
        0, "data-loading processes (0: this process builds the batches)", "option",
        check=at_least(0),
    )  # fmt: skip
    prefetch: bool = setting(
        True, "with --workers 0, prepare the next batch in a background thread while the current "
        "one trains (worker processes always work ahead)", "option",
    )  # fmt: skip
    threads: int = setting(0, "torch threads, 0: torch's default", "option", check=at_least(0))
    device: str = setting("auto", "auto | cpu | cuda[:N] | mps", "option", check=device_problem)
    amp: str = setting(
        "none", "mixed precision of the backbone: bf16 on CUDA or a CPU with bf16 instructions "
        "(avx512_bf16, amx_bf16), fp16 on CUDA", "option", choices=AMP_MODES,
    )  # fmt: skip
    progress: bool = setting(True, "progress bar during an epoch", "option")

    def model_config(self) -> ModelConfig:
        from geoposenet.models import ModelConfig

        return ModelConfig(
            backbone=self.backbone,
            pretrained=self.pretrained,
            dropout=self.dropout,
            aleatoric=self.uncertainty == "aleatoric",
            resize=self.resize,
            crop=self.crop,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crop": list(self.crop)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From `to_dict` output (e.g. a checkpoint's); keys it does not know are ignored."""
        known = {k: v for k, v in data.items() if k in {f.name for f in fields(cls)}}
        if "crop" in known:
            known["crop"] = parse_crop(known["crop"])
        return cls(**known)

    def recipe(self) -> dict[str, Any]:
        """The recipe settings (what a resumed run must keep)."""
        return {k: v for k, v in self.to_dict().items() if k in RECIPE}

    def _aleatoric_problems(self) -> list[str]:
        """What --uncertainty aleatoric cannot be combined with."""
        if self.uncertainty != "aleatoric":
            return []
        found = []
        if self.loss != "learned":
            found.append("--uncertainty aleatoric needs --loss learned (eq. 4 with per-image s)")
        if self.weighting_lr is not None:
            found.append(
                "--weighting-lr has no effect with --uncertainty aleatoric: s_x(I), s_q(I) come "
                "from the pose head, trained at --lr"
            )
        for name, value in (("--s-x", self.s_x), ("--s-q", self.s_q)):
            if not abs(value) < LOG_SCALE_BOUND:
                found.append(
                    f"{name} must be within +-{LOG_SCALE_BOUND:g} with --uncertainty aleatoric "
                    f"(the bound of the per-image s), got {value}"
                )
        return found

    def validate(self) -> None:
        """InputError naming the first setting out of range."""
        found = problems(self, TrainConfig)
        if not found and not self.warmup_epochs < self.epochs:
            found.append("--warmup-epochs must be below --epochs")
        if self.test_list is not None and self.test_every is not None:
            found.append("--test-list and --test-every both choose the test frames; give one")
        if self.scale is not None and self.scale_from is not None:
            found.append("--scale and --scale-from both set the scale; give one")
        found += self._aleatoric_problems()
        if found:
            raise InputError(found[0])


SETTINGS: dict[str, Declared] = {item.name: item for item in declared(TrainConfig)}
DATASET_OPTIONS = ("images", "test_list", "test_every", "scale", "scale_from")
"""The settings that reach `load_scene` (also flags of `check` and `eval`)."""
RECIPE = frozenset(name for name, item in SETTINGS.items() if item.setting.kind == "recipe")


def dataset_options(values: object) -> dict[str, Any]:
    """The DATASET_OPTIONS that `values` (a TrainConfig or parsed flags) sets, for load_scene."""
    found = {name: getattr(values, name, None) for name in DATASET_OPTIONS}
    return {name: value for name, value in found.items() if value is not None}


def shown_default(item: Declared) -> str:
    """The default of a setting as --help shows it (per preset where presets differ)."""
    by_preset = {name: values[item.name] for name, values in PRESETS.items() if item.name in values}
    if not by_preset:
        return default_text(item)
    if len(set(by_preset.values())) == 1:  # the same in every preset
        return default_text(item.with_default(next(iter(by_preset.values()))))
    return ", ".join(
        f"{default_text(item.with_default(v))} ({name})" for name, v in by_preset.items()
    )


def resolve_config(preset: str, **overrides: Any) -> TrainConfig:
    """The preset's values, then every override that is not None. Validated."""
    if preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    values: dict[str, Any] = {**PRESETS[preset], "preset": preset}
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig.from_dict(values)
    config.validate()
    return config


def recipe_changes(stored: dict[str, Any], config: TrainConfig) -> list[str]:
    """'key: old -> new' for every recipe setting of `config` that differs from `stored` (a
    run's recipe, as `to_dict` wrote it)."""
    before = TrainConfig.from_dict(stored).recipe()
    return [
        f"{key}: {_shown(before[key])} -> {_shown(value)}"
        for key, value in config.recipe().items()
        if before[key] != value
    ]


def _shown(value: Any) -> str:
    """A setting's value in a message: a crop as HxW, anything else as its repr."""
    return f"{value[0]}x{value[1]}" if isinstance(value, list | tuple) else repr(value)
