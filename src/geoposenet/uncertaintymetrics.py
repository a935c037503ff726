"""How good a per-image uncertainty is, against the true errors of the same frames:

- Spearman rank correlation of uncertainty and error (1: the uncertainty orders the frames
  exactly by error; ties get their average rank);
- the sparsification curve: the median error of the frames kept after removing the most
  uncertain share f of them, for f = 0, 1/K, ..., (K-1)/K (removing floor(f N) frames; equal
  uncertainties keep the earlier frame first), against its oracle, which removes by true error;
  AUSE, the area between the two curves, is their mean difference over those K shares (a left
  Riemann sum over [0, 1), in the error's units; 0 is perfect);
- the median error of the 80% most certain frames against that of all frames;
- a calibration table: frames in equal-count bins of predicted uncertainty, the median predicted
  against the median observed error in each (calibrated values should lie on the diagonal).
Errors and uncertainties: (N,) arrays, position in the scene's units, rotation in degrees.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from geoposenet.metrics import FrameErrors

STEPS = 20  # sparsification shares removed: 0, 5, ..., 95%
KEPT = 0.8  # "the 80% most certain frames"
BINS = 10  # calibration bins


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks (N,) float64, tied values sharing the mean of their ranks."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    unique, inverse = np.unique(values, return_inverse=True)
    sums = np.bincount(inverse, weights=ranks, minlength=len(unique))
    counts = np.bincount(inverse, minlength=len(unique))
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (N,) arrays; nan when either is constant or N < 2."""
    if len(a) < 2:
        return math.nan
    x, y = average_ranks(a), average_ranks(b)
    x, y = x - x.mean(), y - y.mean()
    norm = math.sqrt(float(x @ x) * float(y @ y))
    return float(x @ y) / norm if norm > 0 else math.nan


def kept_medians(error: np.ndarray, key: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """(steps,) median `error` of the frames kept after removing the floor(k N / steps) frames
    of largest `key`, k = 0 .. steps-1 (stable: of equal keys, the later frame goes first)."""
    error = np.asarray(error, dtype=np.float64)
    order = np.argsort(np.asarray(key, dtype=np.float64), kind="stable")
    count = len(error)
    return np.array([np.median(error[order[: count - (k * count) // steps]]) for k in range(steps)])


def sparsification(
    error: np.ndarray, uncertainty: np.ndarray, steps: int = STEPS
) -> dict[str, Any]:
    """The sparsification curve by `uncertainty`, its oracle (by `error` itself) and AUSE:
    {"removed": shares, "curve", "oracle": (steps,) medians, "ause": mean(curve - oracle)}."""
    curve = kept_medians(error, uncertainty, steps)
    oracle = kept_medians(error, error, steps)
    return {
        "removed": [k / steps for k in range(steps)],
        "curve": curve.tolist(),
        "oracle": oracle.tolist(),
        "ause": float(np.mean(curve - oracle)),
    }


def median_of_most_certain(error: np.ndarray, uncertainty: np.ndarray, kept: float = KEPT) -> float:
    """Median error of the `kept` share of frames with the lowest uncertainty (the frames left
    after removing floor((1 - kept) N) of the most uncertain)."""
    error = np.asarray(error, dtype=np.float64)
    order = np.argsort(np.asarray(uncertainty, dtype=np.float64), kind="stable")
    count = len(error)
    removed = math.floor(round((1 - kept) * count, 9))
    return float(np.median(error[order[: count - removed]]))


def calibration_bins(
    predicted: np.ndarray, observed: np.ndarray, bins: int = BINS
) -> list[dict[str, float]]:
    """Frames sorted by predicted uncertainty in `bins` bins of (nearly) equal count: per bin
    the median predicted and the median observed error and the frame count."""
    order = np.argsort(np.asarray(predicted, dtype=np.float64), kind="stable")
    predicted, observed = np.asarray(predicted)[order], np.asarray(observed)[order]
    return [
        {
            "predicted": float(np.median(predicted[part])),
            "observed": float(np.median(observed[part])),
            "frames": len(part),
        }
        for part in np.array_split(np.arange(len(order)), min(bins, len(order)))
        if len(part)
    ]


def quality(error: np.ndarray, uncertainty: np.ndarray) -> dict[str, Any]:
    """Every figure of one quantity: spearman (None when undefined), the medians of all and of
    the 80% most certain frames and the reduction between them (1 - most certain / all), the
    sparsification curves with AUSE, the calibration bins and the median predicted
    uncertainty."""
    everything = float(np.median(error))
    certain = median_of_most_certain(error, uncertainty)
    correlation = spearman(uncertainty, error)
    return {
        "spearman": correlation if math.isfinite(correlation) else None,
        "median_error_all": everything,
        "median_error_most_certain_80": certain,
        "reduction_most_certain_80": 1 - certain / everything if everything > 0 else None,
        "median_uncertainty": float(np.median(uncertainty)),
        "sparsification": sparsification(error, uncertainty),
        "calibration_bins": calibration_bins(uncertainty, error),
    }


def uncertainty_metrics(errors: FrameErrors) -> dict[str, Any] | None:
    """metrics.json's "uncertainty" block for frames with an uncertainty (None without):
    kind, calibrated, and `quality` of position (scene units) and rotation (degrees)."""
    spread = errors.uncertainty
    if spread is None or not len(errors.names):
        return None
    return {
        "kind": spread.kind,
        "calibrated": spread.calibrated,
        "position": quality(errors.position_error_m, spread.position),
        "rotation": quality(errors.rotation_error_deg, spread.rotation),
    }
