"""ONNX export of a trained PoseNet, checked against torch with onnxruntime.

The exported graph takes `image`: (B, 3, h, w) uint8 (the model's input size, see the
checkpoint's model_config: resize the shorter side, then centre-crop) and returns `position`
(B, 3) float64 camera centres in the dataset's coordinates and `quaternion` (B, 4) float32 unit
world -> camera rotations (w, x, y, z). The batch dimension is dynamic.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from geoposenet.cache import atomic_write
from geoposenet.errors import InputError
from geoposenet.models import PoseNet

TOLERANCE = 1e-4


class _ScenePoses(nn.Module):
    """PoseNet with the scene offset applied: uint8 images -> (position, quaternion)."""

    def __init__(self, model: PoseNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor]:
        prediction = self.model(image)
        return self.model.to_scene(prediction.position), prediction.quaternion


def export_onnx(checkpoint: str | Path, out: str | Path, check_batch: int = 2) -> float:
    """Export `checkpoint` to `out` (written atomically) and run both on random images;
    returns the largest absolute difference, raising InputError above TOLERANCE."""
    try:
        import onnxruntime
    except ImportError as error:
        raise InputError(
            "ONNX export needs onnx and onnxruntime: pip install 'geoposenet[onnx]'"
        ) from error
    model = PoseNet.from_checkpoint(checkpoint).eval()
    wrapper = _ScenePoses(model).eval()
    height, width = model.config.crop
    example = torch.randint(0, 256, (check_batch, 3, height, width), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)

    def write(tmp: Path) -> None:
        quiet = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper,
                (example,),
                str(tmp),
                dynamo=True,
                input_names=["image"],
                output_names=["position", "quaternion"],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )

    out = Path(out)
    atomic_write(out, write)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = [t.numpy() for t in wrapper(example)]
    actual = session.run(None, {"image": example.numpy()})
    difference = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected, strict=True))
    if not difference <= TOLERANCE:
        out.unlink(missing_ok=True)
        raise InputError(
            f"{checkpoint}: the ONNX model differs from torch by {difference:.2e} "
            f"(> {TOLERANCE}); nothing written"
        )
    return difference
