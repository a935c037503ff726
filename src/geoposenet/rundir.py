"""The run directory: checked before anything is written, opened once the data has loaded.

A run directory holds config.toml (the resolved settings, rewritten at every start), log.jsonl
(geoposenet.runlog), last.pt (after every epoch and on SIGINT/SIGTERM) and best.pt (lowest
validation median position error; not with `--val none`), and tensorboard/ when installed.
"""

from __future__ import annotations

from pathlib import Path

from geoposenet.cache import atomic_write_text, remove_stale_temporaries
from geoposenet.checkpoint import load_checkpoint
from geoposenet.config import TrainConfig, recipe_changes
from geoposenet.configfile import NAME, config_toml
from geoposenet.errors import InputError
from geoposenet.runstate import RunState


def prepare_run(config: TrainConfig, resume: bool) -> tuple[Path, RunState | None]:
    """Check the run directory; return it and the state to resume from (every process of a
    distributed run reads it). Refuses an --out that is (or lies under) a file, one inside the
    dataset folder (the run's files would be read as data), a resume that changes the recipe
    or asks for fewer epochs than the run has, and a fresh start over an existing run."""
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
        state = RunState.from_checkpoint(load_checkpoint(last), last)
        changed = recipe_changes(state.config, config)
        if changed:
            raise InputError(
                f"--resume {run}: the run was started with another recipe ({'; '.join(changed)})"
                "; resume with the same settings (or give only run options), or train into a "
                "new --out"
            )
        trained = state.progress.epoch
        if trained > config.epochs:
            raise InputError(
                f"--resume {run}: the run has trained {trained} epochs, more than --epochs "
                f"{config.epochs}; a run cannot be shortened: give --epochs {trained} or more, "
                "or train into a new --out"
            )
        return run, state
    if last.exists():
        raise InputError(
            f"{run} already holds a training run (last.pt); continue it with --resume {run}, "
            "or choose another --out"
        )
    return run, None  # created once the data has loaded: bad input leaves nothing behind


def open_run(run: Path, config: TrainConfig) -> None:
    """Create the run directory, sweep temporaries of a killed process, write config.toml."""
    run.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(run)
    atomic_write_text(run / NAME, config_toml(config))
