"""Pose errors and the field's metrics, as plain numbers: per-frame errors, medians, means,
accuracy at thresholds, per-sequence medians, errors.csv.

Errors: position = Euclidean distance of camera centres (dataset units, metres); rotation = angle
of the relative rotation q_gt^-1 q_pred in degrees (the same for q and -q).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geoposenet.geometry import position_error, rotation_angle_deg

if TYPE_CHECKING:
    from geoposenet.uncertainty import Uncertainty

# (metres, degrees): 7-Scenes-style fine/medium/coarse bins and the Cambridge/Dubrovnik ones.
THRESHOLDS: tuple[tuple[float, float], ...] = (
    (0.05, 5.0), (0.25, 2.0), (0.5, 5.0), (1.0, 10.0), (2.0, 5.0), (5.0, 10.0), (10.0, 10.0),
)  # fmt: skip


@dataclass
class FrameErrors:
    """Per-frame results in the dataset's coordinates (metres; quaternions world -> camera,
    wxyz, predicted ones with w >= 0). Shapes: (N,) or (N, 3) / (N, 4). uncertainty: the
    expected errors of the predictions, when asked for."""

    names: list[str]
    sequences: list[str]
    true_position: np.ndarray
    true_quaternion: np.ndarray
    position: np.ndarray
    quaternion: np.ndarray
    position_error_m: np.ndarray
    rotation_error_deg: np.ndarray
    uncertainty: Uncertainty | None = None


def pose_errors(
    position: np.ndarray, quaternion: np.ndarray, true_position: np.ndarray, true_q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Position error (N,) in metres and rotation error (N,) in degrees, float64."""

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    return (
        position_error(t(position), t(true_position)).numpy(),
        rotation_angle_deg(t(true_q), t(quaternion)).numpy(),
    )


def threshold_key(metres: float, degrees: float) -> str:
    """'0.25m_2deg' style key of an accuracy threshold."""
    return f"{metres:g}m_{degrees:g}deg"


def summarize(
    position_error_m: np.ndarray,
    rotation_error_deg: np.ndarray,
    sequences: list[str] | None = None,
) -> dict[str, Any]:
    """metrics.json content: counts, medians, means, accuracy at THRESHOLDS and per-sequence
    medians."""
    pos, rot = np.asarray(position_error_m), np.asarray(rotation_error_deg)
    metrics: dict[str, Any] = {
        "num_frames": len(pos),
        "median_position_error_m": float(np.median(pos)),
        "median_rotation_error_deg": float(np.median(rot)),
        "mean_position_error_m": float(np.mean(pos)),
        "mean_rotation_error_deg": float(np.mean(rot)),
        "accuracy": {
            threshold_key(m, d): float(np.mean((pos <= m) & (rot <= d))) for m, d in THRESHOLDS
        },
    }
    if sequences is not None:
        names = np.asarray(sequences)
        metrics["per_sequence"] = {
            seq: {
                "num_frames": int((names == seq).sum()),
                "median_position_error_m": float(np.median(pos[names == seq])),
                "median_rotation_error_deg": float(np.median(rot[names == seq])),
            }
            for seq in sorted(set(sequences))
        }
    return metrics


def errors_csv(errors: FrameErrors) -> str:
    """errors.csv: one row per frame with true and predicted poses and both errors, then the
    predicted uncertainty (position_uncertainty_m, rotation_uncertainty_deg) when there is one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    spread = errors.uncertainty
    writer.writerow(
        ["name", "sequence", "position_error_m", "rotation_error_deg"]
        + [f"true_{a}" for a in ("x", "y", "z", "qw", "qx", "qy", "qz")]
        + [f"pred_{a}" for a in ("x", "y", "z", "qw", "qx", "qy", "qz")]
        + ([] if spread is None else ["position_uncertainty_m", "rotation_uncertainty_deg"])
    )
    for i, name in enumerate(errors.names):
        writer.writerow(
            [name, errors.sequences[i]]
            + [f"{errors.position_error_m[i]:.6f}", f"{errors.rotation_error_deg[i]:.6f}"]
            + [f"{v:.9g}" for v in errors.true_position[i]]
            + [f"{v:.9g}" for v in errors.true_quaternion[i]]
            + [f"{v:.9g}" for v in errors.position[i]]
            + [f"{v:.9g}" for v in errors.quaternion[i]]
            + ([] if spread is None else [f"{spread.position[i]:.6f}", f"{spread.rotation[i]:.6f}"])
        )
    return buffer.getvalue()
