"""The README's onnxruntime snippet, run exactly as printed (numpy + PIL preprocessing from the
model's metadata), localises an image like PoseNet.predict, within 1e-3 (PIL's antialiased
bilinear resize is close to, not the same as, torchvision's)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from geoposenet.checkpoint import save_checkpoint
from geoposenet.cli import main
from geoposenet.models import ModelConfig, PoseNet

README = Path(__file__).resolve().parent.parent / "README.md"


def snippet() -> str:
    """The Python block between the README's onnx snippet markers."""
    text = README.read_text()
    block = re.search(
        r"<!-- onnx snippet: begin -->\n```python\n(.*?)```\n<!-- onnx snippet: end -->", text, re.S
    )
    assert block is not None, "README lost its onnx snippet markers"
    return block.group(1)


def test_readme_snippet_matches_predict(
    tiny_scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    config = ModelConfig("resnet18", "none", resize=48, crop=(48, 64))  # image-dependent output
    model = PoseNet(config, offset=torch.tensor([100.5, -20.25, 3.0], dtype=torch.float64))
    checkpoint = tmp_path / "last.pt"
    save_checkpoint(checkpoint, {"model_config": config.to_dict(), "model": model.state_dict()})
    assert main(["export", str(checkpoint), str(tmp_path / "model.onnx")]) == 0
    image = sorted((tiny_scene_dir / "seq3").glob("*.png"))[0]  # 320x240
    (tmp_path / "img.png").write_bytes(image.read_bytes())
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {}
    exec(compile(snippet(), str(README), "exec"), names)
    expected = PoseNet.from_checkpoint(checkpoint).predict([image])
    centre, quaternion = np.asarray(names["centre"]), np.asarray(names["quaternion"])[0]
    position_difference = np.abs(centre - expected.positions[0]).max()
    rotation_difference = np.abs(quaternion - expected.quaternions[0]).max()
    print(f"snippet vs predict: position {position_difference:.2e}, "
          f"quaternion {rotation_difference:.2e}")  # fmt: skip
    assert position_difference < 1e-3 and rotation_difference < 1e-3
    assert quaternion[0] >= 0
    # The only difference is the resize: on the snippet's own pixels, predict agrees to 1e-4,
    # and those pixels are within one grey level of geoposenet's.
    pixels = torch.from_numpy(np.asarray(names["pixels"]))
    same_pixels = PoseNet.from_checkpoint(checkpoint).predict(pixels)
    np.testing.assert_allclose(centre, same_pixels.positions[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(quaternion, same_pixels.quaternions[0], atol=1e-4, rtol=0)
    ours = model.prepare(image).numpy().astype(int)
    grey_levels = np.abs(pixels.numpy()[0].astype(int) - ours)
    print(f"pixels: max {grey_levels.max()} grey levels, mean {grey_levels.mean():.3f}")
    assert grey_levels.max() <= 1
