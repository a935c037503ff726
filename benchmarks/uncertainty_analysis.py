"""Why the per-image uncertainty misses issue 18's targets: measured reasons, from the trained
checkpoints of benchmarks/uncertainty.py (no training here: inference and statistics only).

Targets (issue 18): Spearman correlation between predicted uncertainty and true test position
error >= 0.5, and the median position error of the 80% most certain test frames >= 20% below
the median of all test frames. For every run (learned-seed{0,1}, aleatoric-seed{0,1}) this
predicts the training, validation and test frames once (the run's own validation split, from
its config.toml) and measures:

1. where the test error comes from: Spearman of the true test position error with the pose
   novelty (distance to the nearest training pose, metres + degrees / 25, the project's pose
   distance: baselines.pose_distance) and with the distance to the nearest training centre;
   the novelty used as an uncertainty is the ORACLE row (it needs the true pose);
2. the aleatoric head in and out of distribution: its Spearman with the error on training,
   validation and test frames, and its Spearman with the novelty;
3. MC dropout: the dropout acts on the pooled feature right before the one linear pose layer
   (models.PoseNet.regress / sample_poses), so for T -> infinity the position spread is exactly
   sqrt(p / (1 - p) * sum_j w_j f_j^2), w_j the summed squared position weights of feature j:
   a weighted norm of the feature. Measured: the spread's Spearman with the feature's L2 norm,
   the true error and the novelty; the partial Spearman with the error given the norm; the
   Spearman of spread / norm with the error; T = 16 and 64 over several mask seeds and the
   T -> infinity limit (is the sign estimator noise?);
4. a feature-space novelty: 1 - the highest cosine similarity of a frame's pooled feature to a
   training frame's (unit-length features, as baselines.nearest_feature_pose), and the plain
   L2 distance of the raw features; Spearman and 80%-most-certain reduction, no calibration;
5. bootstrap 95% intervals (percentile) over the test frames: 1000 resamples of frames (seeded;
   the same resamples for every run, so differences between runs are paired), and, because
   consecutive frames of a walk are near-duplicates, a moving-block bootstrap as well (blocks
   of BLOCK frames within each test walk).
The true error is that of the deterministic pose (dropout off), except for MC dropout, whose
reported pose is the mean of its samples (as `geoposenet eval` evaluates it). Writes
OUT/analysis.md and OUT/analysis.json and prints the tables.

    python benchmarks/uncertainty_analysis.py --runs /tmp/bench-uncertainty --out OUT
        # about 2 min on 2 cores with one thread
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata, spearmanr

from geoposenet.baselines import pose_distance
from geoposenet.cache import atomic_write_text
from geoposenet.data import PoseDataset
from geoposenet.machine import describe
from geoposenet.metrics import pose_errors
from geoposenet.models import PoseNet, predict
from geoposenet.readers import load_scene
from geoposenet.scene import Scene, Split
from geoposenet.uncertainty import mc_dropout_summary
from geoposenet.uncertaintymetrics import median_of_most_certain
from geoposenet.validation import hold_out

RUNS = ("learned-seed0", "learned-seed1", "aleatoric-seed0", "aleatoric-seed1")
SPLITS: tuple[Split, ...] = ("train", "val", "test")
BATCH = 32  # as `geoposenet eval`: the MC masks are drawn batch by batch
SAMPLES = (16, 64)  # MC dropout passes compared
MASK_SEEDS = 5  # MC dropout mask seeds per T (seed 0 is the one `geoposenet eval` uses)
RESAMPLES = 1000
BLOCK = 25  # frames per block of the moving-block bootstrap (1/8 of a 200-frame walk)
TARGET_SPEARMAN = 0.5
TARGET_REDUCTION = 0.2


# ---------------------------------------------------------------------------- statistics


def rho(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two (N,) arrays (scipy.stats.spearmanr)."""
    return float(spearmanr(a, b).statistic)


def partial_rho(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> float:
    """Partial Spearman correlation of x and y given z, (N,) arrays: the correlation of the
    ranks of x and y after removing from each its linear dependence on the ranks of z,
    (r_xy - r_xz r_yz) / sqrt((1 - r_xz^2)(1 - r_yz^2))."""
    xy, xz, yz = rho(x, y), rho(x, z), rho(y, z)
    return (xy - xz * yz) / math.sqrt((1 - xz**2) * (1 - yz**2))


def reduction(error: np.ndarray, uncertainty: np.ndarray) -> float:
    """1 - median error of the 80% most certain frames / median error of all: the issue's
    second target (>= 0.2), (N,) arrays."""
    return 1 - median_of_most_certain(error, uncertainty) / float(np.median(error))


def iid_resamples(count: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, count) frame indices drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, count, size=(resamples, count))


