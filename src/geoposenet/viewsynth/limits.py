"""`Limits`: how far `geoposenet augment` may place new cameras from the training cameras.

Torch- and scipy-free: the command line shows the defaults without importing the sampler.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """How far new cameras may go from the training cameras.

    max_shift_m: jitter radius of the centre (metres); the free space also reaches this far
        beyond the training centres' extent.
    max_angle_deg: largest rotation of a jitter (degrees, the angle of D).
    max_roll_deg: largest twist about the optical axis within that rotation (None: no own limit).
    between: fraction of the views placed between two training trajectories (0..1).
    max_gap_m, max_gap_deg: the largest distance and relative angle of the two training poses
        a between-view interpolates.
    between_jitter: a between-view's jitter, as a fraction of max_shift_m and max_angle_deg.
    clearance_m: the least distance from a new centre (and the path to it from its source
        camera) to the scene's 3D points.
    rotation_only: keep the centre of the training camera, only turn it (between is ignored
        and no free-space test is made: a camera stood there).
    """

    max_shift_m: float = 0.5
    max_angle_deg: float = 15.0
    max_roll_deg: float | None = 5.0
    between: float = 0.5
    max_gap_m: float = 2.0
    max_gap_deg: float = 45.0
    between_jitter: float = 0.25
    clearance_m: float = 0.25
    rotation_only: bool = False

    def __post_init__(self) -> None:
        ranges = {
            "max_shift_m": (0.0, math.inf),
            "max_angle_deg": (0.0, 180.0),
            "max_roll_deg": (0.0, 180.0),
            "between": (0.0, 1.0),
            "max_gap_m": (0.0, math.inf),
            "max_gap_deg": (0.0, 180.0),
            "between_jitter": (0.0, 1.0),
            "clearance_m": (0.0, math.inf),
        }
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "rotation_only":
                if not isinstance(value, bool):
                    raise ValueError(f"Limits.rotation_only must be True or False, got {value!r}")
                continue
            if f.name == "max_roll_deg" and value is None:
                continue
            lo, hi = ranges[f.name]
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if not (ok and math.isfinite(value) and lo <= value <= hi):
                span = f"at least {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
                raise ValueError(f"Limits.{f.name} must be a finite number {span}, got {value!r}")
