"""View synthesis on the synthetic `room` (issue 17): does training on rendered views help?

Trains the demo's first stage (its recipe, `geoposenet.demo.PLANS["room"]`: EfficientNet-Lite0
with ImageNet weights, 96x128 px, batch 32, Adam lr 2e-3 cosine with 1 warm-up epoch, colour
jitter 0.2, learned weighting, 30 epochs, no validation split) on the room in 7-Scenes format:
  original           the room's 1000 training frames;
  RENDERER-N-BUDGET  the same plus N views by RENDERER (exact, depth, rotation) from
                     `geoposenet augment`, trained for the same number of optimiser steps as
                     the original (epochs scaled by 1000 / (1000 + N), rounded) or the same
                     number of epochs (30: (1000 + N) / 1000 times the steps, beside its
                     control: the original frames for the steps of the largest N), or as a
                     second stage ("continue": from the original run's last.pt, 4 epochs at
                     lr 5e-4 cosine, beside the same second stage on the original frames).
Every run is one `geoposenet augment`, `train` and `eval` command (printed; a rerun skips what
is done and resumes an interrupted training). Each row: test medians and accuracies (mean over
seeds, each seed beside), the oracle nearest training pose of the original training set and of
the augmented one (the best any retrieval of those images could do), optimiser steps, the
seconds of training steps (from the run's log.jsonl, so a resumed run counts both parts) and the
rendering speed. Writes OUT/results.json and OUT/results.md.

    python benchmarks/view_synthesis.py --out bench-vs                  # everything: ~26 runs
    python benchmarks/view_synthesis.py --out bench-vs --budgets steps --seeds 0,1
    python benchmarks/view_synthesis.py --out /tmp/smoke --smoke       # tiny room, ~1 min
    ... --jobs 2 --threads 1     # two trainings at once, one torch thread each (2 cores)
    python benchmarks/view_synthesis.py --out bench-vs --speed   # rendering speed only (~1 min)
    python benchmarks/view_synthesis.py --out bench-vs --coverage   # sampling limits (~1.5 min)

`--speed` times each renderer's `render` alone (no file writing) on 200 views of the room
sampled as `augment` samples them, at the demo's 320x240, after 10 warm-up views: views/s
(torch on 1 thread, as augment renders).

`--coverage` renders nothing: for the default sampling limits and wider ones (COVERAGE_STUDY), it
places the views as `augment` does (the exact renderer keeps every view, so the first N
candidates) and measures how near the training set, original and augmented, comes to the test
cameras: the oracle nearest training pose, the median distance from a test camera's centre to
the nearest training centre, and the median least turn from a test camera to a training camera
within NEAR_M of it (how far the camera must turn where it stands to look where a test
camera looks). Writes OUT/coverage.md.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from geoposenet.baselines import nearest_training_pose
from geoposenet.cache import atomic_write_text, cache_root
from geoposenet.demo import PLANS
from geoposenet.machine import describe
from geoposenet.metrics import pose_errors, summarize
from geoposenet.readers import load_scene
from geoposenet.runlog import read_records
from geoposenet.scene import Scene
from geoposenet.synthetic import synthesize

THRESHOLDS = ("0.25m_2deg", "0.5m_5deg")
LOG_LOCK = threading.Lock()
CONTINUE_EPOCHS = 4  # budget "continue": epochs of the second stage, from the original run
CONTINUE_LR = 5e-4


def recipe(preset: str, smoke: bool) -> list[str]:
    """`geoposenet train` flags of the demo's first stage for `preset` (without --epochs)."""
    plan = PLANS[preset]
    backbone = ["--backbone", "mobilenet_v3_small", "--pretrained", "none"] if smoke else [
        "--backbone", "efficientnet_lite0", "--pretrained", "imagenet"]  # fmt: skip
    return [
        "--preset", "cpu", *backbone, "--loss", "learned",
        "--resize", str(plan.resize), "--crop", f"{plan.crop[0]}x{plan.crop[1]}",
        "--batch-size", str(plan.batch_size), "--lr", f"{plan.lr:g}", "--schedule", "cosine",
        "--warmup-epochs", "1" if plan.epochs > 2 else "0", "--jitter", f"{plan.jitter:g}",
        "--val", "none", "--no-progress",
    ]  # fmt: skip


