"""One prediction path, one convention: every pose the project returns or writes has w >= 0.

The model here is built to predict w < 0: its head ignores the image (zero weights) and its bias
is the quaternion (-1, 0.2, 0, 0), so any path that skips the canonical form shows it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from geoposenet.baselines import nearest_feature_pose, split_features
from geoposenet.checkpoint import save_checkpoint
from geoposenet.cli import main
from geoposenet.data import PoseDataset
from geoposenet.distributed import World, predict_sharded
from geoposenet.evaluation import frame_errors
from geoposenet.models import ModelConfig, PoseNet, predict
from geoposenet.readers import load_scene

OFFSET = [100.5, -20.25, 3.0]
RAW = np.array([-1.0, 0.2, 0.0, 0.0])  # the head's quaternion, w < 0
CANONICAL = -RAW / np.linalg.norm(RAW)
CONFIG = ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64))


def negative_w_model() -> PoseNet:
    model = PoseNet(CONFIG, offset=torch.tensor(OFFSET, dtype=torch.float64))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.5, 0.25, -1.0, *RAW]))
    return model.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("negative-w") / "run" / "last.pt"
    model = negative_w_model()
    save_checkpoint(path, {"model_config": CONFIG.to_dict(), "model": model.state_dict()})
    return path


def assert_canonical(quaternions: np.ndarray) -> None:
    assert len(quaternions) and (quaternions[:, 0] >= 0).all()
    np.testing.assert_allclose(quaternions, np.tile(CANONICAL, (len(quaternions), 1)), atol=1e-6)


def test_forward_keeps_the_raw_sign_for_training() -> None:
    with torch.no_grad():
        quaternion = negative_w_model()(torch.zeros(1, 3, 48, 64, dtype=torch.uint8)).quaternion
    assert quaternion[0, 0] < 0


def test_posenet_predict_on_files_and_tensors(checkpoint: Path, tiny_scene_dir: Path) -> None:
    model = PoseNet.from_checkpoint(checkpoint)
    files = sorted((tiny_scene_dir / "seq3").glob("*.png"))[:3]
    poses = model.predict(files, batch_size=2)
    assert_canonical(poses.quaternions)
    np.testing.assert_allclose(poses.positions, np.tile(np.add(OFFSET, [0.5, 0.25, -1]), (3, 1)))
    assert poses.features is None
    tensor = model.predict(torch.stack([model.prepare(f) for f in files]))
    np.testing.assert_array_equal(tensor.quaternions, poses.quaternions)


def test_predict_restores_mode_and_returns_features(checkpoint: Path, tiny_scene_dir: Path) -> None:
    model = PoseNet.from_checkpoint(checkpoint).train()
    dataset = PoseDataset(load_scene(tiny_scene_dir), "test", np.zeros(3), 48, (48, 64), False, 0)
    poses = predict(model, dataset, batch_size=4, device="cpu", features=True)
    assert model.training
    assert poses.features is not None and poses.features.shape == (len(dataset), 576)
    assert poses.features.dtype == np.float64
    assert_canonical(poses.quaternions)


def test_evaluation_and_errors_csv(checkpoint: Path, tiny_scene_dir: Path) -> None:
    assert_canonical(
        frame_errors(PoseNet.from_checkpoint(checkpoint), load_scene(tiny_scene_dir)).quaternion
    )
    out = checkpoint.parent / "evaluation"
    assert main(["eval", str(checkpoint.parent), str(tiny_scene_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "errors.csv").open()))
    assert_canonical(np.array([[float(r[f"pred_q{a}"]) for a in "wxyz"] for r in rows]))
    # the predicted poses beside metrics.json, by frame name, in csv and the colmap format
    names = [r["name"] for r in rows]
    predicted = np.array([[float(r[f"pred_{a}"]) for a in ("x", "y", "z")] for r in rows])
    lines = (out / "poses.csv").read_text().splitlines()
    assert lines[0].startswith("#") and len(lines) == len(rows) + 2
    assert [line.split(",")[0] for line in lines[2:]] == names
    colmap = [line.split() for line in (out / "poses_colmap.txt").read_text().splitlines()]
    assert [line[0] for line in colmap] == names
    quaternions = np.array([[float(v) for v in line[1:5]] for line in colmap])
    assert_canonical(quaternions)
    rotations = Rotation.from_quat(quaternions[:, [1, 2, 3, 0]]).as_matrix()
    translations = np.array([[float(v) for v in line[5:]] for line in colmap])
    np.testing.assert_allclose(
        translations, -np.einsum("nij,nj->ni", rotations, predicted), atol=1e-6
    )


def test_predict_command_csv_json_and_folders(
    checkpoint: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_scene_dir / "seq3"
    files = sorted(str(p) for p in folder.iterdir() if p.suffix == ".png")
    assert main(["predict", str(checkpoint), *files, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert_canonical(np.array([r["quaternion_wxyz"] for r in rows]))
    assert main(["predict", str(checkpoint), *files]) == 0
    lines = capsys.readouterr().out.splitlines()[2:]  # after the convention and header lines
    assert_canonical(np.array([[float(v) for v in line.split(",")[4:]] for line in lines]))
    # a folder (and a run folder for the checkpoint) = its sorted images, as does a glob
    assert main(["predict", str(checkpoint.parent), str(folder), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == rows
    assert captured.err.strip() == f"using {checkpoint}"
    assert main(["predict", str(checkpoint), str(folder / "*.png"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == rows


def test_predict_writes_the_colmap_format_atomically_to_out(
    checkpoint: Path, tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "poses.txt"
    folder = tiny_scene_dir / "seq3"
    assert (
        main(["predict", str(checkpoint), str(folder), "--format", "colmap", "--out", str(out)])
        == 0
    )
    assert capsys.readouterr().out == ""
    lines = [line.split() for line in out.read_text().splitlines()]
    assert [line[0] for line in lines] == [str(p) for p in sorted(folder.glob("*.png"))]
    assert_canonical(np.array([[float(v) for v in line[1:5]] for line in lines]))
    assert [p.name for p in tmp_path.iterdir()] == ["poses.txt"]  # no temporary left
    # a failing prediction leaves the previous file as it was
    before = out.read_text()
    assert main(["predict", str(checkpoint), str(folder / "missing.png"), "--out", str(out)]) == 2
    assert out.read_text() == before and "missing.png" in capsys.readouterr().err
    assert main(["predict", str(checkpoint), str(folder), "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err


class _OneRank(World):
    """Rank `rank` of 2 without a process group: sees only its own shard when gathering."""

    def gather(self, value: object) -> list[object]:
        return [value]


def test_trainer_evaluation_path(checkpoint: Path, tiny_scene_dir: Path) -> None:
    model = PoseNet.from_checkpoint(checkpoint)
    dataset = PoseDataset(load_scene(tiny_scene_dir), "test", model.offset.numpy(), 48, (48, 64))
    _, quaternions = predict_sharded(World(), model, dataset, 4)
    assert_canonical(quaternions)
    for rank in (0, 1):
        _, shard = predict_sharded(_OneRank(rank=rank, size=2), model, dataset, 4)
        assert_canonical(shard[rank::2])


def test_baselines(checkpoint: Path, tiny_scene_dir: Path) -> None:
    model, scene = PoseNet.from_checkpoint(checkpoint), load_scene(tiny_scene_dir)
    _, quaternions, _ = nearest_feature_pose(model, scene)
    assert (quaternions[:, 0] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(split_features(model, scene, "test"), axis=1), 1.0)


def test_onnx_helper(checkpoint: Path, tiny_scene_dir: Path, tmp_path: Path) -> None:
    from geoposenet.export import OnnxPoseNet

    out = tmp_path / "model.onnx"
    assert main(["export", str(checkpoint), str(out)]) == 0
    onnx = OnnxPoseNet(out)
    files = sorted((tiny_scene_dir / "seq3").glob("*.png"))
    poses = onnx.predict(files)
    assert_canonical(poses.quaternions)
    expected = PoseNet.from_checkpoint(checkpoint).predict(files)
    np.testing.assert_allclose(poses.positions, expected.positions, atol=1e-4, rtol=0)
    np.testing.assert_allclose(poses.quaternions, expected.quaternions, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(onnx.offset, OFFSET)
    assert (onnx.resize, onnx.crop) == (48, (48, 64))
    metadata = onnx.session.get_modelmeta().custom_metadata_map
    assert metadata["channel_order"] == "RGB" and metadata["input_dtype"] == "uint8"
    assert metadata["input_range"] == "[0, 255]"
    assert "antialiased bilinear" in metadata["resize_rule"]
    assert "w >= 0" in metadata["pose_convention"]
