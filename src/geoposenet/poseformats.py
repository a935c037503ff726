"""Predicted poses as text, in the field's formats (`geoposenet predict --format`, `eval`):

- csv: `image,x,y,z,qw,qx,qy,qz` after one `#` line stating the convention: the camera centre in
  world units and the unit world -> camera quaternion (w, x, y, z), w >= 0;
- json: a list of {"image", "position", "quaternion_wxyz"};
- colmap: the pose file of hloc and the visual localisation benchmark, one line per image,
  `name qw qx qy qz tx ty tz`: COLMAP's cam_from_world, rotation q and translation t = -R(q) c.
With an uncertainty (geoposenet.uncertainty), csv gains the columns position_uncertainty_m and
rotation_uncertainty_deg (the convention line says which kind and whether it is calibrated), and
every json entry the same keys plus "uncertainty" {"kind", "calibrated"}; the colmap format has no
place for it (use csv or json beside it).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

import numpy as np
import torch

from geoposenet.errors import InputError
from geoposenet.geometry import canonical_quaternion_np, translation_from_centre
from geoposenet.uncertainty import Uncertainty

CSV_CONVENTION = (
    "# x y z: camera centre in world units (metres, or model units for an unscaled scene); "
    "qw qx qy qz: unit world -> camera rotation, qw >= 0"
)
CSV_HEADER = "image,x,y,z,qw,qx,qy,qz"
UNCERTAINTY_COLUMNS = ("position_uncertainty_m", "rotation_uncertainty_deg")


def uncertainty_convention(uncertainty: Uncertainty) -> str:
    """What the uncertainty columns hold, in words (csv's convention line)."""
    meaning = (
        "the median error to expect (scaled on the validation split)"
        if uncertainty.calibrated
        else "UNCALIBRATED raw values (no validation split), only their order is meaningful"
    )
    return (
        f"; position_uncertainty_m (world units), rotation_uncertainty_deg: {uncertainty.kind} "
        f"uncertainty, {meaning}"
    )


def cam_from_world(centres: np.ndarray, quaternions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) camera centres and (N, 4) world -> camera quaternions (wxyz) -> COLMAP's
    cam_from_world: canonical quaternions (N, 4) wxyz and translations t = -R(q) c (N, 3),
    float64."""
    q = canonical_quaternion_np(np.asarray(quaternions, dtype=np.float64).reshape(-1, 4))
    c = torch.as_tensor(np.asarray(centres, dtype=np.float64).reshape(-1, 3))
    return q, translation_from_centre(torch.as_tensor(q), c).numpy()


def _number(value: float) -> str:
    """A float with every digit a float64 holds (17 significant), shortest form."""
    return repr(float(value))


def poses_csv(
    names: Sequence[str],
    centres: np.ndarray,
    quaternions: np.ndarray,
    uncertainty: Uncertainty | None = None,
) -> str:
    """The csv format: convention line, header, one row per image (+ the uncertainty)."""
    buffer = io.StringIO()
    if uncertainty is None:
        buffer.write(CSV_CONVENTION + "\n" + CSV_HEADER + "\n")
    else:
        convention = CSV_CONVENTION + uncertainty_convention(uncertainty)
        buffer.write(convention + "\n" + ",".join([CSV_HEADER, *UNCERTAINTY_COLUMNS]) + "\n")
    writer = csv.writer(buffer, lineterminator="\n")
    for i, (name, c, q) in enumerate(zip(names, centres, quaternions, strict=True)):
        extra = [] if uncertainty is None else [uncertainty.position[i], uncertainty.rotation[i]]
        writer.writerow([name, *(_number(v) for v in (*c, *q, *extra))])
    return buffer.getvalue()


def poses_json(
    names: Sequence[str],
    centres: np.ndarray,
    quaternions: np.ndarray,
    uncertainty: Uncertainty | None = None,
) -> str:
    """The json format: a list of {"image", "position", "quaternion_wxyz"} (+ the uncertainty:
    "position_uncertainty_m", "rotation_uncertainty_deg", "uncertainty": {kind, calibrated})."""
    rows = [
        {"image": name, "position": c.tolist(), "quaternion_wxyz": q.tolist()}
        for name, c, q in zip(names, np.asarray(centres), np.asarray(quaternions), strict=True)
    ]
    if uncertainty is not None:
        about = {"kind": uncertainty.kind, "calibrated": uncertainty.calibrated}
        for row, position, rotation in zip(
            rows, uncertainty.position, uncertainty.rotation, strict=True
        ):
            row |= {
                "position_uncertainty_m": float(position),
                "rotation_uncertainty_deg": float(rotation),
                "uncertainty": about,
            }
    return json.dumps(rows, indent=2) + "\n"


def poses_colmap(
    names: Sequence[str],
    centres: np.ndarray,
    quaternions: np.ndarray,
    uncertainty: Uncertainty | None = None,
) -> str:
    """The colmap format: `name qw qx qy qz tx ty tz` per image (cam_from_world); it has no
    place for `uncertainty`. InputError for a name with white space, which that format cannot
    hold."""
    q, t = cam_from_world(centres, quaternions)
    lines = []
    for name, qi, ti in zip(names, q, t, strict=True):
        if not name or any(ch.isspace() for ch in name):
            raise InputError(f"{name!r}: the colmap pose format cannot hold a name with spaces")
        lines.append(" ".join([name, *(_number(v) for v in (*qi, *ti))]))
    return "".join(line + "\n" for line in lines)


WRITERS = {"csv": poses_csv, "json": poses_json, "colmap": poses_colmap}


def format_poses(
    format: str,
    names: Sequence[str],
    centres: np.ndarray,
    quaternions: np.ndarray,
    uncertainty: Uncertainty | None = None,
) -> str:
    """The poses (and their uncertainty, csv and json) as text in `format` (csv | json |
    colmap, POSE_FORMATS of choices.py)."""
    return WRITERS[format](names, centres, quaternions, uncertainty)