def run(command: list[str], log: list[str]) -> float:
    """Run `geoposenet COMMAND` (printed and logged first); seconds taken."""
    shown = "geoposenet " + shlex.join(command)
    print(f"$ {shown}", flush=True)
    with LOG_LOCK:
        log.append(shown)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoposenet", *command], check=True)
    return time.perf_counter() - started


def oracle_medians(
    train_centres: np.ndarray, train_quaternions: np.ndarray, test: Scene
) -> dict[str, float]:
    """Median errors on `test`'s frames of their nearest training pose among the given ones
    (centres (N, 3) metres, quaternions (N, 4) wxyz world -> camera)."""
    centre, quaternion, _ = nearest_training_pose(
        train_centres, train_quaternions, test.centres, test.quaternions
    )
    pos, rot = pose_errors(centre, quaternion, test.centres, test.quaternions)
    m = summarize(pos, rot)
    return {
        "position_m": m["median_position_error_m"],
        "rotation_deg": m["median_rotation_error_deg"],
    }


def oracle(train_root: Path, test_root: Path) -> dict[str, float]:
    """Median errors of the nearest training pose (of `train_root`'s training frames) on
    `test_root`'s test frames."""
    train = load_scene(train_root, "train")
    return oracle_medians(train.centres, train.quaternions, load_scene(test_root, "test"))


def training_seconds(run: Path) -> float:
    """Seconds of training steps of `run`, summed over its log.jsonl epochs (a resumed run
    counts the time before and after its interruption, less the unfinished part of one epoch;
    the process start, caching and evaluation are not included)."""
    return sum(float(r.get("time_s", 0.0)) for r in read_records(run))


NEAR_M = 0.5  # --coverage: the training cameras a test camera's least turn is taken over
# --coverage: (views, the sampling limits that differ from the defaults); the first is the
# benchmark's own 3000-view setting
COVERAGE_STUDY: list[tuple[int, dict[str, float]]] = [
    (3000, {}),
    (1000, {}),
    (6000, {}),
    (12000, {}),
    (3000, {"max_shift_m": 1.0}),
    (3000, {"max_angle_deg": 30.0}),
    (3000, {"max_angle_deg": 45.0}),
    (3000, {"max_angle_deg": 60.0}),
    (6000, {"max_angle_deg": 45.0}),
    (3000, {"between": 0.8, "max_gap_m": 4.0, "max_gap_deg": 90.0}),
    (12000, {"max_shift_m": 1.0, "between": 0.8, "max_gap_m": 4.0, "max_gap_deg": 90.0}),
]


def run_name(renderer: str, n: int, budget: str, seed: int) -> str:
    """The folder name of one training run."""
    return f"original-s{seed}" if budget == "-" else f"{renderer}-{n}-{budget}-s{seed}"


def plan_runs(
    renderers: list[str], views: list[int], budgets: list[str], seeds: list[int]
) -> list[tuple[str, int, str, int]]:
    """(renderer, N, budget, seed) in the order run: every seed of the original first, then
    each seed's same-steps rows, then the same-epochs rows (the costliest) last."""
    runs = [("original", 0, "-", s) for s in seeds]
    for budget in budgets:
        for seed in seeds:
            if budget == "continue":  # its control: the same extra epochs on the original frames
                runs.append(("original", 0, budget, seed))
            if budget == "epochs":  # its control: the original frames for the largest N's steps
                runs.append(("original", max(views), budget, seed))
            runs += [(r, n, budget, seed) for n in views for r in renderers]
    return runs


