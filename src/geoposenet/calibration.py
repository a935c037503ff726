"""Calibration of the per-image uncertainty: one scale per quantity, fitted on the validation
split only, so that a calibrated value is the median error to expect for that image.

For each quantity (position, rotation) the scale is k = median over the validation frames of
true error / raw uncertainty: then exactly half the validation frames have an error below their
calibrated uncertainty k * raw. The trainer fits it whenever it evaluates the validation split
and stores it in the checkpoint with the epoch (`Trainer.end_epoch`); `PoseNet.from_checkpoint`
applies it to every prediction path. A run without a validation split (--val none) has none, and
every output says "uncalibrated": the scale is never fitted on test frames.
"""

from __future__ import annotations

import numpy as np

from geoposenet.data import PoseDataset
from geoposenet.metrics import pose_errors
from geoposenet.models import PoseNet, predict
from geoposenet.uncertainty import MC_SAMPLES


def calibration_scale(error: np.ndarray, raw: np.ndarray) -> float | None:
    """median(error / raw) over the frames whose raw uncertainty is positive and finite (N,)
    arrays; None when there is no such frame (e.g. MC dropout without dropout)."""
    error, raw = np.asarray(error, dtype=np.float64), np.asarray(raw, dtype=np.float64)
    usable = np.isfinite(raw) & (raw > 0) & np.isfinite(error)
    if not usable.any():
        return None
    return float(np.median(error[usable] / raw[usable]))


def available_kinds(model: PoseNet) -> list[str]:
    """The uncertainty kinds `model` can give: aleatoric with that head, mc-dropout with
    dropout > 0."""
    kinds = ["aleatoric"] if model.config.aleatoric else []
    return kinds + (["mc-dropout"] if model.config.dropout > 0 else [])


def fit_calibration(
    model: PoseNet,
    dataset: PoseDataset,
    true_position: np.ndarray,
    true_quaternion: np.ndarray,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """The scales of every kind `model` gives, fitted on `dataset` (the validation split; its
    true centres (N, 3) and quaternions (N, 4) in item order): {kind: {"position": k,
    "rotation": k, "frames": N}} (+ "samples" T for mc-dropout). A kind whose raw values are
    all zero is left out. The model's own calibration is ignored (raw values are fitted)."""
    scales: dict[str, dict[str, float]] = {}
    before, model.calibration = model.calibration, {}
    try:
        for kind in available_kinds(model):
            poses = predict(model, dataset, batch_size, uncertainty=kind)
            assert poses.uncertainty is not None  # asked for
            position_error, rotation_error = pose_errors(
                poses.positions, poses.quaternions, true_position, true_quaternion
            )
            position = calibration_scale(position_error, poses.uncertainty.position)
            rotation = calibration_scale(rotation_error, poses.uncertainty.rotation)
            if position is None or rotation is None:
                continue
            scales[kind] = {"position": position, "rotation": rotation, "frames": len(dataset)}
            if kind == "mc-dropout":
                scales[kind]["samples"] = MC_SAMPLES
    finally:
        model.calibration = before
    return scales
