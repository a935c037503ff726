"""A minimal install (no extras) predicts; a command that needs an extra names it (exit 2) and
writes nothing. The missing packages are simulated in a subprocess by an import blocker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import builders
import pytest
import torch
from PIL import Image

from geoposenet.checkpoint import save_checkpoint
from geoposenet.models import ModelConfig, PoseNet

BLOCKED = ("matplotlib", "pycolmap", "skimage")
# Runs the command line with BLOCKED unimportable, as in `pip install geoposenet` alone.
RUN_WITHOUT_EXTRAS = f"""
import importlib.abc, sys

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
from geoposenet.cli import main
code = main(sys.argv[1:])
assert not set({BLOCKED!r}) & set(m.split(".")[0] for m in sys.modules), "an extra was imported"
sys.exit(code)
"""


def without_extras(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_EXTRAS, *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64))
    model = PoseNet(config, offset=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    path = tmp_path_factory.mktemp("minimal") / "run" / "last.pt"
    save_checkpoint(path, {"model_config": config.to_dict(), "model": model.state_dict()})
    return path


def test_predict_needs_no_extra(checkpoint: Path, tmp_path: Path) -> None:
    image = tmp_path / "img.png"
    Image.new("RGB", (80, 60), (10, 200, 30)).save(image)
    done = without_extras("predict", str(checkpoint), str(image), "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["image"] == str(image) and len(row["position"]) == 3


def test_eval_names_the_plots_extra_and_writes_nothing(
    checkpoint: Path, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "evaluation"
    done = without_extras("eval", str(checkpoint), str(tiny_scene_dir), "--out", str(out))
    assert done.returncode == 2
    assert "geoposenet[plots]" in done.stderr and "matplotlib" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_synth_names_the_synthetic_extra(tmp_path: Path) -> None:
    done = without_extras("synth", str(tmp_path / "room"), "--preset", "tiny")
    assert done.returncode == 2 and "geoposenet[synthetic]" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "room").exists()


def test_a_colmap_dataset_names_the_colmap_extra(tmp_path: Path) -> None:
    done = without_extras("check", str(builders.colmap(tmp_path / "colmap")))
    assert done.returncode == 2 and "geoposenet[colmap]" in done.stderr
    assert "Traceback" not in done.stderr
