"""Per-image uncertainty of a predicted pose, as the error to expect: position in the scene's
units (metres, or model units) and rotation in degrees. Two kinds:

- `aleatoric` (Kendall & Gal, NeurIPS 2017): the pose head also predicts s_x(I), s_q(I), trained
  with eq. 4 per image, L_x(I) exp(-s_x(I)) + s_x(I) + ... (losses.AleatoricLoss). For one image,
  the expected loss E[L] e^-s + s is lowest at e^s = E[L | I]: exp(s_x(I)) is the expected
  position distance of the loss's norm (L1: sum of absolute coordinate errors, between 1 and
  sqrt(3) times the Euclidean error; L2: the Euclidean error), and exp(s_q(I)) the expected
  quaternion distance ||q - q^||, which for unit quaternions is the chord 2 sin(theta / 4) of a
  rotation by theta, so theta = 4 asin(exp(s_q) / 2) (`expected_errors`).
- `mc-dropout` (Bayesian PoseNet, Kendall & Cipolla, ICRA 2016): the dropout before the pose
  layer kept on, T poses per image; the pose is their mean (positions averaged, quaternions by
  `baselines.mean_quaternion`) and the uncertainty their spread: the sample standard deviation
  (T - 1 in the denominator, so it does not shrink with fewer samples and a scale fitted with
  one T applies to another) of the T positions' distances from the mean, and of the T rotation
  angles from the mean rotation (`mc_dropout_summary`).

Both raw values are made "the median error to expect" by one scale per quantity fitted on the
validation split (geoposenet.calibration), never on the test split.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from geoposenet.baselines import mean_quaternion
from geoposenet.errors import InputError
from geoposenet.metrics import pose_errors

MC_SAMPLES = 16  # stochastic passes of --uncertainty mc-dropout


class Uncertainty(NamedTuple):
    """Per-image expected errors: position (N,) in the scene's units (metres), rotation (N,) in
    degrees, float64; kind 'aleatoric' | 'mc-dropout'; calibrated: scaled by the factors fitted
    on the validation split (the median error to expect), else the raw values."""

    position: np.ndarray
    rotation: np.ndarray
    kind: str
    calibrated: bool


def resolve_kind(requested: str, aleatoric: bool, flag: str = "--uncertainty") -> str:
    """The kind `requested` (auto | none | aleatoric | mc-dropout) means for a model with or
    without the aleatoric head: 'none', 'aleatoric' or 'mc-dropout'. InputError naming `flag`
    for an aleatoric request to a model without the head, or an unknown name."""
    if requested == "auto":
        return "aleatoric" if aleatoric else "none"
    if requested == "aleatoric" and not aleatoric:
        raise InputError(
            f"{flag} aleatoric: this model has no aleatoric head (train it with --uncertainty "
            "aleatoric); --uncertainty mc-dropout works with a model trained with --dropout > 0"
        )
    if requested not in ("none", "aleatoric", "mc-dropout"):
        raise InputError(f"{flag}: expected auto, none, aleatoric or mc-dropout, got {requested!r}")
    return requested


def expected_errors(log_scales: Tensor) -> Tensor:
    """(B, 2) per-image s_x(I), s_q(I) -> (B, 2) raw expected errors: position exp(s_x) (the
    scene's units) and rotation 4 asin(min(exp(s_q) / 2, 1)) in degrees (module docstring)."""
    scale = torch.exp(log_scales)
    rotation = torch.rad2deg(4 * torch.asin(torch.clamp(scale[:, 1] / 2, max=1.0)))
    return torch.stack([scale[:, 0], rotation], dim=1)


def mc_dropout_summary(
    positions: np.ndarray, quaternions: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """T sampled poses per image, positions (T, B, 3) and unit quaternions (T, B, 4) -> the mean
    positions (B, 3), mean quaternions (B, 4, canonical) and the spread (B, 2): the sample
    standard deviation, sqrt(sum of squares / (T - 1)) (0 for T = 1), of the distances from the
    mean position (position units) and of the angles from the mean rotation (degrees)."""
    positions = np.asarray(positions, dtype=np.float64)
    quaternions = np.asarray(quaternions, dtype=np.float64)
    mean_position = positions.mean(axis=0)
    mean_q = mean_quaternion(np.swapaxes(quaternions, 0, 1))  # (B, T, 4) -> (B, 4)
    count = len(positions)
    distance, angle = pose_errors(
        positions.reshape(-1, 3),
        quaternions.reshape(-1, 4),
        np.tile(mean_position, (count, 1)),
        np.tile(mean_q, (count, 1)),
    )
    dof = max(count - 1, 1)
    spread = np.stack(
        [
            np.sqrt(np.sum(distance.reshape(count, -1) ** 2, axis=0) / dof),
            np.sqrt(np.sum(angle.reshape(count, -1) ** 2, axis=0) / dof),
        ],
        axis=1,
    )
    return mean_position, mean_q, spread


def calibrated(raw: np.ndarray, kind: str, scales: dict[str, dict[str, float]]) -> Uncertainty:
    """(N, 2) raw expected errors (position, rotation in degrees) of `kind` -> an Uncertainty,
    multiplied by the calibration `scales[kind]` ({"position": k, "rotation": k}) when there
    are any (calibrated=True), else the raw values."""
    raw = np.asarray(raw, dtype=np.float64).reshape(-1, 2)
    scale = scales.get(kind)
    if scale is None:
        return Uncertainty(raw[:, 0].copy(), raw[:, 1].copy(), kind, False)
    return Uncertainty(raw[:, 0] * scale["position"], raw[:, 1] * scale["rotation"], kind, True)
