"""The validation split: training frames held out to choose a model, so the test split is only
ever evaluated.

`--val` takes one of:
- `auto` (default): whole training sequences when there are at least 3 (the last
  round(0.15 x count) of them in name order, at least 1), else a stretch of each sequence;
- a fraction in (0, 0.5], e.g. `0.15`: a contiguous stretch of that share of every training
  sequence, from its middle, with GAP_FRACTION of the sequence left out on both sides of it
  (frames next to a validation frame look almost the same, so they would leak into it);
- a comma-separated list of training sequence names, e.g. `seq-03,seq-05`;
- `none`: no validation split (then no model is chosen: `best.pt` is not written).
Synthesised frames (`geoposenet augment`) are never held out: validation measures real images.
Frames are never interleaved: consecutive video frames are near-duplicates, so a validation
frame next to a training frame measures memory, not generalisation. Gap frames are excluded
from both and counted in the summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from geoposenet.errors import InputError
from geoposenet.scene import Frame, Scene

AUTO_FRACTION = 0.15  # share of the training data held out by `auto`
GAP_FRACTION = 0.03  # share of a sequence left out on each side of a validation stretch
MIN_SEQUENCE = 8  # shorter sequences give no validation stretch


@dataclass(frozen=True)
class Holdout:
    """What was held out: validation frame and gap frame counts, and how (for logs)."""

    val: int
    gap: int
    description: str


def parse_val(spec: str) -> str | float | tuple[str, ...]:
    """`--val` text -> 'auto' | 'none' | a fraction | a tuple of sequence names (InputError)."""
    text = spec.strip()
    if text in ("auto", "none"):
        return text
    try:
        fraction = float(text)
    except ValueError:
        names = tuple(name.strip() for name in text.split(",") if name.strip())
        if not names:
            raise InputError(
                f"--val: expected auto, none, a fraction or sequences, got {spec!r}"
            ) from None
        return names
    if not 0 < fraction <= 0.5:
        raise InputError(f"--val: a fraction must be in (0, 0.5], got {spec!r}")
    return fraction


def hold_out(scene: Scene, spec: str) -> tuple[Scene, Holdout]:
    """A copy of `scene` whose training frames chosen by `spec` have split 'val' and whose gap
    frames are removed; test frames are untouched. Points are shared, not copied."""
    choice = parse_val(spec)
    sequences = _training_sequences(scene)
    if choice == "none":
        return scene, Holdout(0, 0, "none (--val none): no model selection")
    if isinstance(choice, tuple):
        unknown = [name for name in choice if name not in sequences]
        if unknown:
            raise InputError(
                f"--val: {', '.join(unknown)} is not a training sequence of {scene.root} "
                f"(training sequences: {', '.join(sorted(sequences))})"
            )
        if len(choice) == len(sequences):
            raise InputError("--val: every training sequence would be held out")
        return _whole_sequences(scene, set(choice))
    if choice == "auto" and len(sequences) >= 3:
        count = max(1, round(AUTO_FRACTION * len(sequences)))
        return _whole_sequences(scene, set(sorted(sequences)[-count:]))
    fraction = AUTO_FRACTION if choice == "auto" else float(choice)
    result = _stretches(scene, sequences, fraction)
    if result[1].val == 0 and choice != "auto":
        raise InputError(
            f"--val {spec}: every training sequence is shorter than {MIN_SEQUENCE} frames; "
            "name whole sequences or use --val none"
        )
    return result


def _training_sequences(scene: Scene) -> dict[str, list[Frame]]:
    """Captured (not synthesised) training frames by sequence, each sorted by frame name (the
    capture order)."""
    groups: dict[str, list[Frame]] = {}
    for frame in scene.split("train"):
        if frame.synthetic:
            continue
        groups.setdefault(frame.sequence, []).append(frame)
    return {name: sorted(frames, key=lambda f: f.name) for name, frames in groups.items()}


def _whole_sequences(scene: Scene, held: set[str]) -> tuple[Scene, Holdout]:
    frames = [
        replace(f, split="val") if f.split == "train" and f.sequence in held else f
        for f in scene.frames
    ]
    count = sum(f.split == "val" for f in frames)
    names = ", ".join(sorted(held))
    return scene.with_frames(frames), Holdout(count, 0, f"whole sequences {names} ({count} frames)")


def _stretches(
    scene: Scene, sequences: dict[str, list[Frame]], fraction: float
) -> tuple[Scene, Holdout]:
    role: dict[str, str] = {}  # frame name -> 'val' | 'gap'
    for frames in sequences.values():
        n = len(frames)
        if n < MIN_SEQUENCE:
            continue
        size = max(1, math.ceil(fraction * n))
        gap = max(1, math.ceil(GAP_FRACTION * n))
        start = (n - size) // 2
        for i in range(max(start - gap, 0), min(start + size + gap, n)):
            role[frames[i].name] = "val" if start <= i < start + size else "gap"
    frames = [
        replace(f, split="val") if f.split == "train" and role.get(f.name) == "val" else f
        for f in scene.frames
        if not (f.split == "train" and role.get(f.name) == "gap")
    ]
    val = sum(r == "val" for r in role.values())
    gap = sum(r == "gap" for r in role.values())
    if val == 0:
        return scene, Holdout(0, 0, f"none: every training sequence is under {MIN_SEQUENCE} frames")
    text = (
        f"the middle {fraction:.0%} of each training sequence ({val} frames), "
        f"{gap} frames beside them left out"
    )
    return scene.with_frames(frames), Holdout(val, gap, text)
