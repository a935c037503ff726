"""Metres per model unit, for reconstructions in arbitrary units (COLMAP, nerfstudio): `--scale S`
given directly, or `--scale-from FILE` computed from known distances between camera centres.

The scale file holds one known distance a line, `imageA imageB distance_m`: two image names as the
dataset names its frames (as `check` and errors.csv show them) and the distance in metres between
their camera centres, e.g. measured with a tape. Blank lines and lines starting with '#' are
skipped. With model distances m_i = |c_A - c_B| the scale is the least-squares fit
s = sum(d_i m_i) / sum(m_i^2); a line whose own ratio d_i / m_i differs from s by more than
MAX_DISAGREEMENT is noted (a wrong name or measurement shows there).
The scale multiplies camera centres and 3D points as the scene leaves the readers, so everything
downstream is in metres.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from geoposenet.errors import InputError
from geoposenet.readers._common import Problems, content_lines, parse_floats, read_lines
from geoposenet.scene import METRES, Scene

MAX_DISAGREEMENT = 0.05


def check_choice(scale: float | None, scale_from: str | Path | None) -> None:
    """InputError when both are given or `scale` is not positive and finite."""
    if scale is not None and scale_from is not None:
        raise InputError("--scale and --scale-from both set the scale; give one")
    if scale is not None and not 0 < scale < math.inf:
        raise InputError(f"--scale must be positive and finite, got {scale}")


def scale_from_file(path: Path, scene: Scene, problems: Problems) -> float | None:
    """Metres per model unit from the known distances in `path` (format above), using the
    scene's camera centres; None after reporting a problem."""
    centres = {frame.name: frame.centre for frame in scene.frames}
    reported = len(problems)
    model, metres = [], []
    for number, text in content_lines(read_lines(path, problems) or []):
        if text.lstrip().startswith("#"):
            continue
        tokens = text.split()
        if len(tokens) != 3:
            found = text.strip()
            problems.add(path, f"expected 'imageA imageB distance_m', found {found!r}", number)
            continue
        unknown = [name for name in tokens[:2] if name not in centres]
        if unknown:
            problems.add(path, f"image {unknown[0]!r} is not a frame of {scene.root}", number)
            continue
        distance = parse_floats(tokens[2:], "distance", path, number, problems)
        if distance is None:
            continue
        if distance[0] <= 0:
            problems.add(path, f"distance {tokens[2]} must be positive", number)
            continue
        between = float(np.linalg.norm(centres[tokens[0]] - centres[tokens[1]]))
        if between == 0.0:
            problems.add(path, f"{tokens[0]} and {tokens[1]} have the same camera centre", number)
            continue
        model.append((number, between))
        metres.append(float(distance[0]))
    if not model:
        if len(problems) == reported:
            problems.add(path, "no distance line ('imageA imageB distance_m')")
        return None
    m = np.array([between for _, between in model])
    d = np.array(metres)
    scale = float(d @ m / (m @ m))
    off = [f"line {n}: {r:.4g}" for (n, _), r in zip(model, d / m, strict=True)
           if abs(r / scale - 1) > MAX_DISAGREEMENT]  # fmt: skip
    if off:
        problems.notes.append(
            f"{path}: scale {scale:.6g} m per model unit, but {len(off)} line(s) disagree by "
            f"more than {MAX_DISAGREEMENT:.0%}: {', '.join(off[:3])}"
        )
    return scale


def in_metres(scene: Scene, scale: float) -> Scene:
    """The scene with centres and points multiplied by `scale` (metres per model unit)."""
    frames = [replace(frame, centre=frame.centre * scale) for frame in scene.frames]
    return Scene(scene.root, scene.name, scene.format, frames, scene.points * scale, METRES)
