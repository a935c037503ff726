"""GPU throughput of the paper preset (GoogLeNet, 224x224, batch 64) and its peak GPU memory.

For each --amp mode: the model alone (geoposenet.speed.ModelOnly: the training step on a random
batch already on the GPU) and the training loop (geoposenet.speed.Loop: the trainer's epochs on
the synthetic `room` scene, pinned batches copied with non_blocking) with 0, 4 and 8 DataLoader
worker processes (0: the prefetch thread); images/s over at least --steps steps after a warm-up,
and torch.cuda.max_memory_allocated during each measurement. bf16 is skipped on a GPU without
it. Deterministic algorithms as the preset has them; --no-deterministic lets cuDNN time its
kernels and keep the fastest (cudnn.benchmark).

On a machine without CUDA it prints why on stderr, measures nothing and exits with code 2.

    python benchmarks/gpu.py [--device cuda] [--steps 30] [--amp none,fp16,bf16]
        [--workers 0,4,8] [--no-deterministic]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from geoposenet.config import TrainConfig, resolve_config
from geoposenet.machine import describe
from geoposenet.speed import Loop, ModelOnly, Speed

NO_CUDA = (
    "benchmarks/gpu.py: no CUDA device on this machine (torch.cuda.is_available() is False), "
    "so there is nothing to measure: run it on a machine with an NVIDIA GPU and a CUDA build "
    "of torch. Exit code 2."
)
HEADER = ("measured", "amp", "workers", "img/s", "steps", "peak GPU memory (MiB)")


@dataclass(frozen=True)
class Row:
    """One line of the table: what was measured, with which --amp and --workers."""

    measured: str
    amp: str
    workers: str
    speed: Speed


def measure(
    config: TrainConfig, steps: int, amps: Sequence[str], workers: Sequence[int], out: Path
) -> list[Row]:
    """The model alone, then the loop with each worker count, for each --amp mode, on
    `config.device`; runs go to folders under `out`."""
    rows = []
    for amp in amps:
        model = ModelOnly(replace(config, amp=amp))
        rows.append(Row("model only", amp, "-", model.measure(steps)))
        del model
        for count in workers:
            run = out / f"{amp}-workers{count}"
            with Loop(replace(config, amp=amp, workers=count, out=str(run))) as loop:
                loop.measure(1)  # warm-up: one epoch (workers start, cuDNN picks kernels)
                rows.append(Row("training loop", amp, str(count), loop.measure(steps)))
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (HEADER's columns)."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        peak = "-" if row.speed.peak_bytes is None else f"{row.speed.peak_bytes / 2**20:.0f}"
        cells = (row.measured, row.amp, row.workers, f"{row.speed.images_per_s:.1f}",
                 str(row.speed.steps), peak)  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def usable_amps(amps: Sequence[str], device: torch.device) -> list[str]:
    """The --amp modes this device runs: bf16 only on a GPU with bf16 (Ampere or newer)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        skipped = [amp for amp in amps if amp == "bf16"]
        if skipped:
            print("bf16 skipped: this GPU has no bf16 support", file=sys.stderr)
        return [amp for amp in amps if amp != "bf16"]
    return list(amps)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="a CUDA device (default: cuda)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each measurement")
    parser.add_argument("--amp", default="none,fp16,bf16", help="comma-separated --amp modes")
    parser.add_argument("--workers", default="0,4,8", help="comma-separated worker counts")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA, file=sys.stderr)
        return 2
    from geoposenet.cache import cache_root
    from geoposenet.synthetic import synthesize

    scene = cache_root() / "scenes" / "room-seed0-cambridge"
    synthesize(scene, preset="room", format="cambridge", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        config = resolve_config(
            "paper", data=str(scene), out=str(Path(tmp) / "run"), pretrained="none",
            device=args.device, epochs=10_000, eval_every=10_000, progress=False,
            deterministic=args.deterministic,
        )  # fmt: skip
        amps = usable_amps(args.amp.split(","), torch.device(args.device))
        workers = [int(w) for w in args.workers.split(",")]
        rows = measure(config, args.steps, amps, workers, Path(tmp))
    print(f"\n{describe()}; paper preset, deterministic {'on' if args.deterministic else 'off'}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
