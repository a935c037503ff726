"""Checkpoint files: written atomically, read with torch.load(weights_only=True).

A checkpoint is a dict of plain data and tensors: format, version, model_config (dict), model
(state dict, incl. the scene offset buffer), and for training checkpoints the rest of a
geoposenet.runstate.RunState. Nothing in it is a pickled Python object, so loading one never runs
code. Format versions: 1 (geoposenet 0.1.0) and 2 (adds written_by) are read; 2 is written.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from geoposenet import __version__
from geoposenet.cache import atomic_write
from geoposenet.errors import CheckpointError

FORMAT = "geoposenet-checkpoint"
VERSION = 2
READABLE = (1, 2)


def save_checkpoint(path: Path, content: dict[str, Any]) -> None:
    """Write `content` (plain data and tensors) with format/version tags, atomically."""
    payload = {"format": FORMAT, "version": VERSION, **content}
    atomic_write(Path(path), lambda tmp: torch.save(payload, tmp))


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint a command-line argument names: a file as is, a run folder -> its last.pt
    (CheckpointError when the folder has none)."""
    path = Path(path)
    if path.is_dir():
        if not (path / "last.pt").is_file():
            raise CheckpointError(
                f"{path}: a folder without last.pt; give a checkpoint file (a run folder's "
                "last.pt or best.pt)"
            )
        return path / "last.pt"
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely; CheckpointError (exit 2) for anything that is not ours."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(
            f"{path}: a folder, not a checkpoint file (a run folder holds last.pt and best.pt)"
        )
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch names the global: "Unsupported global: GLOBAL x.y" (an allowed module) or
        # "unsupported GLOBAL os.system whose module os is blocked"
        unsafe = re.search(r"unsupported (?:global: )?GLOBAL (\S+)", str(error), re.IGNORECASE)
        if unsafe is None:
            raise CheckpointError(
                f"{path}: not a readable checkpoint (corrupt or truncated)"
            ) from error
        raise CheckpointError(
            f"{path}: refused: the file holds a pickled Python object ({unsafe.group(1)}) that "
            f"could run code when loaded; geoposenet only loads plain tensors and data"
        ) from error
    except Exception as error:  # truncated, corrupt, not a torch file
        reason = str(error).split(". ")[0].strip() or type(error).__name__  # torch adds advice
        raise CheckpointError(f"{path}: not a readable checkpoint ({reason})") from error
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a geoposenet checkpoint")
    if content.get("version") not in READABLE:
        writer = content.get("written_by")
        by = f"geoposenet {writer}" if writer else "a geoposenet that did not record its version"
        raise CheckpointError(
            f"{path}: checkpoint format version {content.get('version')!r}, written by {by}; "
            f"this geoposenet ({__version__}) reads versions {', '.join(map(str, READABLE))}"
        )
    for key in ("model_config", "model"):
        if not isinstance(content.get(key), dict):
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return content
