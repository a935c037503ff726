"""`geoposenet demo`: the paper's recipe end to end on the built-in synthetic room.

render `room` (cached) -> train with learned weighting (eq. 4) -> [when the plan has views:
render that many new views with the room's exact renderer (`geoposenet augment`, cached) and
train a short second stage on the original plus synthesised frames] -> fine-tune with the
reprojection loss (eq. 7) -> evaluate every stage on the test sequences against the reference
rows (mean training pose, oracle nearest training pose, of the synthesised set too) -> table
and report with plots. Re-running continues unfinished stages (resumed exactly) and reuses
finished ones.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from geoposenet.baselines import mean_pose, nearest_training_pose
from geoposenet.cache import atomic_write_text, cache_root
from geoposenet.config import TrainConfig, resolve_config
from geoposenet.devices import resolve_device
from geoposenet.errors import TrainingInterrupted
from geoposenet.evaluation import frame_errors
from geoposenet.machine import describe
from geoposenet.metrics import FrameErrors, errors_csv, pose_errors, summarize
from geoposenet.models import PoseNet
from geoposenet.scene import Scene


@dataclass(frozen=True)
class DemoPlan:
    """The training stages' settings for one synthetic preset (CPU-sized)."""

    resize: int
    crop: tuple[int, int]
    batch_size: int
    epochs: int
    lr: float
    finetune_epochs: int
    finetune_lr: float
    jitter: float
    views: int = 0  # synthesised views for the second stage (0: no such stage)
    views_epochs: int = 4
    views_lr: float = 5e-4


PLANS = {
    "room": DemoPlan(96, (96, 128), 32, 30, 2e-3, 2, 2e-5, 0.2, views=3000, views_epochs=1),
    "tiny": DemoPlan(48, (48, 64), 8, 2, 1e-3, 1, 1e-4, 0.2, views=10, views_epochs=1),
}
CONTROL_NAME = "+ {epochs} more epoch(s) on the original frames (control)"
VIEWS_NAME = "+ {epochs} more epoch(s) with {views} synthesised views (exact renderer)"


