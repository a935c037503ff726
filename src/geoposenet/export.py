"""ONNX export of a trained PoseNet, checked against the checkpoint with onnxruntime.

The exported graph has one input and two float32 outputs; the batch dimension B is dynamic:
- input `image`: (B, 3, h, w) uint8 RGB, (h, w) the model's crop: the image's shorter side resized
  to `resize` pixels (antialiased), then centre-cropped (`geoposenet.models.prepare_image`);
- output `position`: (B, 3) float32 camera centres in metres, world frame, *centred*: relative to
  the scene offset (the mean training camera centre);
- output `quaternion`: (B, 4) float32 unit world -> camera rotations (w, x, y, z), w >= 0;
- output `uncertainty` (a model with the aleatoric head only): (B, 2) float32 raw expected
  errors, position (dataset units) and rotation (degrees) (`uncertainty.expected_errors`).
The model's metadata_props (strings, JSON values) hold what the graph does not:
- `scene_offset`: [x, y, z], the float64 scene offset (JSON keeps every digit): a position in the
  dataset's coordinates is `position + scene_offset`, added in float64;
- `resize`: the shorter image side before cropping (pixels); `crop`: [h, w]; `backbone`: its name;
- `channel_order` "RGB", `input_dtype` "uint8", `input_range` "[0, 255]", `resize_rule` and
  `pose_convention`: the preprocessing and the outputs' meaning in words (INPUT_METADATA);
- with the aleatoric head, `uncertainty_scale`: {"position": k, "rotation": k}, the calibration
  fitted on the validation split (multiply the raw values by it), or null when the checkpoint
  has none; and `uncertainty_convention` in words.
`OnnxPoseNet(path).predict(images)` does all of it and returns what `PoseNet.predict` returns.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from geoposenet.cache import atomic_write
from geoposenet.errors import InputError
from geoposenet.extras import require
from geoposenet.geometry import canonical_quaternion
from geoposenet.models import PoseNet, Poses, image_batches
from geoposenet.uncertainty import (
    MC_SAMPLES,
    Uncertainty,
    calibrated,
    expected_errors,
    resolve_kind,
)

TOLERANCE = 1e-4
# What a deployment needs to feed the graph and read its outputs, without geoposenet.
INPUT_METADATA = {
    "channel_order": "RGB",
    "input_dtype": "uint8",
    "input_range": "[0, 255]",
    "resize_rule": "shorter side to `resize` pixels (antialiased bilinear), then the centre crop "
    "`crop` [h, w] (top = (H - h) // 2, left = (W - w) // 2); input (B, 3, h, w)",
    "pose_convention": "position: camera centre (world frame, dataset units) relative to "
    "`scene_offset` (add it, in float64); quaternion: unit world -> camera rotation "
    "(w, x, y, z), w >= 0",
}
UNCERTAINTY_CONVENTION = (
    "uncertainty: raw expected errors [position (dataset units), rotation (degrees)] of each "
    "image from the aleatoric head; multiplied by `uncertainty_scale` [position, rotation] "
    "(fitted on the validation split) they are the median error to expect; null scale: "
    "uncalibrated, only their order is meaningful"
)


class _CanonicalPoses(nn.Module):
    """PoseNet as exported: uint8 images -> centred position (B, 3), canonical quaternion (B, 4)
    and, with the aleatoric head, the raw expected errors (B, 2)."""

    def __init__(self, model: PoseNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        prediction = self.model(image)
        poses = (prediction.position, canonical_quaternion(prediction.quaternion))
        if prediction.log_scales is None:
            return poses
        return (*poses, expected_errors(prediction.log_scales))


class OnnxPoseNet:
    """An exported PoseNet run by onnxruntime (CPU): `predict` takes and returns what
    `PoseNet.predict` does, preparing image files the same way, adding the scene offset in
    float64 and applying the uncertainty calibration of the metadata (aleatoric head only)."""

    def __init__(self, path: str | Path) -> None:
        onnxruntime = require("onnxruntime")
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # not a file onnxruntime can read
            raise InputError(f"{path}: not a readable ONNX model") from error
        metadata = self.session.get_modelmeta().custom_metadata_map
        try:
            offset = json.loads(metadata["scene_offset"])
            self.offset = np.asarray(offset, dtype=np.float64).reshape(3)
            self.resize = int(json.loads(metadata["resize"]))
            height, width = json.loads(metadata["crop"])
        except (KeyError, ValueError, TypeError) as error:
            raise InputError(
                f"{path}: not exported by geoposenet (metadata {error} missing or malformed)"
            ) from error
        self.crop = (int(height), int(width))
        self.aleatoric = len(self.session.get_outputs()) == 3
        scale = json.loads(metadata.get("uncertainty_scale", "null"))
        self.calibration = {} if scale is None else {"aleatoric": scale}

    def predict(
        self,
        images: Sequence[str | Path] | Tensor,
        batch_size: int = 32,
        uncertainty: str = "auto",
        samples: int = MC_SAMPLES,
    ) -> Poses:
        """Poses of image files or a ready (N, 3, h, w) uint8 tensor: positions (N, 3) float64
        in the dataset's coordinates, quaternions (N, 4) float64 (w, x, y, z), w >= 0, and the
        aleatoric uncertainty (auto | none | aleatoric; an ONNX graph has no dropout, so
        mc-dropout, and `samples`, need the checkpoint)."""
        if uncertainty == "mc-dropout":
            raise InputError(
                "--uncertainty mc-dropout needs the checkpoint: an exported ONNX model runs "
                "without dropout"
            )
        kind = resolve_kind(uncertainty, self.aleatoric)
        positions, quaternions = [np.zeros((0, 3))], [np.zeros((0, 4))]
        raw = [np.zeros((0, 2))]
        for batch in image_batches(images, self.resize, self.crop, batch_size, workers=0):
            outputs = self.session.run(None, {"image": batch.numpy()})
            positions.append(outputs[0].astype(np.float64) + self.offset)
            quaternions.append(outputs[1].astype(np.float64))
            raw += [outputs[2].astype(np.float64)] if self.aleatoric else []
        expected: Uncertainty | None = None
        if kind == "aleatoric":
            expected = calibrated(np.concatenate(raw), kind, self.calibration)
        return Poses(np.concatenate(positions), np.concatenate(quaternions), None, expected)


def _output_file(out: str | Path) -> Path:
    """`out` as the .onnx file to write: InputError for a folder or a missing parent folder."""
    path = Path(out)
    if path.is_dir():
        raise InputError(
            f"{out}: is a folder; give the .onnx file to write, e.g. {path / 'model.onnx'}"
        )
    if str(out).endswith(("/", os.sep)):
        raise InputError(f"{out}: no such folder; give the .onnx file to write in an existing one")
    if not path.parent.is_dir():
        raise InputError(
            f"{out}: the folder {path.parent} does not exist; export writes into an existing "
            "folder only (create it first)"
        )
    return path


def export_onnx(
    checkpoint: str | Path,
    out: str | Path,
    check_batch: int = 2,
    device: str | torch.device = "cpu",
) -> float:
    """Export `checkpoint` to `out` (an .onnx file in an existing folder, written atomically)
    and compare `OnnxPoseNet(out).predict` with `PoseNet.predict` (computed on `device`) on
    random images; returns the largest absolute difference (positions in metres, quaternion
    components; the uncertainty's, relative where above 1). Above TOLERANCE it raises
    InputError and writes nothing. The graph is traced on the CPU."""
    onnx = require("onnx")
    require("onnxruntime")
    model = PoseNet.from_checkpoint(checkpoint)
    path = _output_file(out)

    height, width = model.config.crop
    generator = torch.Generator().manual_seed(0)
    example = torch.randint(0, 256, (check_batch, 3, height, width), generator=generator)
    example = example.to(torch.uint8)
    metadata = {
        "scene_offset": json.dumps(model.offset.tolist()),
        "resize": json.dumps(model.config.resize),
        "crop": json.dumps(list(model.config.crop)),
        "backbone": model.config.backbone,
        **INPUT_METADATA,
    }
    outputs = ["position", "quaternion"]
    if model.config.aleatoric:
        outputs.append("uncertainty")
        scale = model.calibration.get("aleatoric")
        shown = None if scale is None else {k: scale[k] for k in ("position", "rotation")}
        metadata["uncertainty_scale"] = json.dumps(shown)
        metadata["uncertainty_convention"] = UNCERTAINTY_CONVENTION
    difference = float("nan")

    def write(tmp: Path) -> None:
        nonlocal difference
        quiet = io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _CanonicalPoses(model).eval(),
                (example,),
                str(tmp),
                dynamo=True,
                input_names=["image"],
                output_names=outputs,
                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                external_data=False,
            )
        proto = onnx.load(str(tmp))
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        actual = OnnxPoseNet(tmp).predict(example)
        expected = model.predict(example, device=device)
        pairs = [(actual.positions, expected.positions)]
        pairs.append((actual.quaternions, expected.quaternions))
        if actual.uncertainty is not None and expected.uncertainty is not None:
            pairs.append((actual.uncertainty.position, expected.uncertainty.position))
            pairs.append((actual.uncertainty.rotation, expected.uncertainty.rotation))
        # absolute differences; for values above 1 (uncertainties in degrees) relative ones
        difference = max(
            float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max()) for a, b in pairs
        )
        if not difference <= TOLERANCE:
            raise InputError(
                f"{checkpoint}: the ONNX model differs from torch by {difference:.2e} "
                f"(> {TOLERANCE}); nothing written"
            )

    atomic_write(path, write)
    return difference
