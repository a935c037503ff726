"""The library's error types. Anything raised as `InputError` is the user's input at fault
(dataset, flag, checkpoint): the command line prints its message and exits with code 2."""

from __future__ import annotations

import re
from pathlib import Path


def reason(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a user: at most `limit` characters, without
    the C++ source location torchvision's decoders put first ("decode_png, /x/decode_png.cpp:62,
    Internal error." -> "Internal error.")."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return re.sub(r"^[\w()]+, \S+\.(?:cpp|h):\d+, ", "", lines[0])[:limit]


class InputError(Exception):
    """Bad user input: a dataset file, a flag or a checkpoint. The message says what and where."""


class DatasetError(InputError):
    """A problem in a dataset file, located by path and (when known) 1-based line number."""

    def __init__(self, path: str | Path, message: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.reason = message
        where = f"{self.path}:{line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {message}")


class CheckpointError(InputError):
    """A checkpoint that cannot be loaded: missing, unsafe, of another format or backbone."""


class TrainingError(Exception):
    """Training cannot go on (e.g. a non-finite loss); the message says why and what was kept."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM during training: last.pt was written; the message says how to resume."""

    def __init__(
        self, run: Path, signum: int, epoch: int, batch: int, how_to_continue: str = ""
    ) -> None:
        self.run = Path(run)
        self.signum = signum
        self.epoch = epoch
        self.batch = batch
        how = how_to_continue or (
            f"geoposenet train --resume {self.run} (or the same command plus --resume, "
            f"e.g. geoposenet train ... --out {self.run} --resume)"
        )
        super().__init__(
            f"training stopped by signal {signum} at epoch {epoch + 1}, batch {batch}; "
            f"{self.run / 'last.pt'} holds the state. Continue with: {how}"
        )
