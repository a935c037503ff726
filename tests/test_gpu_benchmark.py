"""benchmarks/gpu.py on the CPU: its measuring functions with the device as a parameter (tiny
sizes), the shape of the table it prints, and its message on a machine without CUDA."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

from geoposenet.config import TrainConfig, resolve_config
from geoposenet.speed import Loop, ModelOnly, spread


@pytest.fixture(scope="module")
def gpu(benchmark_script: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_script("gpu")


def tiny(data: Path, out: Path, **options: object) -> TrainConfig:
    return resolve_config(
        "cpu", data=str(data), out=str(out), backbone="mobilenet_v3_small", pretrained="none",
        resize=48, crop=(48, 64), batch_size=4, val="none", device="cpu", epochs=10_000,
        eval_every=10_000, progress=False, **options,
    )  # fmt: skip


def test_measure_on_cpu_and_the_table(
    gpu: ModuleType, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    config = tiny(tiny_scene_dir, tmp_path / "run")
    rows = gpu.measure(config, 2, ["none"], [0, 1], tmp_path)
    assert [(r.measured, r.amp, r.workers) for r in rows] == [
        ("model only", "none", "-"),
        ("training loop", "none", "0"),
        ("training loop", "none", "1"),
    ]
    assert rows[0].speed.steps == 2 and rows[1].speed.steps == 5  # whole epochs: 20 frames / 4
    assert all(r.speed.images_per_s > 0 and r.speed.peak_bytes is None for r in rows)
    lines = gpu.table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0] == "| " + " | ".join(gpu.HEADER) + " |"
    assert all(line.count("|") == len(gpu.HEADER) + 1 for line in lines)
    assert lines[2].startswith("| model only | none | - | ") and lines[2].endswith(" | 2 | - |")


def test_no_cuda_message_and_exit_code(
    gpu: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "no CUDA device on this machine" in captured.err
    assert "Exit code 2" in captured.err


def test_speed_helpers(tiny_scene_dir: Path, tmp_path: Path) -> None:
    """ModelOnly and Loop on the CPU with the reprojection loss (points in the random batch):
    the measurements count the steps they made; the loop trains whole epochs."""
    assert spread([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    config = tiny(tiny_scene_dir, tmp_path / "run", loss="reprojection", points_per_frame=8)
    assert ModelOnly(config).measure(3, warmup=1).steps == 3
    with Loop(config) as loop:
        assert loop.measure(6).steps == 10  # two epochs of 5
        assert loop.trainer.progress.epoch == 2