def budget_epochs(renderer: str, n: int, budget: str, n_train: int, epochs: int, batch: int) -> int:
    """Epochs of one run: `epochs` on the original frames ("-") and on the augmented ones
    ("epochs"); the original's step count ("steps"); CONTINUE_EPOCHS ("continue"); and for the
    same-epochs control (the original frames, `n` naming the run it matches) that run's steps."""
    if budget == "continue":
        return CONTINUE_EPOCHS
    if budget == "steps":
        return max(1, round(epochs * n_train / (n_train + n)))
    if budget == "epochs" and renderer == "original":
        return round(epochs * math.ceil((n_train + n) / batch) / math.ceil(n_train / batch))
    return epochs


def render_speed(scene_dir: Path, count: int = 200) -> str:
    """A table of render-only views/s per renderer on `count` sampled views of `scene_dir`."""
    import torch

    from geoposenet.viewsynth.augment import _candidates, build_renderer
    from geoposenet.viewsynth.cameras import SceneCameras
    from geoposenet.viewsynth.limits import Limits

    torch.set_num_threads(1)
    scene = load_scene(scene_dir)
    train = scene.split("train")
    cameras = SceneCameras(scene)
    lines = [
        f"Render-only speed, {count} views at 320x240, torch on 1 thread; {describe()}.",
        "",
        "| renderer | views/s | median coverage |",
        "|---|---|---|",
    ]
    for kind in ("exact", "depth", "rotation"):
        limits = Limits(rotation_only=kind == "rotation")
        views = _candidates(scene, train, limits, count + 10, seed=0)[: count + 10]
        renderer = build_renderer(kind, scene, train, cameras)
        for view in views[:10]:
            renderer.render(view, cameras.colour(train[view.source]))
        started = time.perf_counter()
        coverage = [
            renderer.render(v, cameras.colour(train[v.source])).coverage for v in views[10:]
        ]
        rate = count / (time.perf_counter() - started)
        lines.append(f"| {kind} | {rate:.1f} | {np.median(coverage):.3f} |")
    return "\n".join(lines) + "\n"


def least_turn_deg(
    train_centres: np.ndarray,
    train_quaternions: np.ndarray,
    query_centres: np.ndarray,
    query_quaternions: np.ndarray,
    radius_m: float,
) -> np.ndarray:
    """(Q,) for each query camera the least rotation angle (degrees) to a training camera whose
    centre is within `radius_m` of its own; inf where none is. Centres (N, 3) and (Q, 3) in
    metres, quaternions wxyz world -> camera."""
    tree = cKDTree(train_centres)
    turn = np.full(len(query_centres), np.inf)
    for i, near in enumerate(tree.query_ball_point(query_centres, radius_m)):
        if near:
            dot = np.abs(train_quaternions[near] @ query_quaternions[i]).clip(max=1.0)
            turn[i] = np.degrees(2 * np.arccos(dot.max()))
    return turn