def block_resamples(
    sequences: list[str], resamples: int, seed: int, block: int = BLOCK
) -> np.ndarray:
    """(resamples, N) indices of a moving-block bootstrap within each sequence: for a sequence
    of n frames (in frame order), ceil(n / block) blocks of `block` consecutive frames with
    uniform random starts, concatenated and cut to n; sequences keep their frame counts."""
    rng = np.random.default_rng(seed)
    names = np.asarray(sequences)
    parts = []
    for name in dict.fromkeys(sequences):
        members = np.flatnonzero(names == name)
        n = len(members)
        size = min(block, n)
        starts = rng.integers(0, n - size + 1, size=(resamples, math.ceil(n / size)))
        offsets = (starts[:, :, None] + np.arange(size)).reshape(resamples, -1)[:, :n]
        parts.append(members[offsets])
    return np.concatenate(parts, axis=1)


def resampled_rho(a: np.ndarray, b: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(R,) Spearman correlations of a[index[r]] and b[index[r]] for each row r of the (R, N)
    resample indices: Pearson correlation of average ranks, vectorised (equals spearmanr)."""
    x = rankdata(a[index], axis=1)
    y = rankdata(b[index], axis=1)
    x -= x.mean(axis=1, keepdims=True)
    y -= y.mean(axis=1, keepdims=True)
    return np.sum(x * y, axis=1) / np.sqrt(np.sum(x * x, axis=1) * np.sum(y * y, axis=1))


def resampled_reduction(error: np.ndarray, key: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(R,) `reduction` of error by key over each row of the (R, N) resample indices."""
    return np.array([reduction(error[row], key[row]) for row in index])


def interval(values: np.ndarray) -> list[float]:
    """The 2.5 and 97.5 percentiles of bootstrap values (R,)."""
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


# ---------------------------------------------------------------------------- measurements


def sha256(path: Path) -> str:
    """First 12 hex digits of the file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def novelty(
    centres: np.ndarray, quaternions: np.ndarray, train_c: np.ndarray, train_q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (N,): distance to the nearest training pose (metres + degrees / 25,
    baselines.pose_distance) and distance to the nearest training centre (metres)."""
    pose = np.concatenate(
        [
            pose_distance(centres[s : s + 512], quaternions[s : s + 512], train_c, train_q).min(1)
            for s in range(0, len(centres), 512)
        ]
    )
    centre = np.concatenate(
        [
            np.linalg.norm(centres[s : s + 512, None] - train_c[None], axis=-1).min(1)
            for s in range(0, len(centres), 512)
        ]
    )
    return pose, centre


def feature_novelty(features: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per frame (N,) of features (N, D) against training features (M, D), raw pooled
    features: 1 - the highest cosine similarity (unit-length features) and the smallest L2
    distance (raw features, feature units)."""
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    unit_train = train / np.linalg.norm(train, axis=1, keepdims=True)
    cosine = 1 - (unit @ unit_train.T).max(axis=1)
    squared = (
        np.sum(features**2, axis=1)[:, None] - 2 * features @ train.T + np.sum(train**2, axis=1)
    )
    return cosine, np.sqrt(np.maximum(squared, 0).min(axis=1))


def mc_spread(
    model: PoseNet, features: np.ndarray, samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """MC dropout from pooled features (N, D) float64 (exactly the float32 features of the
    model, widened), drawn as `predict` draws them (batches of BATCH, one generator seeded with
    `seed`): the mean positions (N, 3) in scene coordinates (metres) and the position spread
    (N,) in metres."""
    generator = torch.Generator().manual_seed(seed)
    positions, spreads = [], []
    with torch.inference_mode():
        for start in range(0, len(features), BATCH):
            chunk = torch.from_numpy(features[start : start + BATCH]).float()
            drawn = model.sample_poses(chunk, samples, generator)
            mean, _, spread = mc_dropout_summary(
                model.to_scene(drawn.position).numpy(), drawn.quaternion.double().numpy()
            )
            positions.append(mean)
            spreads.append(spread[:, 0])
    return np.concatenate(positions), np.concatenate(spreads)


def analytic_spread(model: PoseNet, features: np.ndarray) -> np.ndarray:
    """(N,) the T -> infinity limit of the MC position spread (metres) for features (N, D):
    the position outputs are W (m * f) / keep + b with Bernoulli(keep) masks m, so the expected
    squared distance from their mean is p / keep * sum_j (sum_i W_ij^2) f_j^2 (p = 1 - keep)."""
    weight = model.head.weight.detach().double().numpy()[:3]  # (3, D) position rows
    p = model.config.dropout
    return np.sqrt(p / (1 - p) * (features**2) @ np.sum(weight**2, axis=0))


def predict_split(model: PoseNet, scene: Scene, split: Split) -> dict[str, Any]:
    """Deterministic prediction of the frames of `split`: true poses, position error (m), pooled
    features (N, D), the raw aleatoric position value exp(s_x) (None without the head)."""
    frames = scene.split(split)
    dataset = PoseDataset(
        scene, split, model.offset.numpy(), model.config.resize, model.config.crop,
        train=False, points_per_frame=0,
    )  # fmt: skip
    kind = "aleatoric" if model.config.aleatoric else "none"
    poses = predict(model, dataset, BATCH, features=True, uncertainty=kind)
    centres = np.stack([f.centre for f in frames])
    quaternions = np.stack([f.quaternion for f in frames])
    error, _ = pose_errors(poses.positions, poses.quaternions, centres, quaternions)
    return {
        "centres": centres,
        "quaternions": quaternions,
        "sequences": [f.sequence for f in frames],
        "error": error,
        "features": poses.features,
        "aleatoric": None if poses.uncertainty is None else poses.uncertainty.position,
    }


def analyse_run(folder: Path, checkpoint: str, resamples: int, seed: int) -> dict[str, Any]:
    """Every measurement of one run (module docstring); values keyed by name, with bootstrap
    distributions kept under "_boot" for paired comparisons (not written to JSON)."""
    recipe = tomllib.loads((folder / "config.toml").read_text())
    path = folder / checkpoint
    model = PoseNet.from_checkpoint(path)
    model.calibration = {}  # raw values: ranks are what is measured
    stored = torch.load(path, map_location="cpu", weights_only=False)
    scene = load_scene(Path(recipe["options"]["data"]), format=recipe["recipe"]["format"])
    scene, holdout = hold_out(scene, recipe["recipe"]["val"])
    splits = {split: predict_split(model, scene, split) for split in SPLITS}
    train, test = splits["train"], splits["test"]
    for block in splits.values():
        block["novelty"], block["centre_gap"] = novelty(
            block["centres"], block["quaternions"], train["centres"], train["quaternions"]
        )
        block["feature_cosine"], block["feature_l2"] = feature_novelty(
            block["features"], train["features"]
        )
        block["norm"] = np.linalg.norm(block["features"], axis=1)
    error = test["error"]
    iid = iid_resamples(len(error), resamples, seed)
    blocks = block_resamples(test["sequences"], resamples, seed)
    boot: dict[str, np.ndarray] = {}
    other = folder / ("best.pt" if checkpoint == "last.pt" else "last.pt")
    same_weights = None
    if other.is_file():
        weights = torch.load(other, map_location="cpu", weights_only=False)["model"]
        same_weights = all(torch.equal(v, weights[k]) for k, v in stored["model"].items())
    result: dict[str, Any] = {
        "checkpoint": str(path),
        "sha256": sha256(path),
        "epoch": stored.get("epoch"),
        "other_checkpoint": str(other),
        "other_checkpoint_same_weights": same_weights,
        "holdout": holdout.description,
        "frames": {s: len(b["error"]) for s, b in splits.items()},
        "median_error_m": {s: float(np.median(b["error"])) for s, b in splits.items()},
        "median_novelty": {s: float(np.median(b["novelty"])) for s, b in splits.items()},
        "error_autocorrelation_lag1": float(
            np.mean(
                [
                    np.corrcoef(e[:-1], e[1:])[0, 1]
                    for name in dict.fromkeys(test["sequences"])
                    for e in [error[np.asarray(test["sequences"]) == name]]
                ]
            )
        ),
    }

    def measure(name: str, key: np.ndarray, err: np.ndarray = error) -> dict[str, Any]:
        """Spearman of key with the test error and the 80% reduction, with both intervals."""
        values = {"iid": resampled_rho(key, err, iid), "block": resampled_rho(key, err, blocks)}
        cuts = {
            "iid": resampled_reduction(err, key, iid),
            "block": resampled_reduction(err, key, blocks),
        }
        boot[name] = values["iid"]
        boot[name + ":block"] = values["block"]
        boot[name + ":reduction"] = cuts["iid"]
        return {
            "spearman": rho(key, err),
            "spearman_ci": interval(values["iid"]),
            "spearman_block_ci": interval(values["block"]),
            "reduction": reduction(err, key),
            "reduction_ci": interval(cuts["iid"]),
            "reduction_block_ci": interval(cuts["block"]),
        }

    check = resampled_rho(test["novelty"], error, iid[:3])
    expected = [rho(test["novelty"][row], error[row]) for row in iid[:3]]
    assert np.allclose(check, expected, atol=1e-12), (check, expected)

    # 1. where the error comes from; the oracle novelty as an uncertainty
    val = splits["val"]
    thirds = np.array_split(np.argsort(test["novelty"], kind="stable"), 3)
    result["source"] = {
        "oracle_novelty": measure("oracle_novelty", test["novelty"]),
        "centre_gap": measure("centre_gap", test["centre_gap"]),
        "val_oracle_novelty_spearman": rho(val["novelty"], val["error"]),
        "reduction_ceiling": reduction(error, error),
        "median_error_by_novelty_third": [float(np.median(error[t])) for t in thirds],
        "median_novelty_by_third": [float(np.median(test["novelty"][t])) for t in thirds],
    }
    # 2. the aleatoric head on training, validation and test frames
    if model.config.aleatoric:
        result["aleatoric"] = {
            "test": measure("aleatoric", test["aleatoric"]),
            "spearman": {s: rho(b["aleatoric"], b["error"]) for s, b in splits.items()},
            "median_raw": {s: float(np.median(b["aleatoric"])) for s, b in splits.items()},
            "spearman_with_novelty": rho(test["aleatoric"], test["novelty"]),
            "spearman_with_norm": rho(test["aleatoric"], test["norm"]),
            "spearman_with_feature_cosine": rho(test["aleatoric"], test["feature_cosine"]),
            "val_spearman_with_novelty": rho(val["aleatoric"], val["novelty"]),
        }
    # 3. MC dropout
    if model.config.dropout > 0:
        by_samples: dict[str, Any] = {}
        for samples in SAMPLES:
            rhos, firsts = [], None
            for mask_seed in range(MASK_SEEDS):
                mean, spread = mc_spread(model, test["features"], samples, mask_seed)
                mc_error = np.linalg.norm(mean - test["centres"], axis=1)
                rhos.append(rho(spread, mc_error))
                if firsts is None:
                    firsts = (spread, mc_error)
            assert firsts is not None
            by_samples[str(samples)] = {
                "spearman_per_mask_seed": rhos,
                "mean": float(np.mean(rhos)),
                "sd": float(np.std(rhos, ddof=1)),
            }
            if samples == SAMPLES[0]:
                spread16, mc_error16 = firsts
        limit = analytic_spread(model, test["features"])
        _, spread_long = mc_spread(model, test["features"], 1024, 0)
        norm = test["norm"]
        result["mc_dropout"] = {
            "samples": SAMPLES[0],
            "test": measure("mc_dropout", spread16, mc_error16),
            "spearman_with_norm": rho(spread16, norm),
            "spearman_with_novelty": rho(spread16, test["novelty"]),
            "partial_spearman_given_norm": partial_rho(spread16, mc_error16, norm),
            "normalised": measure("mc_dropout_per_norm", spread16 / norm, mc_error16),
            "norm_spearman_with_error": rho(norm, error),
            "norm_spearman_with_novelty": rho(norm, test["novelty"]),
            "by_samples": by_samples,
            "limit": {
                "spearman_with_error": rho(limit, error),
                "spearman_with_norm": rho(limit, norm),
                "spearman_with_T1024": rho(limit, spread_long),
                "median_ratio_T1024_to_limit": float(np.median(spread_long / limit)),
            },
            "val_spearman": rho(analytic_spread(model, val["features"]), val["error"]),
            "train_spearman": rho(analytic_spread(model, train["features"]), train["error"]),
        }
    # 4. feature-space novelty
    result["feature_novelty"] = {
        "cosine": measure("feature_cosine", test["feature_cosine"]),
        "l2": measure("feature_l2", test["feature_l2"]),
        "val_cosine_spearman": rho(val["feature_cosine"], val["error"]),
        "val_cosine_reduction": reduction(val["error"], val["feature_cosine"]),
        "val_l2_spearman": rho(val["feature_l2"], val["error"]),
        "val_l2_reduction": reduction(val["error"], val["feature_l2"]),
        "cosine_spearman_with_novelty": rho(test["feature_cosine"], test["novelty"]),
        "norm_spearman_with_error": rho(test["norm"], error),
    }
    # the same numbers as `geoposenet eval` wrote beside the run (benchmarks/uncertainty.py)?
    reproduced = {}
    for kind, section in (("aleatoric", "aleatoric"), ("mc-dropout", "mc_dropout")):
        metrics = folder / f"eval-{kind}" / "metrics.json"
        if metrics.is_file() and section in result:
            stored_rho = json.loads(metrics.read_text())["uncertainty"]["position"]["spearman"]
            reproduced[kind] = {"eval": stored_rho, "here": result[section]["test"]["spearman"]}
    result["reproduces_eval"] = reproduced
    result["_boot"] = boot
    return result


# ---------------------------------------------------------------------------- tables


def ci(block: dict[str, Any], key: str = "spearman") -> str:
    """'0.27 [0.17, 0.36] {0.05, 0.47}': value, iid interval, block interval (a reduction in
    percent)."""
    scale, digits, unit = (100.0, 1, "%") if key == "reduction" else (1.0, 2, "")
    value = float(block[key]) * scale
    low, high = (float(v) * scale for v in block[f"{key}_ci"])
    b_low, b_high = (float(v) * scale for v in block[f"{key}_block_ci"])
    shown = f"{value:.1f}%" if unit else f"{value:.3f}"
    return (
        f"{shown} [{low:.{digits}f}, {high:.{digits}f}] {{{b_low:.{digits}f}, {b_high:.{digits}f}}}"
    )


def table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def tables(results: dict[str, dict[str, Any]]) -> list[str]:
    """The report's sections, markdown."""
    out = []
    out.append("## 1. Where the test error comes from")
    out.append(
        table(
            [
                "run",
                "median pos. error test (m)",
                "median novelty val / test (m + deg/25)",
                "Spearman error ~ pose novelty (oracle)",
                "80% reduction by pose novelty",
                "Spearman error ~ nearest training centre",
                "median error by novelty third (m)",
                "oracle Spearman on val",
                "ceiling: 80% reduction removing by the true error",
            ],
            [
                [
                    name,
                    f"{r['median_error_m']['test']:.3f}",
                    f"{r['median_novelty']['val']:.3f} / {r['median_novelty']['test']:.3f}",
                    ci(r["source"]["oracle_novelty"]),
                    ci(r["source"]["oracle_novelty"], "reduction"),
                    ci(r["source"]["centre_gap"]),
                    " / ".join(f"{v:.2f}" for v in r["source"]["median_error_by_novelty_third"]),
                    f"{r['source']['val_oracle_novelty_spearman']:.3f}",
                    f"{100 * r['source']['reduction_ceiling']:.1f}%",
                ]
                for name, r in results.items()
            ],
        )
    )
    out.append("## 2. The aleatoric head in and out of distribution")
    rows = []
    for name, r in results.items():
        if "aleatoric" not in r:
            continue
        a = r["aleatoric"]
        rows.append(
            [
                name,
                " / ".join(f"{a['spearman'][s]:.3f}" for s in SPLITS),
                ci(a["test"]),
                ci(a["test"], "reduction"),
                f"{a['spearman_with_novelty']:.3f} / {a['val_spearman_with_novelty']:.3f}",
                f"{a['spearman_with_feature_cosine']:.3f}",
                " / ".join(f"{a['median_raw'][s]:.3f}" for s in SPLITS),
                " / ".join(f"{r['median_error_m'][s]:.3f}" for s in SPLITS),
            ]
        )
    out.append(
        table(
            [
                "run",
                "Spearman aleatoric ~ error train / val / test",
                "test, with intervals",
                "80% reduction (test)",
                "Spearman aleatoric ~ pose novelty test / val",
                "aleatoric ~ feature cosine distance (test)",
                "median exp(s_x) train / val / test (raw)",
                "median pos. error train / val / test (m)",
            ],
            rows,
        )
    )
    out.append("## 3. MC dropout: what its spread measures")
    rows, noise = [], []
    for name, r in results.items():
        m = r["mc_dropout"]
        rows.append(
            [
                name,
                ci(m["test"]),
                f"{m['spearman_with_norm']:.3f}",
                f"{m['spearman_with_novelty']:.3f}",
                f"{m['norm_spearman_with_error']:.3f} / {m['norm_spearman_with_novelty']:.3f}",
                f"{m['partial_spearman_given_norm']:.3f}",
                ci(m["normalised"]),
                f"{m['train_spearman']:.3f} / {m['val_spearman']:.3f}",
            ]
        )
        s = m["by_samples"]
        limit = m["limit"]
        noise.append(
            [name]
            + [f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f}" for k in s]
            + [
                f"{limit['spearman_with_error']:.3f}",
                f"{limit['spearman_with_norm']:.3f}",
                f"{limit['spearman_with_T1024']:.3f} / {limit['median_ratio_T1024_to_limit']:.3f}",
            ]
        )
    out.append(
        table(
            [
                "run",
                "Spearman spread (T=16) ~ error",
                "spread ~ feature L2 norm",
                "spread ~ pose novelty",
                "feature norm ~ error / ~ novelty",
                "partial Spearman spread ~ error given norm",
                "spread / norm ~ error",
                "limit spread ~ error on train / val",
            ],
            rows,
        )
    )
    out.append(
        table(
            ["run"]
            + [f"Spearman ~ error, T={k} ({MASK_SEEDS} mask seeds, mean ± sd)" for k in SAMPLES]
            + [
                "T -> inf (analytic) ~ error",
                "T -> inf ~ feature L2 norm",
                "T -> inf vs T=1024: Spearman / median ratio",
            ],
            noise,
        )
    )
    out.append("## 4. Feature-space novelty as an uncertainty (no calibration)")
    out.append(
        table(
            [
                "run",
                "Spearman cosine-distance ~ error (test)",
                "80% reduction (test)",
                "Spearman L2-distance ~ error (test)",
                "80% reduction L2 (test)",
                "on val, cosine / L2: Spearman, reduction",
                "cosine distance ~ pose novelty",
            ],
            [
                [
                    name,
                    ci(f["cosine"]),
                    ci(f["cosine"], "reduction"),
                    ci(f["l2"]),
                    ci(f["l2"], "reduction"),
                    f"{f['val_cosine_spearman']:.3f}, {100 * f['val_cosine_reduction']:.1f}% / "
                    f"{f['val_l2_spearman']:.3f}, {100 * f['val_l2_reduction']:.1f}%",
                    f"{f['cosine_spearman_with_novelty']:.3f}",
                ]
                for name, r in results.items()
                for f in [r["feature_novelty"]]
            ],
        )
    )
    return out


def seed_differences(results: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """Paired bootstrap (same test-frame resamples) of seed 1 - seed 0 for each variant's
    measures: the difference, its iid and block 95% intervals."""
    rows, data = [], {}
    for variant in ("learned", "aleatoric"):
        a, b = results.get(f"{variant}-seed0"), results.get(f"{variant}-seed1")
        if a is None or b is None:
            continue
        for key in sorted(a["_boot"]):
            if ":" in key or key not in b["_boot"]:
                continue
            point = b["_spearman"][key] - a["_spearman"][key]
            iid = interval(b["_boot"][key] - a["_boot"][key])
            block = interval(b["_boot"][key + ":block"] - a["_boot"][key + ":block"])
            data[f"{variant}:{key}"] = {"difference": point, "ci": iid, "block_ci": block}
            rows.append(
                [
                    variant, key, f"{a['_spearman'][key]:.3f}", f"{b['_spearman'][key]:.3f}",
                    f"{point:+.3f} [{iid[0]:+.2f}, {iid[1]:+.2f}] "
                    f"{{{block[0]:+.2f}, {block[1]:+.2f}}}",
                ]
            )  # fmt: skip
    header = ["variant", "measure (Spearman with test error)", "seed 0", "seed 1",
              "seed 1 - seed 0 [iid] {block}"]  # fmt: skip
    return table(header, rows), data


def targets(results: dict[str, dict[str, Any]]) -> str:
    """Which measured uncertainties reach the issue's targets in each run."""
    lines = []
    for name, r in results.items():
        candidates = {
            "aleatoric": r.get("aleatoric", {}).get("test"),
            "mc-dropout (T=16)": r.get("mc_dropout", {}).get("test"),
            "feature cosine novelty": r["feature_novelty"]["cosine"],
            "feature L2 novelty": r["feature_novelty"]["l2"],
            "oracle pose novelty (needs the true pose)": r["source"]["oracle_novelty"],
        }
        parts = []
        for label, block in candidates.items():
            if block is None:
                continue
            ok = block["spearman"] >= TARGET_SPEARMAN and block["reduction"] >= TARGET_REDUCTION
            parts.append(
                f"{label} {block['spearman']:.3f} / {100 * block['reduction']:.1f}%"
                + (" (both met)" if ok else "")
            )
        lines.append(f"- {name}: " + "; ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, required=True, help="benchmarks/uncertainty.py --out")
    parser.add_argument("--out", type=Path, required=True, help="folder for analysis.md/.json")
    parser.add_argument("--checkpoint", default="last.pt", help="file in each run (last.pt)")
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for name in RUNS:
        folder = args.runs / name
        if not (folder / args.checkpoint).is_file():
            print(f"{folder / args.checkpoint}: missing, skipped", flush=True)
            continue
        print(f"analysing {name} ...", flush=True)
        results[name] = analyse_run(folder, args.checkpoint, args.resamples, args.seed)
        results[name]["_spearman"] = {}
    for r in results.values():  # point values of the bootstrapped measures, for differences
        blocks = {
            "oracle_novelty": r["source"]["oracle_novelty"],
            "centre_gap": r["source"]["centre_gap"],
            "feature_cosine": r["feature_novelty"]["cosine"],
            "feature_l2": r["feature_novelty"]["l2"],
        }
        if "aleatoric" in r:
            blocks["aleatoric"] = r["aleatoric"]["test"]
        if "mc_dropout" in r:
            blocks["mc_dropout"] = r["mc_dropout"]["test"]
            blocks["mc_dropout_per_norm"] = r["mc_dropout"]["normalised"]
        r["_spearman"] = {k: v["spearman"] for k, v in blocks.items()}
    differences, difference_data = seed_differences(results)
    minutes = (time.perf_counter() - started) / 60
    command = "python " + shlex.join(["benchmarks/uncertainty_analysis.py", *sys.argv[1:]])
    checkpoints = "\n".join(
        f"- {name}: {r['checkpoint']} (epoch {r['epoch']}, sha256 {r['sha256']}; "
        f"{Path(r['other_checkpoint']).name} has "
        f"{'the same' if r['other_checkpoint_same_weights'] else 'other'} weights); "
        f"validation: {r['holdout']}; frames train / val / test: "
        f"{r['frames']['train']} / {r['frames']['val']} / {r['frames']['test']}; lag-1 "
        f"autocorrelation of the test position error {r['error_autocorrelation_lag1']:.2f}; "
        + "Spearman of `geoposenet eval` (metrics.json beside the run) / here: "
        + ", ".join(
            f"{kind} {v['eval']:.4f} / {v['here']:.4f}" for kind, v in r["reproduces_eval"].items()
        )
        for name, r in results.items()
    )
    text = "\n\n".join(
        [
            "# Per-image uncertainty: measured reasons for the missed targets (issue 18)",
            f"`{command}`: {minutes:.1f} min on {describe()}, one thread.",
            "Checkpoints:\n\n" + checkpoints,
            "Cells: value [95% interval, iid bootstrap over test frames] {95% interval, "
            f"moving-block bootstrap, blocks of {BLOCK} frames within each test walk}}; "
            f"{args.resamples} resamples, seed {args.seed}. Position error in metres; "
            "Spearman with the true test position error unless stated.",
            *tables(results),
            "## 5. Seed 1 against seed 0 (paired bootstrap over the same test frames)",
            differences,
            "## Targets (Spearman >= 0.5 and 80% reduction >= 20%): Spearman / reduction",
            targets(results),
        ]
    )
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "analysis.md", text + "\n")
    clean = {
        name: {k: v for k, v in r.items() if not k.startswith("_")} for name, r in results.items()
    }
    payload = {
        "command": command,
        "machine": describe(),
        "minutes": round(minutes, 2),
        "runs": clean,
        "seed_differences": difference_data,
    }
    atomic_write_text(args.out / "analysis.json", json.dumps(payload, indent=2) + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
