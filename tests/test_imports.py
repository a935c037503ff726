"""Fast answers: the command line imports nothing heavy, and `predict` imports only what a
prediction needs (torch, torchvision), not the optional extras (plots, COLMAP, ONNX, timm)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from geoposenet.checkpoint import save_checkpoint
from geoposenet.models import ModelConfig, PoseNet

EXTRAS = ("matplotlib", "pycolmap", "onnx", "onnxruntime", "onnxscript", "timm", "scipy", "skimage")


def imported_by(code: str) -> set[str]:
    """The top-level packages in sys.modules after running `code` in a fresh interpreter."""
    script = (
        f"{code}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split("\n")[-2].split())


def test_importing_the_command_line_imports_no_extra_and_no_torch() -> None:
    found = imported_by("import geoposenet.cli\ngeoposenet.cli.build_parser()")
    assert not found & {*EXTRAS, "torch", "torchvision", "numpy"}, found


def test_predict_imports_no_extra(tmp_path: Path) -> None:
    config = ModelConfig("mobilenet_v3_small", "none", resize=32, crop=(32, 32))
    checkpoint = tmp_path / "last.pt"
    save_checkpoint(checkpoint, {"model_config": config.to_dict(),
                                 "model": PoseNet(config).state_dict()})  # fmt: skip
    image = tmp_path / "image.png"
    Image.fromarray(np.full((40, 50, 3), 128, dtype=np.uint8)).save(image)
    code = (
        "import contextlib, io\nfrom geoposenet.cli import main\n"
        f"with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['predict', {str(checkpoint)!r}, {str(image)!r}, '--device', 'cpu']) == 0"
    )
    found = imported_by(code)
    assert "torch" in found  # it did predict
    assert not found & set(EXTRAS), found & set(EXTRAS)