def stage_configs(
    scene_dir: Path,
    out: Path,
    plan: DemoPlan,
    backbone: str,
    pretrained: str,
    options: dict[str, Any] | None = None,
    augmented_dir: Path | None = None,
) -> list[TrainConfig]:
    """Stage 1 (learned weighting); with `augmented_dir` the same short second stage from stage
    1 twice, on the original frames only (the control: what more epochs alone give) and on the
    original plus synthesised frames; the last stage (reprojection fine-tuning from the one
    before): the `cpu` preset with the plan's settings; `options` (device, threads, progress)
    as given."""
    first = resolve_config(
        "cpu",
        data=str(scene_dir),
        out=str(out / "stage1-learned"),
        backbone=backbone,
        pretrained=pretrained,
        resize=plan.resize,
        crop=plan.crop,
        batch_size=plan.batch_size,
        loss="learned",
        epochs=plan.epochs,
        lr=plan.lr,
        schedule="cosine",
        warmup_epochs=1 if plan.epochs > 2 else 0,
        jitter=plan.jitter,
        eval_every=max(plan.epochs // 4, 1),
        val="none",  # the demo chooses no model (it reports the last epoch): train on every walk
        **(options or {}),
    )
    stages = [first]
    if augmented_dir is not None:
        more = replace(
            first,
            out=str(out / "stage1b-control"),
            init=str(out / "stage1-learned" / "last.pt"),
            epochs=plan.views_epochs,
            lr=plan.views_lr,
            warmup_epochs=0,
            eval_every=plan.views_epochs,
        )
        stages.append(more)
        stages.append(
            replace(more, data=str(augmented_dir), out=str(out / "stage1b-synthesised-views"))
        )
    stages.append(
        replace(
            first,
            out=str(out / "stage2-reprojection"),
            loss="reprojection",
            init=str(Path(stages[-1].out) / "last.pt"),
            epochs=plan.finetune_epochs,
            lr=plan.finetune_lr,
            warmup_epochs=0,
            eval_every=plan.finetune_epochs,
        )
    )
    return stages


def baseline_errors(
    scene: Scene, augmented: Scene | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Position (m) and rotation (deg) errors of the reference rows on the test frames (and the
    oracle over `augmented`'s training frames, original and synthesised, when given)."""
    train, test = scene.subset("train"), scene.subset("test")
    rows = {}
    centre, quaternion = mean_pose(train.centres, train.quaternions, len(test.frames))
    rows["mean training pose"] = pose_errors(centre, quaternion, test.centres, test.quaternions)
    centre, quaternion, _ = nearest_training_pose(
        train.centres, train.quaternions, test.centres, test.quaternions
    )
    rows["oracle nearest training pose"] = pose_errors(
        centre, quaternion, test.centres, test.quaternions
    )
    if augmented is not None:
        both = augmented.subset("train")
        centre, quaternion, _ = nearest_training_pose(
            both.centres, both.quaternions, test.centres, test.quaternions
        )
        rows["oracle nearest training pose, synthesised views included"] = pose_errors(
            centre, quaternion, test.centres, test.quaternions
        )
    return rows


def results_table(rows: dict[str, dict[str, Any]]) -> str:
    """Markdown table: method, median position/rotation, accuracy at two thresholds."""
    lines = [
        "| method | median position (m) | median rotation (deg) | <0.25 m, 2 deg | <0.5 m, 5 deg |",
        "|---|---|---|---|---|",
    ]
    for name, m in rows.items():
        fine, medium = m["accuracy"]["0.25m_2deg"], m["accuracy"]["0.5m_5deg"]
        lines.append(
            f"| {name} | {m['median_position_error_m']:.3f} | {m['median_rotation_error_deg']:.2f}"
            f" | {100 * fine:.1f}% | {100 * medium:.1f}% |"
        )
    return "\n".join(lines)


def run_demo(
    out: Path,
    backbone: str = "efficientnet_lite0",
    pretrained: str = "imagenet",
    preset: str = "room",
    progress: bool = True,
    device: str = "auto",
    threads: int = 0,
) -> dict[str, dict[str, Any]]:
    """Run the whole demo into `out`, training on `device` with `threads` torch threads; return
    the metrics of every row of the table. Run again after an interruption, it continues."""
    from geoposenet.readers import load_scene
    from geoposenet.report import plot_cdf, plot_training, plot_trajectory
    from geoposenet.synthetic import synthesize
    from geoposenet.train import fit

    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scene_dir = cache_root() / "scenes" / f"{preset}-seed0-cambridge"
    print(synthesize(scene_dir, preset=preset, format="cambridge", seed=0).describe(), flush=True)
    scene = load_scene(scene_dir)
    plan = PLANS[preset]
    augmented_dir, augmented = None, None
    if plan.views:
        from geoposenet.viewsynth.augment import augment

        augmented_dir = cache_root() / "scenes" / f"{preset}-seed0-cambridge-exact{plan.views}"
        print(augment(scene_dir, augmented_dir, plan.views, "exact", progress=progress).describe())
        augmented = load_scene(augmented_dir)
    options = {"device": device, "threads": threads, "progress": progress}
    stages = stage_configs(scene_dir, out, plan, backbone, pretrained, options, augmented_dir)
    names = ["PoseNet, learned weighting (eq. 4)"]
    if plan.views:
        names.append(CONTROL_NAME.format(epochs=plan.views_epochs))
        names.append(VIEWS_NAME.format(views=plan.views, epochs=plan.views_epochs))
    names.append("+ fine-tuned with reprojection (eq. 7)")
    errors: dict[str, FrameErrors] = {}
    for name, config in zip(names, stages, strict=True):
        stage_start = time.perf_counter()
        print(
            f"\n== {name}: {config.epochs} epochs, {config.backbone}, lr {config.lr:g}", flush=True
        )
        try:
            run = fit(config, resume=True)
        except TrainingInterrupted as stopped:
            again = f"geoposenet demo --out {out} (rerun it: finished stages are kept)"
            raise TrainingInterrupted(
                stopped.run, stopped.signum, stopped.epoch, stopped.batch, again
            ) from None
        model = PoseNet.from_checkpoint(run / "last.pt", resolve_device(device))
        errors[name] = frame_errors(model, scene, "test", config.batch_size)
        plot_training(run / "log.jsonl", out / f"training-{run.name}.png")
        print(f"   done in {time.perf_counter() - stage_start:.0f} s", flush=True)

    rows: dict[str, dict[str, Any]] = {}
    for name, (pos, rot) in baseline_errors(scene, augmented).items():
        rows[name] = summarize(pos, rot)
    for name, frame in errors.items():
        rows[name] = summarize(frame.position_error_m, frame.rotation_error_deg, frame.sequences)
    final = errors[names[-1]]
    table = results_table(rows)
    seconds = time.perf_counter() - started
    plot_trajectory(scene, final, out / "trajectory.png", f"{names[-1]} (test sequences)")
    plot_cdf([(name, e) for name, e in errors.items()], out / "cdf.png")
    atomic_write_text(out / "errors.csv", errors_csv(final))
    atomic_write_text(out / "metrics.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "report.md", _report(scene, stages, table, seconds))
    print(
        f"\n{table}\n\nfinished in {seconds / 60:.1f} min on {describe()}; "
        f"report: {out / 'report.md'}"
    )
    return rows


def _report(scene: Scene, stages: list[TrainConfig], table: str, seconds: float) -> str:
    first, last = stages[0], stages[-1]
    counts = {split: len(scene.split(split)) for split in ("train", "test")}
    steps = [
        f"1. Learned weighting (eq. 4): {first.epochs} epochs, Adam lr {first.lr:g} (cosine), "
        f"batch {first.batch_size}, colour jitter {first.jitter}."
    ]
    if len(stages) == 4:
        views = stages[2]
        steps.append(
            f"2. Synthesised views: the room's exact renderer at new poses near the training "
            f"cameras (`geoposenet augment`), then {views.epochs} more epochs from stage 1 on "
            f"the original and synthesised frames, lr {views.lr:g} (cosine); the control row "
            f"trains the same epochs on the original frames only."
        )
    steps.append(
        f"{len(steps) + 1}. Fine-tuning with the reprojection loss (eq. 7) from the stage before: "
        f"{last.epochs} epochs, lr {last.lr:g}."
    )
    curves = "\n\n".join(
        f"![training, {Path(c.out).name}](training-{Path(c.out).name}.png)" for c in stages
    )
    return f"""# geoposenet demo

Scene: synthetic `{scene.name}` ({counts["train"]} training and {counts["test"]} test frames,
test sequences walk new paths through the same room). Backbone `{first.backbone}`
(pretrained: {first.pretrained}), input {first.crop[0]}x{first.crop[1]} px.

{chr(10).join(steps)}

Errors on the test sequences, at the last epoch of each stage. The demo chooses no model, so it
holds out no validation split (`--val none`) and trains on every training walk; the test split
is only evaluated, never used to choose.

{table}

The reference rows: the mean training pose, and the oracle nearest training pose (for each
test frame, the training frame closest to its true pose: the best any image retrieval could do).

Total time: {seconds / 60:.1f} min on {describe()} (times and, slightly, errors
differ between machines).

![trajectory](trajectory.png)

Top-down view of the test sequences: ground truth, predictions and the error of each frame.

![cdf](cdf.png)

Cumulative distributions of position and rotation errors of every stage.

{curves}

Training curves: loss and its parts, learned s_x and s_q, test medians.
"""
