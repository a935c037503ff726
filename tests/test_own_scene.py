"""Your own scene from the command line alone: a COLMAP model with its images in another folder
and a scale from known distances, and a nerfstudio capture with downscaled images, each checked,
trained (tiny runs) and evaluated; units in every output ("model units" without a scale)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoposenet.cli import main
from geoposenet.readers import load_scene
from geoposenet.synthetic import synthesize

TRAIN_FLAGS = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1", "--no-progress",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))


def test_colmap_model_with_separate_images_and_a_scale(
    tmp_path: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = synthesize(tmp_path / "model", preset="tiny", format="colmap").root
    photos = tmp_path / "photos"
    shutil.move(root / "images", photos)  # the images apart from the model
    for name in ("train.txt", "test.txt", "synth.json"):
        (root / name).unlink(missing_ok=True)  # no lists: the held-out stretches
    unscaled = load_scene(root, images=photos)
    a, b = unscaled.frames[0], unscaled.frames[-1]
    distance = 2.0 * float(np.linalg.norm(a.centre - b.centre))
    (tmp_path / "scale.txt").write_text(f"{a.name} {b.name} {distance!r}\n")
    dataset = [str(root), "--images", str(photos), "--scale-from", str(tmp_path / "scale.txt")]
    assert main(["check", *dataset]) == 0
    assert " m\n" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", *dataset[:1], "--out", str(run), *dataset[1:], *TRAIN_FLAGS]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), *dataset, "--out", str(tmp_path / "eval")]) == 0
    assert " m, " in capsys.readouterr().out
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["position_unit"] == "m"
    scene = load_scene(root, images=photos, scale=2.0)  # the same frames, twice the size
    assert metrics["num_frames"] == len(scene.split("test"))
    # Without a scale, reports say "model units"; the Cambridge scene is in metres.
    assert main(["eval", str(run), str(root), "--images", str(photos), "--out",
                 str(tmp_path / "unscaled")]) == 0  # fmt: skip
    assert " model units, " in capsys.readouterr().out
    metrics = json.loads((tmp_path / "unscaled" / "metrics.json").read_text())
    assert metrics["position_unit"] == "model units"
    report = (tmp_path / "unscaled" / "report.md").read_text()
    assert "median position error | " in report and " model units |" in report
    assert main(["eval", str(run), str(tiny_scene_dir), "--out", str(tmp_path / "metric")]) == 0
    assert " m, " in capsys.readouterr().out
    assert json.loads((tmp_path / "metric" / "metrics.json").read_text())["position_unit"] == "m"


def test_nerfstudio_capture_with_downscaled_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = synthesize(tmp_path / "capture", preset="tiny", format="nerfstudio").root
    for image in (root / "images").rglob("*.png"):  # nerfstudio's images_2: half size
        target = root / "images_2" / image.relative_to(root / "images")
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(image) as full:
            full.resize((full.width // 2, full.height // 2)).save(target)
    dataset = [str(root), "--images", "images_2"]
    assert main(["check", *dataset]) == 0
    assert "model units" in capsys.readouterr().out
    run = tmp_path / "run"
    assert main(["train", *dataset[:1], "--out", str(run), *dataset[1:], *TRAIN_FLAGS]) == 0
    assert "| median position (model units) |" in capsys.readouterr().out
    assert main(["eval", str(run), *dataset]) == 0
    assert " model units, " in capsys.readouterr().out
    metrics = json.loads((run / "eval-test" / "metrics.json").read_text())
    assert metrics["position_unit"] == "model units" and metrics["num_frames"] == 10
    assert (run / "eval-test" / "trajectory.png").is_file()