def pose_coverage(scene_dir: Path) -> str:
    """A table: how near the original and augmented training sets come to the test cameras of
    `scene_dir`, for each COVERAGE_STUDY setting (views placed as `augment` places them)."""
    from geoposenet.geometry import matrix_to_quaternion_np
    from geoposenet.viewsynth.augment import _candidates
    from geoposenet.viewsynth.limits import Limits

    scene = load_scene(scene_dir)
    train = scene.split("train")
    test = load_scene(scene_dir, "test")
    lines = [
        f"Sampling limits (seed 0) against the test cameras of {scene_dir.name}; "
        f"least turn: to a training camera within {NEAR_M:g} m.",
        "",
        "| views | limits (others default) | oracle nearest training pose (m / deg) "
        "| test centre to nearest training centre, median (m) | least turn, median / 90th "
        "percentile (deg) |",
        "|---|---|---|---|---|",
    ]
    settings: list[tuple[int, dict[str, float]]] = [(0, {}), *COVERAGE_STUDY]
    train_centres = np.stack([f.centre for f in train])
    train_quaternions = np.stack([f.quaternion for f in train])
    for views, changed in settings:
        centres, quaternions = train_centres, train_quaternions
        if views:
            placed = _candidates(scene, train, replace(Limits(), **changed), views, seed=0)
            centres = np.concatenate([centres, [v.centre for v in placed[:views]]])
            rotations = np.stack([v.cam_from_world for v in placed[:views]])
            quaternions = np.concatenate([quaternions, matrix_to_quaternion_np(rotations)])
        near = oracle_medians(centres, quaternions, test)
        gap = cKDTree(centres).query(test.centres)[0]
        turn = least_turn_deg(centres, quaternions, test.centres, test.quaternions, NEAR_M)
        limits = ", ".join(f"{k} {v:g}" for k, v in changed.items()) or "default"
        lines.append(
            f"| {views or 'original only'} | {limits if views else '-'} "
            f"| {near['position_m']:.3f} / {near['rotation_deg']:.2f} | {np.median(gap):.3f} "
            f"| {np.median(turn):.1f} / {np.percentile(turn, 90):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--renderers", default="exact,depth,rotation")
    parser.add_argument("--views", default="1000,3000")
    parser.add_argument("--budgets", default="steps,epochs")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--smoke", action="store_true", help="tiny room, tiny model, 1 seed")
    parser.add_argument("--speed", action="store_true", help="only time the renderers")
    parser.add_argument("--coverage", action="store_true", help="only the sampling-limits study")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per training")
    args = parser.parse_args()
    preset = "tiny" if args.smoke else "room"
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    scene_dir = cache_root() / "scenes" / f"{preset}-seed0-7scenes"
    synthesize(scene_dir, preset=preset, format="7scenes", seed=0)
    if args.speed:
        text = render_speed(scene_dir)
        atomic_write_text(out / "speed.md", text)
        print(text)
        return
    if args.coverage:
        text = pose_coverage(scene_dir)
        atomic_write_text(out / "coverage.md", text)
        print(text)
        return
    n_train = len(load_scene(scene_dir, "train").frames)
    epochs = PLANS[preset].epochs
    batch = PLANS[preset].batch_size
    renderers = args.renderers.split(",")
    views = [int(v) for v in args.views.split(",")] if not args.smoke else [20]
    seeds = [int(s) for s in args.seeds.split(",")] if not args.smoke else [0]
    results_path = out / "results.json"
    results: dict[str, Any] = (
        json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}, "data": {}}
    )
    log: list[str] = results.setdefault("commands", [])
    results["machine"] = describe()
    results["oracle_original"] = oracle(scene_dir, scene_dir)
    results["original_frames"] = n_train
    planned = plan_runs(renderers, views, args.budgets.split(","), seeds)
    for renderer, n, _, _ in planned:  # the augmented datasets first, one at a time
        key = f"{renderer}-{n}"
        if renderer == "original" or key in results["data"]:
            continue
        data = out / "data" / key
        command = ["augment", str(scene_dir), "--out", str(data), "--views", str(n),
                   "--renderer", renderer, "--seed", "0", "--no-progress"]  # fmt: skip
        seconds = run(command, log)
        marker = json.loads((data / "augment.json").read_text())
        results["data"][key] = {
            "seconds": round(seconds, 1),
            "render_views_per_s": marker["render_views_per_s"],
            "rejected": marker["rejected"],
            "oracle": oracle(data, scene_dir),
        }
        atomic_write_text(results_path, json.dumps(results, indent=1) + "\n")
    lock = threading.Lock()

    def train_and_evaluate(renderer: str, n: int, budget: str, seed: int) -> None:
        data = scene_dir if renderer == "original" else out / "data" / f"{renderer}-{n}"
        frames = n_train if renderer == "original" else n_train + n
        run_epochs = budget_epochs(renderer, n, budget, n_train, epochs, batch)
        extra: list[str] = []
        steps = 0
        if budget == "continue":  # from the original run's last epoch, a short second stage
            original = run_name("original", 0, "-", seed)
            while original not in results["runs"]:  # the original run is still training
                time.sleep(10)
            first = out / "runs" / original / "last.pt"
            extra = ["--init", str(first), "--lr", f"{CONTINUE_LR:g}", "--warmup-epochs", "0"]
            steps = epochs * math.ceil(n_train / batch)
        name = run_name(renderer, n, budget, seed)
        folder = out / "runs" / name
        run(["train", str(data), "--out", str(folder), *recipe(preset, args.smoke),
                       "--epochs", str(run_epochs), "--eval-every", str(run_epochs),
                       "--seed", str(seed), "--threads", str(args.threads), *extra, "--resume"],
                      log)  # fmt: skip
        run(["eval", str(folder / "last.pt"), str(scene_dir), "--out", str(folder / "eval"),
             "--threads", str(args.threads)], log)  # fmt: skip
        metrics = json.loads((folder / "eval" / "metrics.json").read_text())
        with lock:
            results["runs"][name] = {
                "renderer": renderer, "views": n, "budget": budget, "seed": seed,
                "epochs": run_epochs, "steps": steps + run_epochs * math.ceil(frames / batch),
                "train_seconds": round(training_seconds(folder), 1), "threads": args.threads,
                "jobs": args.jobs,
                "median_position_m": metrics["median_position_error_m"],
                "median_rotation_deg": metrics["median_rotation_error_deg"],
                **{t: metrics["accuracy"][t] for t in THRESHOLDS},
            }  # fmt: skip
            atomic_write_text(results_path, json.dumps(results, indent=1) + "\n")
            atomic_write_text(out / "results.md", table(results))

    todo = [r for r in planned if run_name(*r) not in results["runs"]]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for job in [pool.submit(train_and_evaluate, *r) for r in todo]:
            job.result()
    atomic_write_text(out / "results.md", table(results))
    print(table(results))


