"""The paper's loss comparison (Table 2) on the synthetic `room`, against honest baselines.

Every run is one `geoposenet train` command (printed, so it can be repeated by hand) with a fixed
budget; runs go in parallel worker processes (one thread each by default) and resume if stopped.
Every run holds out the trainer's default validation split (one of the room's four training
walks); the one choice the study makes, beta, is made on it (lowest validation median position
error, mean over seeds), never on the test sequences. Then every final model (last epoch) is
evaluated on the test sequences and the script writes, into --out:
  results.md   the table (mean over seeds, each seed in brackets) and the commands; for
               learned weighting the final s_x, s_q and the beta they amount to,
               exp(s_x - s_q) (eq. 4 weighs L_q by that much relative to L_x);
  results.json every number behind it;
  beta.png     median errors against beta, with learned weighting drawn across.

    python benchmarks/loss_study.py --out study [--seeds 0,1] [--epochs 12] [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from geoposenet.baselines import nearest_feature_pose
from geoposenet.cache import cache_root
from geoposenet.checkpoint import load_checkpoint
from geoposenet.data import PoseDataset
from geoposenet.demo import baseline_errors
from geoposenet.evaluation import frame_errors
from geoposenet.geometry import project, quaternion_to_matrix
from geoposenet.losses import ReprojectionLoss
from geoposenet.machine import describe
from geoposenet.metrics import pose_errors, summarize
from geoposenet.models import ModelConfig, PoseNet
from geoposenet.readers import load_scene
from geoposenet.scene import Scene, Split
from geoposenet.synthetic import synthesize
from geoposenet.validation import hold_out

BETAS = (3.0, 30.0, 120.0, 500.0, 2000.0)
BACKBONES = {"efficientnet_lite0": "imagenet", "googlenet": "none"}


@dataclass
class Budget:
    """The fixed per-run budget: the demo's input size and optimiser, fewer epochs."""

    epochs: int = 12
    lr: float = 2e-3
    finetune_epochs: int = 3
    finetune_lr: float = 1e-4
    batch_size: int = 32
    resize: int = 96
    crop: tuple[int, int] = (96, 128)
    jitter: float = 0.2


@dataclass
class Job:
    """One training run: its label in the table, its run directory and its flags."""

    label: str
    backbone: str
    seed: int
    run: Path
    flags: list[str]
    after: Path | None = None  # a run that must finish first (its last.pt is --init)
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def command(self, data: Path, threads: int) -> list[str]:
        return [
            "geoposenet", "train", str(data), "--out", str(self.run), "--resume",
            "--no-progress", "--threads", str(threads), "--seed", str(self.seed), *self.flags,
        ]  # fmt: skip


def stage_one_rows(budget: Budget) -> dict[str, list[str]]:
    """Table row label -> loss flags, for the runs trained from the backbone's initial weights."""
    rows = {f"beta = {beta:g}, L1 (eq. 2)": ["--loss", "beta", "--beta", f"{beta:g}"]
            for beta in BETAS}  # fmt: skip
    rows["learned weighting, L1 (eq. 4)"] = ["--loss", "learned"]
    rows[FAST_WEIGHTS] = ["--loss", "learned", "--weighting-lr", f"{10 * budget.lr:g}"]
    rows["learned weighting, L2"] = ["--loss", "learned", "--norm", "l2"]
    rows["reprojection from the initial weights (eq. 7)"] = ["--loss", "reprojection"]
    return rows


LEARNED = "learned weighting, L1 (eq. 4)"
FAST_WEIGHTS = "learned weighting, L1, s_x and s_q at 10x the learning rate"
FINETUNE = "learned weighting, then reprojection fine-tuning"
CONTROL = "learned weighting, then the same extra epochs of learned weighting"


def slug(text: str) -> str:
    keep = "".join(c if c.isalnum() else "-" for c in text.lower())
    return "-".join(part for part in keep.split("-") if part)[:40]


