"""The settings a `geoposenet train` command runs with.

A new run: declared defaults < preset < `--config FILE` < flags. `--resume RUN`: the run's own
settings (from RUN/last.pt, or RUN/config.toml when no epoch was saved yet) < file < flags; the
given options win, and a given recipe setting that differs from the run's is refused by `fit`
with the difference shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from geoposenet.config import PRESETS, TrainConfig
from geoposenet.configfile import NAME, read_config_file
from geoposenet.errors import InputError


def new_run_config(given: dict[str, Any]) -> TrainConfig:
    """Defaults, then the preset named in `given` (else 'paper'), then `given`. Validated."""
    preset = given.get("preset", TrainConfig.preset)
    if preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    config = TrainConfig.from_dict({**PRESETS[preset], **given})
    config.validate()
    return config


def resumed_run_config(run: Path, given: dict[str, Any]) -> TrainConfig:
    """The run's stored settings overridden by `given`; `out` is the run. Validated."""
    if given.get("out", str(run)) != str(run):
        raise InputError(f"--resume {run} continues that run; drop --out {given['out']}")
    config = TrainConfig.from_dict({**stored_settings(run), **given, "out": str(run)})
    config.validate()
    return config


def stored_settings(run: Path) -> dict[str, Any]:
    """The settings RUN was last started with: its last.pt's, else its config.toml's."""
    if (run / "last.pt").is_file():
        from geoposenet.checkpoint import load_checkpoint
        from geoposenet.runstate import RunState

        return RunState.from_checkpoint(load_checkpoint(run / "last.pt"), run / "last.pt").config
    if (run / NAME).is_file():
        return read_config_file(run / NAME)
    raise InputError(
        f"--resume {run}: not a training run (no last.pt or {NAME}); give the run folder that "
        "--out named"
    )


def train_config(
    given: dict[str, Any], config_file: Path | None, resume: Path | None
) -> TrainConfig:
    """The config of a train command: `given` flags over `config_file` over the run (`resume`)
    or the preset; DATA and --out are required for a new run."""
    values = {**(read_config_file(config_file) if config_file else {}), **given}
    if resume is not None:
        return resumed_run_config(resume, values)
    for name, what in (("data", "the dataset folder DATA"), ("out", "--out RUN")):
        if not values.get(name):
            raise InputError(
                f"train: {what} is required (on the command line or in --config), "
                "or continue a run with --resume RUN"
            )
    return new_run_config(values)
