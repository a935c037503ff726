"""Training throughput of 1 vs N processes (torchrun + DistributedDataParallel, gloo on CPU).

Usage: python benchmarks/distributed.py [--data DIR] [--processes 1 2] [--epochs 1]
Trains the `cpu` preset (GoogLeNet, resize 128, crop 112, global batch 32, learned weighting;
random weights, as throughput does not depend on them) on the synthetic `room` scene (rendered
into the cache on first use, shared with `geoposenet demo`) once per process count, each time
through `torchrun --nproc_per_node=P`, with the machine's cores split evenly between the
processes (--threads cores/P). Prints the training images/s of the last epoch (all processes
together, from log.jsonl; evaluation and start-up excluded), the speed-up over the first row,
and the 1-minute load average before each run (other work on the cores skews the comparison;
2-thread processes suffer most, as their threads wait for each other).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from geoposenet.machine import describe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def room_scene() -> Path:
    """The synthetic room in Cambridge format, from the cache (rendered when missing)."""
    from geoposenet.cache import cache_root
    from geoposenet.synthetic import synthesize

    folder = cache_root() / "scenes" / "room-seed0-cambridge"
    synthesize(folder, preset="room", format="cambridge", seed=0)
    return folder


def train(
    data: Path, out: Path, processes: int, threads: int, args: argparse.Namespace
) -> dict[str, Any]:
    """One torchrun training run; returns the last log.jsonl record and the wall time."""
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--master_port", str(free_port()), "-m", "geoposenet", "train", str(data),
        "--out", str(out), "--preset", "cpu", "--backbone", args.backbone,
        "--pretrained", "none", "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--threads", str(threads), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return {**records[-1], "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="dataset folder (default: the synthetic room)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="in order")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch")
    parser.add_argument("--backbone", default="googlenet")
    args = parser.parse_args()
    data = args.data or room_scene()
    print(describe())
    print(
        f"{args.backbone}, crop 112 px, global batch {args.batch_size}, {args.cores} cores, "
        f"{args.epochs} epoch(s) of {data.name}"
    )
    print("| processes | threads each | batch each | images/s | speed-up | wall s | load before |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    baseline = None
    with tempfile.TemporaryDirectory(prefix="geoposenet-ddp-bench-") as tmp:
        for processes in args.processes:
            threads = max(args.cores // processes, 1)
            load = os.getloadavg()[0]
            record = train(data, Path(tmp) / f"run{processes}", processes, threads, args)
            speed = record["images_per_s"]
            baseline = baseline or speed
            print(
                f"| {processes} | {threads} | {args.batch_size // processes} | {speed:.1f} | "
                f"{speed / baseline:.2f}x | {record['wall_s']:.0f} | {load:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