def schedule_flags(epochs: int, lr: float, warmup: int, budget: Budget) -> list[str]:
    return [
        "--preset", "cpu", "--epochs", str(epochs), "--lr", f"{lr:g}", "--schedule", "cosine",
        "--warmup-epochs", str(warmup), "--batch-size", str(budget.batch_size),
        "--resize", str(budget.resize), "--crop", "x".join(map(str, budget.crop)),
        "--jitter", f"{budget.jitter:g}",
        "--eval-every", str(max(epochs // 4, 1)),
    ]  # fmt: skip


def plan(out: Path, seeds: list[int], backbones: list[str], budget: Budget) -> list[Job]:
    """All jobs, most informative first: each seed's runs of each backbone in turn."""
    first = schedule_flags(budget.epochs, budget.lr, 1, budget)
    extra = schedule_flags(budget.finetune_epochs, budget.finetune_lr, 0, budget)
    jobs = []
    for seed in seeds:
        for backbone in backbones:
            model = ["--backbone", backbone, "--pretrained", BACKBONES[backbone]]
            base = out / backbone / f"seed{seed}"
            for label, flags in stage_one_rows(budget).items():
                jobs.append(Job(label, backbone, seed, base / slug(label), model + first + flags))
            learned = base / slug(LEARNED)
            for label, loss in ((FINETUNE, "reprojection"), (CONTROL, "learned")):
                flags = [*model, *extra, "--loss", loss, "--init", str(learned / "last.pt")]
                jobs.append(Job(label, backbone, seed, base / slug(label), flags, after=learned))
    return jobs


def finished(run: Path) -> bool:
    """True once the run has ended, trained or failed (then `failed` holds the reason)."""
    return (run / "done").exists() or (run / "failed").exists()


def run_all(jobs: list[Job], data: Path, parallel: int, threads: int) -> None:
    """Run every unfinished job, at most `parallel` at a time, respecting `after`."""
    pending = [job for job in jobs if not finished(job.run)]
    running: list[Job] = []
    while pending or running:
        for job in list(running):
            assert job.process is not None
            code = job.process.poll()
            if code is None:
                continue
            running.remove(job)
            if code == 0:
                (job.run / "done").write_text("")
            else:  # a run that fails (e.g. diverges) is a result, not the end of the study
                tail = (job.run / "train.out").read_text(errors="replace").strip()
                (job.run / "failed").write_text(tail.splitlines()[-1] if tail else f"exit {code}")
            print(f"{time.strftime('%H:%M:%S')} {'done ' if code == 0 else 'FAILED'} {job.run}",
                  flush=True)  # fmt: skip
        ready = [j for j in pending if j.after is None or finished(j.after)]
        while ready and len(running) < parallel:
            job = ready.pop(0)
            pending.remove(job)
            job.run.mkdir(parents=True, exist_ok=True)
            print(f"{time.strftime('%H:%M:%S')} start {shlex.join(job.command(data, threads))}",
                  flush=True)  # fmt: skip
            with open(job.run / "train.out", "ab") as log:
                job.process = subprocess.Popen(
                    job.command(data, threads), stdout=log, stderr=subprocess.STDOUT
                )
            running.append(job)
        time.sleep(2)


def final_loss_parameters(run: Path) -> tuple[float, float] | None:
    """s_x, s_q at the end of a learned-weighting run, else None."""
    checkpoint = load_checkpoint(run / "last.pt")
    state = checkpoint["loss"]
    if "s_x" not in state:
        return None
    return float(state["s_x"]), float(state["s_q"])


def retrieval_metrics(model: PoseNet, scene: Scene) -> dict[str, Any]:
    """Test metrics of nearest-neighbour retrieval on the model's pooled backbone features."""
    test = scene.subset("test")
    centre, quaternion, _ = nearest_feature_pose(model, scene)
    return summarize(*pose_errors(centre, quaternion, test.centres, test.quaternions))


def log_of(run: Path) -> list[dict[str, Any]]:
    """The run's log.jsonl records, one per epoch."""
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def beta_of(label: str) -> float | None:
    """The beta of a 'beta = B, L1 (eq. 2)' row label, else None."""
    return float(label.split()[2].rstrip(",")) if label.startswith("beta = ") else None


def chosen_beta(results: dict[str, Any], backbone: str) -> float | None:
    """The beta with the lowest validation median position error (mean over seeds): the one
    choice of the study, made on held-out training walks, never on the test sequences."""
    scores: dict[float, list[float]] = {}
    for record in results.values():
        beta = beta_of(record["label"])
        if record["backbone"] == backbone and beta is not None and "failed" not in record:
            scores.setdefault(beta, []).append(record["validation"]["median_position_error_m"])
    return min(scores, key=lambda b: float(np.mean(scores[b]))) if scores else None


def evaluate_jobs(scene: Scene, jobs: list[Job]) -> dict[str, Any]:
    """Per job: test metrics of its last checkpoint, its learned s_x/s_q, its command."""
    results: dict[str, Any] = {}
    for job in jobs:
        cached = job.run / "study.json"
        if (job.run / "failed").exists() or not (job.run / "last.pt").exists():
            reason = job.run / "failed"
            results[str(job.run)] = {
                "label": job.label, "backbone": job.backbone, "seed": job.seed,
                "failed": reason.read_text() if reason.exists() else "no checkpoint",
            }  # fmt: skip
            continue
        if cached.exists():
            results[str(job.run)] = json.loads(cached.read_text())
            continue
        model = PoseNet.from_checkpoint(job.run / "last.pt")
        errors = frame_errors(model, scene, "test", 64)
        record = {
            "label": job.label,
            "backbone": job.backbone,
            "seed": job.seed,
            "metrics": summarize(errors.position_error_m, errors.rotation_error_deg),
            "loss_parameters": final_loss_parameters(job.run),
            "validation": log_of(job.run)[-1]["val"],  # the last epoch is always evaluated
            "train_seconds": float(sum(line["time_s"] for line in log_of(job.run))),
            "flags": job.flags,
        }
        if job.label == LEARNED:  # retrieval with the trained network's own features
            record["retrieval"] = retrieval_metrics(model, scene)
        cached.write_text(json.dumps(record, indent=1))
        results[str(job.run)] = record
    return results


def collapsed_projection_loss(scene: Scene) -> float:
    """The L1 reprojection loss (eq. 7, K = identity, the loss's clamping and clipping) of a
    degenerate prediction: a camera so far away that every point of a frame projects to one
    image point, the best such point (the per-coordinate median of the true projections). Mean
    over the training frames: a network trained by eq. 7 alone can fall to this value without
    learning any pose."""
    loss = ReprojectionLoss("l1")
    losses = []
    for frame in scene.split("train"):
        if len(frame.point_ids) == 0:
            continue
        points = torch.as_tensor(scene.points[frame.point_ids])
        uv, _ = project(points, torch.as_tensor(frame.centre), torch.as_tensor(frame.quaternion),
                        min_depth=loss.min_depth)  # fmt: skip
        spread = (uv - uv.median(dim=0).values).abs().sum(dim=1).clamp_max(loss.max_error)
        losses.append(float(spread.mean()))
    return float(np.mean(losses))


def reprojection_and_pose_errors(model: PoseNet, scene: Scene, split: Split) -> dict[str, float]:
    """For `model` on `split`: its reprojection loss (eq. 7, L1, K = identity, up to 128 of each
    frame's points; the mean over frames) next to the median position (m) and rotation (deg)
    errors, to see whether lowering one lowers the others, and the median position error along
    the true camera's optical axis (m)."""
    loss = ReprojectionLoss("l1")
    config = model.config
    dataset = PoseDataset(scene, split, model.offset.numpy(), config.resize, config.crop,
                          train=False, points_per_frame=128)  # fmt: skip
    weighted, frames_with_points = 0.0, 0
    predicted, true, along_axis = [], [], []
    with torch.inference_mode():
        for batch in DataLoader(dataset, batch_size=64):
            prediction = model(batch["image"])
            value, _ = loss(prediction.position, prediction.quaternion, batch)
            count = int((batch["points_mask"].sum(dim=1) > 0).sum())  # the loss's denominator
            weighted += float(value) * count
            frames_with_points += count
            predicted.append(torch.cat([prediction.position, prediction.quaternion], dim=1))
            true.append(torch.cat([batch["position"], batch["quaternion"]], dim=1))
            offset = prediction.position - batch["position"]
            optical_axis = quaternion_to_matrix(batch["quaternion"])[:, 2]  # world -> camera
            along_axis.append((optical_axis * offset).sum(dim=1).abs())
    pred, gt = torch.cat(predicted).double().numpy(), torch.cat(true).double().numpy()
    position, rotation = pose_errors(pred[:, :3], pred[:, 3:], gt[:, :3], gt[:, 3:])
    return {
        "reprojection_mean": weighted / max(frames_with_points, 1),
        "median_position_error_m": float(np.median(position)),
        "median_rotation_error_deg": float(np.median(rotation)),
        "median_optical_axis_error_m": float(torch.cat(along_axis).median()),
    }


def reprojection_table(jobs: list[Job], scene: Scene) -> str:
    """Learned weighting, its reprojection fine-tuning and the control, per seed and split."""
    lines = [
        "| backbone, seed | model | split | mean reprojection error (eq. 7) | median position (m)"
        " | median rotation (deg) | median position error along the optical axis (m) |",
        "|---|---|---|---|---|---|---|",
    ]
    for job in jobs:
        if job.label not in (LEARNED, FINETUNE, CONTROL) or not (job.run / "done").exists():
            continue
        model = PoseNet.from_checkpoint(job.run / "last.pt")
        for split in ("train", "test"):
            m = reprojection_and_pose_errors(model, scene, split)
            lines.append(
                f"| {job.backbone}, {job.seed} | {job.label} | {split}"
                f" | {m['reprojection_mean']:.3f} | {m['median_position_error_m']:.3f}"
                f" | {m['median_rotation_error_deg']:.2f}"
                f" | {m['median_optical_axis_error_m']:.3f} |"
            )
    return "\n".join(lines)


def baseline_metrics(scene: Scene) -> dict[str, dict[str, Any]]:
    """The rows that need no pose training: the demo's two reference rows (mean pose, oracle
    nearest pose) and retrieval on ImageNet features of the pretrained backbone, all over the
    training frames of `scene` (the runs' own, without the validation walk)."""
    rows = {name: summarize(*errors) for name, errors in baseline_errors(scene).items()}
    budget = Budget()
    config = ModelConfig("efficientnet_lite0", "imagenet", resize=budget.resize, crop=budget.crop)
    rows["retrieval, ImageNet efficientnet_lite0 features"] = retrieval_metrics(
        PoseNet(config), scene
    )
    oracle = "oracle nearest training pose"  # the best retrieval last
    rows[oracle] = rows.pop(oracle)
    return rows


def cell(values: list[float], digits: int, percent: bool = False) -> str:
    """Mean over seeds, each seed in brackets."""
    scale = 100.0 if percent else 1.0
    text = [f"{scale * v:.{digits}f}" for v in values]
    mean = f"{scale * float(np.mean(values)):.{digits}f}"
    suffix = "%" if percent else ""
    return mean + suffix if len(values) == 1 else f"{mean}{suffix} ({', '.join(text)})"


def row(
    name: str, metrics: list[dict[str, Any]], extra: str = "", validation: list[float] | None = None
) -> str:
    def values(key: str) -> list[float]:
        return [float(m[key]) for m in metrics]

    fine = [float(m["accuracy"]["0.25m_2deg"]) for m in metrics]
    medium = [float(m["accuracy"]["0.5m_5deg"]) for m in metrics]
    return (
        f"| {name} | {cell(values('median_position_error_m'), 3)}"
        f" | {cell(values('median_rotation_error_deg'), 2)} | {cell(fine, 1, True)}"
        f" | {cell(medium, 1, True)} | {cell(validation, 3) if validation else ''} | {extra} |"
    )


HEADER = (
    "| method | median position (m) | median rotation (deg) | < 0.25 m, 2 deg | < 0.5 m, 5 deg"
    " | validation median position (m) | final s_x, s_q (effective beta) |"
    "\n|---|---|---|---|---|---|---|"
)


def table(results: dict[str, Any], baselines: dict[str, dict[str, Any]], backbone: str) -> str:
    """Markdown table for one backbone: every row's mean over seeds, then the baselines."""
    records = [r for r in results.values() if r["backbone"] == backbone]
    labels = list(dict.fromkeys(r["label"] for r in records))
    lines = [HEADER]
    for label in labels:
        failed = [r for r in records if r["label"] == label and "failed" in r]
        mine = [r for r in records if r["label"] == label and "failed" not in r]
        if failed:
            reasons = "; ".join(f"seed {r['seed']}: {r['failed']}" for r in failed)
            lines.append(f"| {label} | failed ({reasons}) | | | | | |")
        if not mine:
            continue
        extra = ""
        if mine[0]["loss_parameters"] is not None:
            pairs = [r["loss_parameters"] for r in mine]
            extra = "; ".join(f"{sx:.2f}, {sq:.2f} ({math.exp(sx - sq):.0f})" for sx, sq in pairs)
        if beta_of(label) is not None and beta_of(label) == chosen_beta(results, backbone):
            label = f"{label}, chosen on validation"
        validation = [r["validation"]["median_position_error_m"] for r in mine]
        lines.append(row(label, [r["metrics"] for r in mine], extra, validation))
    learned = [r for r in records if r["label"] == LEARNED and "retrieval" in r]
    if learned:
        lines.append(row("retrieval, features of the learned-weighting model",
                         [r["retrieval"] for r in learned]))  # fmt: skip
    for name, metrics in baselines.items():
        if "ImageNet" in name and backbone != "efficientnet_lite0":
            continue
        lines.append(row(name, [metrics]))
    return "\n".join(lines)


def plot_beta(results: dict[str, Any], path: Path) -> None:
    """Median position / rotation error against beta (log axis), one line per backbone, with
    each backbone's learned-weighting result drawn across as a horizontal band (seed range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    keys = (("median_position_error_m", "median position error (m)"),
            ("median_rotation_error_deg", "median rotation error (deg)"))  # fmt: skip
    for (key, title), axis in zip(keys, axes, strict=True):
        for colour, backbone in zip(("tab:blue", "tab:orange"), BACKBONES, strict=False):
            records = [
                r for r in results.values() if r["backbone"] == backbone and "failed" not in r
            ]
            if not records:
                continue
            per_beta = [[r["metrics"][key] for r in records if r["label"] == label]
                        for label in (f"beta = {b:g}, L1 (eq. 2)" for b in BETAS)]  # fmt: skip
            means = [float(np.mean(v)) if v else np.nan for v in per_beta]
            start = "ImageNet weights" if BACKBONES[backbone] == "imagenet" else "from scratch"
            weights = f"{backbone}, {start}"
            axis.plot(BETAS, means, "o-", color=colour, label=f"beta, {weights}")
            for beta, values in zip(BETAS, per_beta, strict=True):
                axis.scatter([beta] * len(values), values, color=colour, s=10, alpha=0.5)
            learned = [r["metrics"][key] for r in records if r["label"] == LEARNED]
            if learned:
                axis.axhline(float(np.mean(learned)), color=colour, linestyle="--",
                             label=f"learned weighting, {weights}")  # fmt: skip
                axis.axhspan(min(learned), max(learned), color=colour, alpha=0.15)
        axis.set_xscale("log")
        axis.set_xlabel("beta (eq. 2)")
        axis.set_ylabel(title)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle("Synthetic room, test sequences: fixed beta against learned weighting")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--epochs", type=int, default=Budget.epochs)
    parser.add_argument("--parallel", type=int, default=2, help="training processes at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    backbones = args.backbones.split(",")
    budget = Budget(epochs=args.epochs)

    data = cache_root() / "scenes" / "room-seed0-cambridge"
    print(synthesize(data, preset="room", format="cambridge", seed=0).describe(), flush=True)
    jobs = plan(args.out.resolve(), seeds, backbones, budget)
    started = time.perf_counter()
    run_all(jobs, data, args.parallel, args.threads)
    print(f"training: {(time.perf_counter() - started) / 60:.1f} min", flush=True)

    torch.set_num_threads(os.cpu_count() or 1)
    # the frames the runs trained on: the reference rows and retrieval use these, not seq4
    scene, _ = hold_out(load_scene(data), "auto")
    results = evaluate_jobs(scene, jobs)
    baselines = baseline_metrics(scene)
    sections = [
        f"# Loss study on the synthetic room ({len(seeds)} seeds: {args.seeds})\n",
        f"Budget per run: {budget}; measured on {describe()}.\n",
    ]
    for backbone in backbones:
        sections.append(f"## {backbone} (pretrained: {BACKBONES[backbone]})\n")
        sections.append(table(results, baselines, backbone) + "\n")
    sections.append(
        "## Reprojection error against pose error\n\nThe collapsed-camera reprojection loss of"
        f" the training frames (every point of a frame projected to one image point): "
        f"{collapsed_projection_loss(scene):.3f}.\n"
    )
    sections.append(reprojection_table(jobs, scene) + "\n")
    sections.append("## Commands\n")
    sections += [f"    {shlex.join(j.command(data, args.threads))}" for j in jobs]
    (args.out / "results.md").write_text("\n".join(sections) + "\n")
    (args.out / "results.json").write_text(
        json.dumps({"runs": results, "baselines": baselines}, indent=1)
    )
    plot_beta(results, args.out / "beta.png")
    print("\n".join(sections[: -len(jobs) - 1]))
    print(f"written: {args.out / 'results.md'}, {args.out / 'beta.png'}")


if __name__ == "__main__":
    main()
