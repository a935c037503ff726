"""Training throughput: the model alone against the full training loop, per preset.

(a) model only: forward + backward + Adam step on random uint8 images already in memory (same
    batch, input size, channels_last, learned-weighting loss);
(b) the training loop: `geoposenet.train.fit` for one epoch on the synthetic `room` scene through
    PoseDataset, the image cache and the DataLoader; images/s as the trainer logs it (training
    steps only, evaluation excluded).
Prints a markdown table with the ratio b / a and the peak RSS of the process.

    python benchmarks/throughput.py [--configs cpu,mobilenet,paper] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch

from geoposenet.cache import cache_root
from geoposenet.config import resolve_config
from geoposenet.losses import LearnedWeightingLoss
from geoposenet.machine import describe
from geoposenet.models import PoseNet
from geoposenet.synthetic import synthesize
from geoposenet.train import fit

CONFIGS = {
    "cpu": {"preset": "cpu"},
    "mobilenet": {"preset": "cpu", "backbone": "mobilenet_v3_small"},
    "lite0-demo": {
        "preset": "cpu", "backbone": "efficientnet_lite0", "resize": 96, "crop": (96, 128),
    },
    "paper": {"preset": "paper"},
}  # fmt: skip


def model_only(config_name: str, steps: int) -> float:
    """Images/s of bare training steps on in-memory random images."""
    values = dict(CONFIGS[config_name])
    config = resolve_config(values.pop("preset"), pretrained="none", **values)
    model = PoseNet(config.model_config()).train()
    loss = LearnedWeightingLoss()
    optimizer = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-4)
    b = config.batch_size
    images = torch.randint(0, 256, (b, 3, *config.crop), dtype=torch.uint8)
    batch = {
        "position": torch.randn(b, 3),
        "quaternion": torch.nn.functional.normalize(torch.randn(b, 4), dim=-1),
    }
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            start = time.perf_counter()
        prediction = model(images)
        value, _ = loss(prediction.position, prediction.quaternion, batch)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    return steps * b / (time.perf_counter() - start)


def training_loop(config_name: str, scene: Path, out: Path) -> float:
    """Images/s of one epoch of `fit` on `scene` (as logged by the trainer)."""
    values = dict(CONFIGS[config_name])
    config = resolve_config(
        values.pop("preset"), data=str(scene), out=str(out), pretrained="none", epochs=2,
        eval_every=100, **values,
    )  # fmt: skip
    run = fit(config, progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return float(records[-1]["images_per_s"])  # the second epoch: caches warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="cpu,mobilenet,lite0-demo")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene = cache_root() / "scenes" / "room-seed0-cambridge"
    synthesize(scene, preset="room", format="cambridge", seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            a = model_only(name, args.steps)
            b = training_loop(name, scene, Path(tmp) / name)
            rows.append((name, a, b))
            print(f"{name}: model {a:.1f} img/s, loop {b:.1f} img/s", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{describe()}; {args.threads} threads; peak RSS of this process {peak_mb:.0f} MB\n")
    print("| config | model only (img/s) | training loop (img/s) | ratio |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
