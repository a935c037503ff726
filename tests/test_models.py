"""PoseNet and the backbone registry: builds offline, weights routes, offset, checkpoints."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import torchvision.transforms.v2.functional as F
from skimage import data as skdata

from geoposenet.checkpoint import load_checkpoint, save_checkpoint
from geoposenet.errors import CheckpointError, InputError
from geoposenet.models import (
    BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelConfig,
    PoseNet,
    build_backbone,
)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_offline_and_returns_unit_quaternions(name: str) -> None:
    torch.manual_seed(0)
    model = PoseNet(ModelConfig(backbone=name, pretrained="none")).eval()
    images = torch.randint(0, 256, (3, 3, 64, 80), dtype=torch.uint8)
    with torch.no_grad():
        prediction = model(images)
    assert prediction.position.shape == (3, 3)
    assert prediction.quaternion.shape == (3, 4)
    torch.testing.assert_close(prediction.quaternion.norm(dim=-1), torch.ones(3))


def test_channels_last_by_default_and_float_input_equals_uint8() -> None:
    model = PoseNet(ModelConfig(backbone="resnet18", pretrained="none")).eval()
    conv = model.backbone.conv1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        a = model(images)
        b = model(images.float() / 255.0)
    torch.testing.assert_close(a.position, b.position)


def test_pretrained_file_route_loads_a_classifier_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    classifier = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(classifier.state_dict(), path)
    backbone = build_backbone("resnet18", str(path))
    torch.testing.assert_close(backbone.conv1.weight, classifier.conv1.weight)
    last_bn, expected_bn = backbone.layer4[1].bn2, classifier.layer4[1].bn2
    torch.testing.assert_close(last_bn.running_var, expected_bn.running_var)


def test_pretrained_file_of_another_backbone_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    with pytest.raises(InputError, match="do not fit backbone resnet18"):
        build_backbone("resnet18", str(path))
    with pytest.raises(InputError, match="not found"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))


def test_googlenet_file_without_auxiliary_classifiers_loads(tmp_path: Path) -> None:
    classifier = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    path = tmp_path / "googlenet.pth"
    torch.save(classifier.state_dict(), path)
    backbone = build_backbone("googlenet", str(path))
    torch.testing.assert_close(backbone.conv1.conv.weight, classifier.conv1.conv.weight)
    assert backbone.transform_input  # the published ImageNet weights expect it


def test_imagenet_route_offline_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: object, progress: bool = True) -> None:
        raise urllib.error.URLError("no network")

    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    monkeypatch.setattr(type(weights), "get_state_dict", offline)
    with pytest.raises(InputError, match="--pretrained FILE"):
        build_backbone("resnet18", "imagenet")


def classify(model: torch.nn.Module, image: np.ndarray) -> list[int]:
    x = torch.from_numpy(image).permute(2, 0, 1)
    x = F.center_crop(F.resize(x, 256, antialias=True), 224).float() / 255.0
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        return model(x[None]).topk(3).indices[0].tolist()


def test_efficientnet_lite0_offline_imagenet_weights_classify_real_photos() -> None:
    spec = BACKBONES["efficientnet_lite0"]
    classifier = spec.build(True)
    classifier.load_state_dict(spec.imagenet())
    classifier.eval()
    # 281 tabby, 282 tiger cat, 285 Egyptian cat; 967 espresso
    assert set(classify(classifier, skdata.chelsea())) == {281, 282, 285}
    assert classify(classifier, skdata.coffee())[0] == 967
    model = PoseNet(ModelConfig(backbone="efficientnet_lite0", pretrained="imagenet"))
    torch.testing.assert_close(model.backbone.conv_stem.weight, classifier.conv_stem.weight)


def test_offset_buffer_and_to_scene() -> None:
    offset = torch.tensor([100.0, -20.0, 3.5], dtype=torch.float64)
    model = PoseNet(ModelConfig(backbone="mobilenet_v3_small", pretrained="none"), offset=offset)
    assert "offset" in model.state_dict()
    scene = model.to_scene(torch.tensor([[1.0, 2.0, 3.0]]))
    assert scene.dtype == torch.float64
    torch.testing.assert_close(scene, torch.tensor([[101.0, -18.0, 6.5]], dtype=torch.float64))


def test_from_checkpoint_round_trip(tmp_path: Path) -> None:
    config = ModelConfig(backbone="mobilenet_v3_small", pretrained="none", resize=64, crop=(48, 64))
    model = PoseNet(config, offset=torch.tensor([1.0, 2.0, 3.0])).eval()
    path = tmp_path / "model.pt"
    save_checkpoint(path, {"model_config": config.to_dict(), "model": model.state_dict()})
    loaded = PoseNet.from_checkpoint(path)
    assert loaded.config == config
    images = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).position, model(images).position)
    torch.testing.assert_close(loaded.offset, model.offset)


def test_checkpoint_of_another_backbone_is_a_clear_error(tmp_path: Path) -> None:
    model = PoseNet(ModelConfig(backbone="mobilenet_v3_small", pretrained="none"))
    path = tmp_path / "model.pt"
    config = ModelConfig(backbone="resnet18", pretrained="none").to_dict()
    save_checkpoint(path, {"model_config": config, "model": model.state_dict()})
    with pytest.raises(CheckpointError, match="do not fit a resnet18 PoseNet"):
        PoseNet.from_checkpoint(path)


class Exploit:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would have run code",))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "geoposenet-checkpoint", "version": 1, "payload": Exploit()}, path)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {}}, "not a geoposenet checkpoint"),
        ({"format": "geoposenet-checkpoint", "version": 0}, "format version 0"),
        ({"format": "geoposenet-checkpoint", "version": 1}, "lacks 'model_config'"),
    ],
)
def test_foreign_and_old_checkpoints(tmp_path: Path, content: dict, message: str) -> None:
    path = tmp_path / "other.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
