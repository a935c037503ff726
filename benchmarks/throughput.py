"""Training throughput: the model alone against the full training loop, per configuration.

(a) model only: the training step (forward, loss, backward, Adam; geoposenet.speed.ModelOnly) on
    one random uint8 batch already in memory, `--steps` steps after 2 warm-up steps;
(b) the training loop: the trainer's own epochs (geoposenet.speed.Loop) on the synthetic `room`
    scene (750 training frames: the default validation split holds out one walk), through
    PoseDataset.batch, the memory-mapped image cache and the loader, whole epochs making at
    least `--steps` steps, after one warm-up epoch; one column per loop variant (`--loops`:
    prefetch = the next batch prepared in a background thread, serial = no thread, workersN =
    N DataLoader processes).
With `--compile`, (a) is also measured with the backbone through torch.compile (default mode;
the seconds of its first, compiling, warm-up step are printed).
(a) and every variant of (b) alternate, `--reps` times; the table gives min / median / max of
each and the ratio of the medians (loop / model), per configuration and --amp mode, with the
machine (CPU model, cores, torch version) and the peak RSS of the process.

    python benchmarks/throughput.py [--configs lite0-demo,mobilenet,cpu,paper] [--steps 30]
        [--reps 3] [--amp none,bf16] [--loops prefetch,serial] [--threads 2] [--compile]
"""

from __future__ import annotations

import argparse
import re
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from geoposenet.cache import cache_root
from geoposenet.config import TrainConfig, resolve_config
from geoposenet.machine import describe
from geoposenet.speed import ModelOnly, loops, spread
from geoposenet.synthetic import synthesize

CONFIGS: dict[str, dict[str, Any]] = {
    "lite0-demo": {
        "preset": "cpu", "backbone": "efficientnet_lite0", "resize": 96, "crop": (96, 128),
    },
    "mobilenet": {"preset": "cpu", "backbone": "mobilenet_v3_small"},
    "cpu": {"preset": "cpu"},
    "paper": {"preset": "paper"},
}  # fmt: skip
DESCRIPTIONS = {
    "lite0-demo": "demo: EfficientNet-Lite0, 96x128, batch 32",
    "mobilenet": "MobileNetV3-small, 112x112, batch 32",
    "cpu": "cpu preset: GoogLeNet, 112x112, batch 32",
    "paper": "paper preset: GoogLeNet, 224x224, batch 64",
}


def loop_options(variant: str) -> dict[str, Any]:
    """The settings of a loop variant: prefetch, serial or workersN."""
    if variant == "prefetch":
        return {"workers": 0, "prefetch": True}
    if variant == "serial":
        return {"workers": 0, "prefetch": False}
    if found := re.fullmatch(r"workers(\d+)", variant):
        return {"workers": int(found.group(1))}
    raise SystemExit(f"--loops: unknown variant {variant!r} (prefetch, serial, workersN)")


def config_for(name: str, amp: str, scene: Path, out: Path, **options: Any) -> TrainConfig:
    """The benchmark's TrainConfig of configuration `name` (random initial weights, no
    evaluation, a constant learning rate over as many epochs as the measurement needs)."""
    values = dict(CONFIGS[name])
    return resolve_config(
        values.pop("preset"), data=str(scene), out=str(out), pretrained="none", epochs=10_000,
        eval_every=10_000, amp=amp, device="cpu", progress=False, **values, **options,
    )  # fmt: skip


def fmt(values: list[float]) -> str:
    low, median, high = spread(values)
    return f"{low:.1f} / {median:.1f} / {high:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="lite0-demo,mobilenet,cpu,paper")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each measurement")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (alternating)")
    parser.add_argument("--amp", default="none", help="comma-separated: none, bf16")
    parser.add_argument("--loops", default="prefetch,serial", help="prefetch, serial, workersN")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time a compiled model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names, amps, variants = (args.configs.split(","), args.amp.split(","), args.loops.split(","))
    for name in names:
        if name not in CONFIGS:
            raise SystemExit(f"--configs: unknown {name!r} ({', '.join(CONFIGS)})")
    options = {variant: loop_options(variant) for variant in variants}
    scene = cache_root() / "scenes" / "room-seed0-cambridge"
    synthesize(scene, preset="room", format="cambridge", seed=0)
    print(f"{describe()}; {args.threads} threads", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            for amp in amps:
                folder = Path(tmp) / f"{name}-{amp}"
                model = ModelOnly(config_for(name, amp, scene, folder / "model"))
                compiled = None
                if args.compile:
                    compiled = ModelOnly(config_for(name, amp, scene, folder / "c"), compiled=True)
                    started = time.perf_counter()
                    compiled.measure(1, warmup=0)
                    print(f"{name} amp {amp}: first compiled step "
                          f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
                configs = {
                    v: config_for(name, amp, scene, folder / v, **options[v]) for v in variants
                }
                results: dict[str, list[float]] = {"model": [], **{v: [] for v in variants}}
                if compiled is not None:
                    results["compiled"] = []
                with loops(configs) as trainers:
                    for trainer in trainers.values():
                        trainer.measure(1)  # warm-up: one epoch
                    for rep in range(args.reps):
                        results["model"].append(model.measure(args.steps).images_per_s)
                        if compiled is not None:
                            speed = compiled.measure(args.steps).images_per_s
                            results["compiled"].append(speed)
                        for variant, trainer in trainers.items():
                            results[variant].append(trainer.measure(args.steps).images_per_s)
                        shown = ", ".join(f"{k} {v[-1]:.1f}" for k, v in results.items())
                        print(f"{name} amp {amp} rep {rep + 1}: {shown} img/s", flush=True)
                rows.append((name, amp, results))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{describe()}; {args.threads} threads; peak RSS of this process {peak_mb:.0f} MB")
    print(f"img/s, min / median / max of {args.reps} alternating repetitions of >= {args.steps} "
          "steps each\n")  # fmt: skip
    columns = [*(["compiled"] if args.compile else []), *variants]
    names_shown = {"compiled": "model only, compiled (img/s)"}
    shown_columns = [names_shown.get(c, f"loop, {c} (img/s)") for c in columns]
    ratio_columns = [f"{c} / model" for c in columns]
    header = ["config", "amp", "model only (img/s)", *shown_columns, *ratio_columns]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, amp, results in rows:
        model_median = spread(results["model"])[1]
        ratios = [f"{spread(results[c])[1] / model_median:.2f}" for c in columns]
        cells = [DESCRIPTIONS[name], amp, fmt(results["model"])]
        cells += [fmt(results[c]) for c in columns] + ratios
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
