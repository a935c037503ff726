"""A dataset written by `geoposenet augment` lists its synthesised sequences in ROOT/augment.json
(key "synthetic_sequences"); their frames are marked `synthetic` (never chosen for validation).
A listed sequence with no training frame is a problem: the file and the dataset disagree."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from geoposenet.readers._common import Problems
from geoposenet.scene import Scene

MARKER = "augment.json"


def synthetic_sequences(root: Path, problems: Problems) -> set[str]:
    """The sequence names ROOT/augment.json lists (empty when there is no such file)."""
    path = root / MARKER
    if not path.is_file():
        return set()
    try:
        names = json.loads(path.read_text(encoding="utf-8"))["synthetic_sequences"]
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise TypeError("not a list of names")
    except (OSError, ValueError, KeyError, TypeError) as error:
        problems.add(path, f"cannot read the synthetic sequences ({error})")
        return set()
    return set(names)


def mark_synthetic(scene: Scene, problems: Problems) -> Scene:
    """`scene` with the frames of its augment.json's sequences marked synthetic."""
    names = synthetic_sequences(scene.root, problems)
    if not names:
        return scene
    present = {f.sequence for f in scene.frames if f.split == "train"}
    for name in sorted(names - present):
        problems.add(scene.root / MARKER, f"synthetic sequence {name} has no training frames")
    frames = [replace(f, synthetic=True) if f.sequence in names else f for f in scene.frames]
    return scene.with_frames(frames)
