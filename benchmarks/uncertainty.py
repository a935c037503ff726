"""Per-image uncertainty on the synthetic `room` (issue 18, item 5): both kinds, measured.

Trains the demo's first stage (EfficientNet-Lite0 with ImageNet weights, 96x128 px, 30 epochs,
Adam lr 2e-3 cosine with 1 warm-up epoch, batch 32, colour jitter 0.2, learned weighting) with
the trainer's default validation split (one of the room's four training walks, which the
calibration needs; the demo itself trains on all four) and dropout 0.2 before the pose layer,
in two variants and for every seed:
  learned     --loss learned (eq. 4, scene-level s_x, s_q): its MC dropout uncertainty;
  aleatoric   --loss learned --uncertainty aleatoric: its aleatoric uncertainty, and its MC
              dropout uncertainty as well (same dropout).
Every run is one `geoposenet train` command and every evaluation one `geoposenet eval` command
(printed, so each can be repeated by hand; a rerun resumes unfinished training and redoes the
evaluations). The poses compared between the variants are the deterministic ones (eval
--uncertainty none for `learned`, the aleatoric head's for `aleatoric`; MC dropout reports the
mean of its samples). Writes into --out: results.md (the tables and commands) and results.json,
and each evaluation's metrics.json, errors.csv, report.md and uncertainty.png beside its run.

    python benchmarks/uncertainty.py --out bench-uncertainty [--seeds 0,1]   # 4 trainings of the
                                                   # demo's first stage: roughly 30-50 min here
    python benchmarks/uncertainty.py --out /tmp/smoke --smoke     # tiny scene, 1 seed: ~1 min
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from geoposenet.cache import atomic_write_text, cache_root
from geoposenet.machine import describe
from geoposenet.synthetic import synthesize

ROOM = [
    "--preset", "cpu", "--backbone", "efficientnet_lite0", "--pretrained", "imagenet",
    "--resize", "96", "--crop", "96x128", "--batch-size", "32", "--epochs", "30",
    "--lr", "2e-3", "--schedule", "cosine", "--warmup-epochs", "1", "--jitter", "0.2",
    "--dropout", "0.2", "--eval-every", "30",
]  # fmt: skip
SMOKE = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1", "--lr", "1e-3",
    "--dropout", "0.2",
]  # fmt: skip
VARIANTS = {"learned": [], "aleatoric": ["--uncertainty", "aleatoric"]}
# variant -> (kind of the poses compared between variants, uncertainty kinds evaluated)
EVALUATIONS = {"learned": ("none", ("mc-dropout",)), "aleatoric": ("aleatoric", ("mc-dropout",))}
TARGET_SPEARMAN = 0.5
TARGET_REDUCTION = 0.2


def run(command: list[str], log: list[str]) -> float:
    """Run `geoposenet COMMAND` in a subprocess (printed and logged first); seconds taken."""
    shown = "geoposenet " + shlex.join(command)
    print(f"$ {shown}", flush=True)
    log.append(shown)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "geoposenet", *command], check=True)
    return time.perf_counter() - started


def coverage(folder: Path) -> dict[str, float]:
    """Share of frames whose error is at most their (calibrated) uncertainty, from errors.csv:
    0.5 for a calibrated median."""
    import csv

    rows = list(csv.DictReader((folder / "errors.csv").open()))
    shares = {}
    for quantity, error, spread in (
        ("position", "position_error_m", "position_uncertainty_m"),
        ("rotation", "rotation_error_deg", "rotation_uncertainty_deg"),
    ):
        hits = [float(r[error]) <= float(r[spread]) for r in rows]
        shares[quantity] = float(np.mean(hits))
    return shares


def evaluate_run(
    checkpoint: Path, data: Path, folder: Path, kind: str, log: list[str]
) -> dict[str, Any]:
    """`geoposenet eval` with --uncertainty `kind` into `folder`; its metrics (+ coverage)."""
    run(["eval", str(checkpoint), str(data), "--out", str(folder), "--uncertainty", kind], log)
    metrics = json.loads((folder / "metrics.json").read_text())
    if "uncertainty" in metrics:
        metrics["uncertainty"]["coverage"] = coverage(folder)
    return metrics


def pose_table(results: dict[str, Any]) -> str:
    """Median errors of the deterministic poses per variant and seed, and their means."""
    lines = [
        "| variant | seeds | median position (m) | median rotation (deg) | per seed (m / deg) |",
        "|---|---|---|---|---|",
    ]
    for variant, seeds in results["poses"].items():
        position = [m["median_position_error_m"] for m in seeds.values()]
        rotation = [m["median_rotation_error_deg"] for m in seeds.values()]
        each = ", ".join(f"{p:.3f} / {r:.2f}" for p, r in zip(position, rotation, strict=True))
        lines.append(
            f"| {variant} | {', '.join(seeds)} | {np.mean(position):.3f} | "
            f"{np.mean(rotation):.2f} | {each} |"
        )
    return "\n".join(lines)


def uncertainty_table(results: dict[str, Any]) -> str:
    """Every figure of every (variant, seed, kind) on the test walks."""
    lines = [
        "| run | kind | Spearman pos. | Spearman rot. | median pos. all (m) | median pos. 80% "
        "most certain (m) | reduction | AUSE pos. (m) | median rot. all / 80% (deg) | AUSE "
        "rot. (deg) | calibrated: share of frames with error <= uncertainty (pos. / rot.) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def number(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for name, block in results["uncertainty"].items():
        p, r = block["position"], block["rotation"]
        calibrated = (
            f"{100 * block['coverage']['position']:.0f}% / "
            f"{100 * block['coverage']['rotation']:.0f}%"
            if block["calibrated"]
            else "uncalibrated"
        )
        lines.append(
            f"| {name} | {block['kind']} | {number(p['spearman'], 3)} | "
            f"{number(r['spearman'], 3)} | {p['median_error_all']:.3f} | "
            f"{p['median_error_most_certain_80']:.3f} | "
            f"{100 * (p['reduction_most_certain_80'] or 0):.1f}% | "
            f"{p['sparsification']['ause']:.3f} | {r['median_error_all']:.2f} / "
            f"{r['median_error_most_certain_80']:.2f} | {r['sparsification']['ause']:.2f} | "
            f"{calibrated} |"
        )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> str:
    """Whether the issue's targets are met, per kind (mean over runs)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for block in results["uncertainty"].values():
        by_kind.setdefault(block["kind"], []).append(block)
    lines = []

    def mean(blocks: list[dict[str, Any]], key: str) -> float:
        values = [b["position"][key] for b in blocks]
        return float(np.mean([np.nan if v is None else v for v in values]))

    for kind, blocks in by_kind.items():
        rho, cut = mean(blocks, "spearman"), mean(blocks, "reduction_most_certain_80")
        lines.append(
            f"- {kind}: Spearman (position) {rho:.3f} "
            f"({'meets' if rho >= TARGET_SPEARMAN else 'misses'} >= {TARGET_SPEARMAN}); "
            f"80% most certain frames {100 * cut:.1f}% below the median of all "
            f"({'meets' if cut >= TARGET_REDUCTION else 'misses'} >= "
            f"{100 * TARGET_REDUCTION:.0f}%)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for runs and results")
    parser.add_argument("--seeds", default=None, help="comma-separated (default: 0,1; smoke: 0)")
    parser.add_argument("--smoke", action="store_true", help="tiny scene, 1 epoch: ~1 min")
    args = parser.parse_args()
    seeds = (args.seeds or ("0" if args.smoke else "0,1")).split(",")
    preset, recipe = ("tiny", SMOKE) if args.smoke else ("room", ROOM)
    started = time.perf_counter()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    data = cache_root() / "scenes" / f"{preset}-seed0-cambridge"
    print(synthesize(data, preset=preset, format="cambridge", seed=0).describe(), flush=True)
    log: list[str] = []
    results: dict[str, Any] = {"poses": {}, "uncertainty": {}, "train_seconds": {}}
    for variant, flags in VARIANTS.items():
        for seed in seeds:
            name = f"{variant}-seed{seed}"
            folder = out / name
            command = ["train", str(data), "--out", str(folder), *recipe, *flags]
            seconds = run([*command, "--seed", seed, "--no-progress", "--resume"], log)
            results["train_seconds"][name] = round(seconds, 1)
            checkpoint = folder / "last.pt"
            poses_kind, kinds = EVALUATIONS[variant]
            metrics = evaluate_run(checkpoint, data, folder / f"eval-{poses_kind}", poses_kind, log)
            results["poses"].setdefault(variant, {})[seed] = metrics
            if "uncertainty" in metrics:
                results["uncertainty"][name] = metrics["uncertainty"]
            for kind in kinds:
                metrics = evaluate_run(checkpoint, data, folder / f"eval-{kind}", kind, log)
                results["uncertainty"][f"{name} ({kind})"] = metrics["uncertainty"]
    minutes = (time.perf_counter() - started) / 60
    text = "\n\n".join(
        [
            f"# Per-image uncertainty on `{preset}`",
            f"{minutes:.1f} min on {describe()}; seeds {', '.join(seeds)}.",
            "## Pose accuracy (deterministic poses, test walks)",
            pose_table(results),
            "## Uncertainty against the true error (test walks)",
            uncertainty_table(results),
            "## Targets",
            targets(results),
            "## Commands",
            "```bash\n" + "\n".join(log) + "\n```",
        ]
    )
    atomic_write_text(out / "results.md", text + "\n")
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    print("\n" + text)


if __name__ == "__main__":
    main()
