"""Evaluation of a trained model: per-frame errors on a split (geoposenet.metrics for the
numbers), and `evaluate`, which writes metrics.json, errors.csv, the predicted poses (poses.csv,
poses_colmap.txt: geoposenet.poseformats), plots and report.md. With an uncertainty (the
aleatoric head's by default, or --uncertainty mc-dropout), errors.csv and poses.csv gain it per
frame and metrics.json an "uncertainty" block (geoposenet.uncertaintymetrics); its calibration
comes from the checkpoint (fitted on the validation split), never from the frames evaluated."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoposenet.cache import atomic_write_text
from geoposenet.data import PoseDataset
from geoposenet.extras import require
from geoposenet.metrics import FrameErrors, errors_csv, pose_errors, summarize
from geoposenet.models import PoseNet, predict
from geoposenet.poseformats import poses_colmap, poses_csv
from geoposenet.scene import Scene
from geoposenet.uncertainty import MC_SAMPLES
from geoposenet.uncertaintymetrics import uncertainty_metrics


def frame_errors(
    model: PoseNet,
    scene: Scene,
    split: str = "test",
    batch_size: int = 32,
    uncertainty: str = "none",
    samples: int = MC_SAMPLES,
) -> FrameErrors:
    """Predict every frame of `split` (centre crops at the model's own input size, `predict`:
    canonical quaternions, with the `uncertainty` asked for: auto | none | aleatoric |
    mc-dropout with `samples` passes) and compare."""
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
    poses = predict(model, dataset, batch_size, uncertainty=uncertainty, samples=samples)
    position, quaternion = poses.positions, poses.quaternions
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
        poses.uncertainty,
    )


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "test",
    out: str | Path | None = None,
    format: str = "auto",
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    options: Mapping[str, Any] | None = None,
    uncertainty: str = "auto",
    samples: int = MC_SAMPLES,
) -> dict[str, Any]:
    """Evaluate a checkpoint on a dataset split, computing on `device`; `options` go to
    `load_scene` (images, test_list, test_every, scale, scale_from); `uncertainty` (auto: the
    aleatoric head's when the model has one | none | aleatoric | mc-dropout with `samples`
    passes, whose mean poses are then the ones evaluated). With `out`, write metrics.json,
    errors.csv, poses.csv, poses_colmap.txt (predicted poses by frame name), the plots and
    report.md there (plots need the `plots` extra: checked before anything is computed).
    Returns the metrics, with the unit of the position errors ("m", or "model units" for an
    unscaled reconstruction) and the "uncertainty" block when there is one."""
    from geoposenet.readers import load_scene

    if out is not None:
        require("matplotlib")
    model = PoseNet.from_checkpoint(checkpoint, device)
    scene = load_scene(Path(data), format=format, **(options or {}))
    errors = frame_errors(model, scene, split, batch_size, uncertainty, samples)
    metrics = summarize(errors.position_error_m, errors.rotation_error_deg, errors.sequences)
    metrics["position_unit"] = scene.position_unit
    metrics["checkpoint"] = str(checkpoint)
    metrics["split"] = split
    if (block := uncertainty_metrics(errors)) is not None:
        kind = block["kind"]
        block["scale"] = model.calibration.get(kind) if block["calibrated"] else None
        block["samples"] = samples if kind == "mc-dropout" else None
        metrics["uncertainty"] = block
    if out is not None:
        from geoposenet.report import write_report

        poses = (errors.names, errors.position, errors.quaternion, errors.uncertainty)
        texts = {  # all formatted (and checked) before the first file is written
            "metrics.json": json.dumps(metrics, indent=2) + "\n",
            "errors.csv": errors_csv(errors),
            "poses.csv": poses_csv(*poses),
            "poses_colmap.txt": poses_colmap(*poses[:3]),
        }
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            atomic_write_text(folder / name, text)
        run_dir = Path(checkpoint).parent
        write_report(folder, scene, errors, metrics, run_dir / "log.jsonl")
    return metrics
