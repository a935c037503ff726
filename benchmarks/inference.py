"""Inference latency and throughput: bare forward, PoseNet.predict and onnxruntime.

For each backbone, at batch 1 and batch 32, on in-memory uint8 images of the model's input size:
- forward: `model(images)` under torch.no_grad (the floor);
- predict: `model.predict(images)` (adds the scene offset, float64, numpy conversion);
- onnxruntime: the exported model (`geoposenet.export.export_onnx`) on the CPU provider.
Prints a markdown table of milliseconds per batch (median of repeats) and predict's overhead.

    python benchmarks/inference.py [--backbones googlenet,mobilenet_v3_small] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime
import torch

from geoposenet.checkpoint import save_checkpoint
from geoposenet.export import export_onnx
from geoposenet.machine import describe
from geoposenet.models import ModelConfig, PoseNet


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def bench(backbone: str, crop: tuple[int, int], threads: int, repeats: int) -> list[str]:
    config = ModelConfig(backbone=backbone, pretrained="none", resize=crop[0], crop=crop)
    model = PoseNet(config).eval()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "model.pt"
        save_checkpoint(checkpoint, {"model_config": config.to_dict(), "model": model.state_dict()})
        export_onnx(checkpoint, Path(tmp) / "model.onnx")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            str(Path(tmp) / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        for batch in (1, 32):
            images = torch.randint(0, 256, (batch, 3, *crop), dtype=torch.uint8)
            array = images.numpy()

            def forward(images: torch.Tensor = images) -> object:
                with torch.no_grad():
                    return model(images)

            bare = median_ms(forward, repeats)
            predict = median_ms(lambda images=images: model.predict(images), repeats)
            ort = median_ms(lambda array=array: session.run(None, {"image": array}), repeats)
            rows.append(
                f"| {backbone} {crop[0]}x{crop[1]} | {batch} | {bare:.1f} | {predict:.1f} "
                f"| {100 * (predict / bare - 1):+.1f}% | {ort:.1f} | {1000 * batch / bare:.0f} "
                f"| {1000 * batch / ort:.0f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="googlenet,mobilenet_v3_small,efficientnet_lite0")
    parser.add_argument("--crop", default="224x224")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.crop.split("x"))
    rows = []
    for backbone in args.backbones.split(","):
        rows += bench(backbone, (height, width), args.threads, args.repeats)
    print(f"\n{describe()}; {args.threads} threads")
    print(f"milliseconds per batch (median of {args.repeats})\n")
    print(
        "| model | batch | forward (ms) | predict (ms) | predict overhead | onnxruntime (ms) "
        "| forward img/s | onnxruntime img/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
