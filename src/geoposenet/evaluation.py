"""Evaluation: per-frame pose errors, the field's metrics, and the files a user reads.

Errors: position = Euclidean distance of camera centres (dataset units, metres); rotation = angle
of the relative rotation q_gt^-1 q_pred in degrees (the same for q and -q).
`evaluate` writes metrics.json, errors.csv, plots and report.md into its output folder.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoposenet.cache import atomic_write_text
from geoposenet.data import PoseDataset
from geoposenet.geometry import position_error, rotation_angle_deg
from geoposenet.models import PoseNet, predict
from geoposenet.scene import Scene

# (metres, degrees): 7-Scenes-style fine/medium/coarse bins and the Cambridge/Dubrovnik ones.
THRESHOLDS: tuple[tuple[float, float], ...] = (
    (0.05, 5.0), (0.25, 2.0), (0.5, 5.0), (1.0, 10.0), (2.0, 5.0), (5.0, 10.0), (10.0, 10.0),
)  # fmt: skip


@dataclass
class FrameErrors:
    """Per-frame results in the dataset's coordinates (metres; quaternions world -> camera,
    wxyz, predicted ones with w >= 0). Shapes: (N,) or (N, 3) / (N, 4)."""

    names: list[str]
    sequences: list[str]
    true_position: np.ndarray
    true_quaternion: np.ndarray
    position: np.ndarray
    quaternion: np.ndarray
    position_error_m: np.ndarray
    rotation_error_deg: np.ndarray


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


def frame_errors(
    model: PoseNet, scene: Scene, split: str = "test", batch_size: int = 32
) -> FrameErrors:
    """Predict every frame of `split` (centre crops at the model's own input size, `predict`:
    canonical quaternions) and compare."""
    config = model.config
    dataset = PoseDataset(
        scene,
        "test" if split == "test" else "train",
        offset=model.offset.cpu().numpy(),
        resize=config.resize,
        crop=config.crop,
        train=False,
        points_per_frame=0,
    )
    frames = scene.split("test" if split == "test" else "train")
    position, quaternion, _ = predict(model, dataset, batch_size)
    true_position = np.stack([f.centre for f in frames])
    true_quaternion = np.stack([f.quaternion for f in frames])
    pos_err, rot_err = pose_errors(position, quaternion, true_position, true_quaternion)
    return FrameErrors(
        [f.name for f in frames],
        [f.sequence for f in frames],
        true_position,
        true_quaternion,
        position,
        quaternion,
        pos_err,
        rot_err,
    )


def errors_csv(errors: FrameErrors) -> str:
    """errors.csv: one row per frame with true and predicted poses and both errors."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["name", "sequence", "position_error_m", "rotation_error_deg"]
        + [f"true_{a}" for a in ("x", "y", "z", "qw", "qx", "qy", "qz")]
        + [f"pred_{a}" for a in ("x", "y", "z", "qw", "qx", "qy", "qz")]
    )
    for i, name in enumerate(errors.names):
        writer.writerow(
            [name, errors.sequences[i]]
            + [f"{errors.position_error_m[i]:.6f}", f"{errors.rotation_error_deg[i]:.6f}"]
            + [f"{v:.9g}" for v in errors.true_position[i]]
            + [f"{v:.9g}" for v in errors.true_quaternion[i]]
            + [f"{v:.9g}" for v in errors.position[i]]
            + [f"{v:.9g}" for v in errors.quaternion[i]]
        )
    return buffer.getvalue()


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    format: str = "auto",
    batch_size: int = 32,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split. With `out`, write metrics.json, errors.csv,
    the plots and report.md there. Returns the metrics."""
    from geoposenet.readers import load_scene
    from geoposenet.report import write_report

    model = PoseNet.from_checkpoint(checkpoint)
    scene = load_scene(Path(data), format=format)
    errors = frame_errors(model, scene, split, batch_size)
    metrics = summarize(errors.position_error_m, errors.rotation_error_deg, errors.sequences)
    metrics["checkpoint"] = str(checkpoint)
    metrics["split"] = split
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        atomic_write_text(folder / "errors.csv", errors_csv(errors))
        run_dir = Path(checkpoint).parent
        write_report(folder, scene, errors, metrics, run_dir / "log.jsonl")
    return metrics