def table(results: dict[str, Any]) -> str:
    """Markdown: one row per (renderer, N, budget), seeds averaged and listed."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in results["runs"].values():
        groups.setdefault((r["renderer"], r["views"], r["budget"]), []).append(r)
    budgets = ["-", "steps", "epochs", "continue"]
    kinds = ["original", "exact", "depth", "rotation"]
    groups = dict(
        sorted(
            groups.items(), key=lambda g: (budgets.index(g[0][2]), kinds.index(g[0][0]), g[0][1])
        )
    )
    base = results["oracle_original"]
    first: dict[str, Any] = next(iter(results["runs"].values()), {})
    lines = [
        f"Measured on {results['machine']}; {first.get('jobs', 1)} training(s) at a time, "
        f"torch threads {first.get('threads', 0) or 'default'} each.",
        "",
        "| training data | budget | steps | seeds | median position (m) | median rotation (deg) "
        "| <0.25 m, 2 deg | <0.5 m, 5 deg | per seed (m / deg) | oracle nearest training pose, "
        "original / augmented (m / deg) | training steps per run (min) | render (views/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (renderer, n, budget), runs in groups.items():
        data = results["data"].get(f"{renderer}-{n}")
        aug = data["oracle"] if data else base
        pos = [r["median_position_m"] for r in runs]
        rot = [r["median_rotation_deg"] for r in runs]
        each = ", ".join(f"{p:.3f} / {q:.2f}" for p, q in zip(pos, rot, strict=True))
        what = f"+ {n} {renderer}"
        if renderer == "original":
            what = f"original {results['original_frames']} frames"
        if renderer == "original" and n:  # the same-epochs control
            what += f", the steps of + {n}"
        lines.append(
            f"| {what} | {budget} | {runs[0]['steps']} | {', '.join(str(r['seed']) for r in runs)}"
            f" | {np.mean(pos):.3f} | {np.mean(rot):.2f}"
            f" | {100 * np.mean([r['0.25m_2deg'] for r in runs]):.1f}%"
            f" | {100 * np.mean([r['0.5m_5deg'] for r in runs]):.1f}% | {each}"
            f" | {base['position_m']:.3f} / {base['rotation_deg']:.2f}, "
            f"{aug['position_m']:.3f} / {aug['rotation_deg']:.2f}"
            f" | {np.mean([r['train_seconds'] for r in runs]) / 60:.1f}"
            f" | {data['render_views_per_s'] if data else '-'} |"
        )
    commands = list(dict.fromkeys(results["commands"]))  # a rerun logs its commands again
    lines += ["", "Commands:", "", "```", *commands, "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
