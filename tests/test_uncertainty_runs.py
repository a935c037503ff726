"""Per-image uncertainty end to end on the `tiny` scene: a model trained with --uncertainty
aleatoric is calibrated on the validation split only, and every prediction path (Python, predict
csv/json/colmap, eval's files and metrics, ONNX) gives the uncertainty; reprojection fine-tuning
works from it."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoposenet import train as train_module
from geoposenet.checkpoint import load_checkpoint
from geoposenet.cli import main
from geoposenet.data import PoseDataset
from geoposenet.metrics import pose_errors
from geoposenet.models import PoseNet, predict
from geoposenet.readers import load_scene
from geoposenet.validation import hold_out

TINY_TRAIN = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1",
    "--lr", "1e-3", "--no-progress", "--dropout", "0.2",
]  # fmt: skip


@pytest.fixture(scope="module")
def calibration_calls() -> list[list[str]]:
    return []


@pytest.fixture(scope="module")
def aleatoric_run(
    tiny_scene_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    calibration_calls: list[list[str]],
) -> Path:
    """Trained for 1 epoch with the default validation split; records the frames that every
    calibration of the trainer saw."""
    fit_calibration = train_module.fit_calibration

    def spy(model: PoseNet, dataset: PoseDataset, *args: Any) -> dict[str, Any]:
        calibration_calls.append([str(p) for p in dataset.paths])
        return fit_calibration(model, dataset, *args)

    run = tmp_path_factory.mktemp("aleatoric") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module, "fit_calibration", spy)
        command = ["train", str(tiny_scene_dir), "--out", str(run), *TINY_TRAIN]
        assert main([*command, "--uncertainty", "aleatoric"]) == 0
    return run


def test_calibration_uses_the_validation_split_only(
    aleatoric_run: Path, tiny_scene_dir: Path, calibration_calls: list[list[str]]
) -> None:
    scene, _ = hold_out(load_scene(tiny_scene_dir), "auto")
    val = [str(f.image) for f in scene.split("val")]
    test = {str(f.image) for f in scene.split("test")}
    assert calibration_calls == [val] and not test & set(val)
    # the stored scales are the median ratio of error to raw uncertainty on those frames
    checkpoint = load_checkpoint(aleatoric_run / "last.pt")
    stored = checkpoint["calibration"]
    assert stored["epoch"] == checkpoint["epoch"] == 1
    assert set(stored) == {"epoch", "aleatoric", "mc-dropout"}
    model = PoseNet.from_checkpoint(aleatoric_run / "last.pt")
    model.calibration = {}
    dataset = PoseDataset(scene, "val", np.zeros(3), 48, (48, 64), False, 0)
    poses = predict(model, dataset, batch_size=4)  # the trainer's batch
    assert poses.uncertainty is not None and not poses.uncertainty.calibrated
    truth = scene.subset("val")
    position_error, rotation_error = pose_errors(
        poses.positions, poses.quaternions, truth.centres, truth.quaternions
    )
    expected = np.median(position_error / poses.uncertainty.position)
    assert stored["aleatoric"]["position"] == pytest.approx(expected, rel=1e-6)
    expected = np.median(rotation_error / poses.uncertainty.rotation)
    assert stored["aleatoric"]["rotation"] == pytest.approx(expected, rel=1e-6)
    assert stored["aleatoric"]["frames"] == len(val)


def test_predict_shows_the_uncertainty_in_every_format(
    aleatoric_run: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(tiny_scene_dir / "seq3")
    python = PoseNet.from_checkpoint(aleatoric_run / "last.pt").predict(
        sorted((tiny_scene_dir / "seq3").glob("*.png"))
    )
    assert python.uncertainty is not None and python.uncertainty.calibrated
    assert main(["predict", str(aleatoric_run), folder]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "aleatoric uncertainty, the median error to expect" in lines[0]
    rows = list(csv.DictReader(lines[1:]))
    shown = np.array([float(r["position_uncertainty_m"]) for r in rows])
    np.testing.assert_allclose(shown, python.uncertainty.position, rtol=1e-12)
    assert main(["predict", str(aleatoric_run), folder, "--format", "json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(
        [e["rotation_uncertainty_deg"] for e in entries], python.uncertainty.rotation
    )
    assert entries[0]["uncertainty"] == {"kind": "aleatoric", "calibrated": True}
    assert main(["predict", str(aleatoric_run), folder, "--format", "colmap"]) == 0
    captured = capsys.readouterr()
    assert "no place for the uncertainty" in captured.err
    assert len(captured.out.splitlines()[0].split()) == 8
    assert main(["predict", str(aleatoric_run), folder, "--uncertainty", "mc-dropout"]) == 0
    assert "mc-dropout uncertainty, the median error" in capsys.readouterr().out


def test_eval_writes_the_uncertainty_per_frame_and_its_figures(
    aleatoric_run: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = aleatoric_run / "evaluation"
    assert main(["eval", str(aleatoric_run), str(tiny_scene_dir), "--out", str(out)]) == 0
    assert "Spearman" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["uncertainty"]
    assert (block["kind"], block["calibrated"]) == ("aleatoric", True)
    assert block["scale"]["position"] > 0 and block["samples"] is None
    for quantity in ("position", "rotation"):
        figures = block[quantity]
        assert len(figures["sparsification"]["curve"]) == 20
        assert figures["median_error_most_certain_80"] >= 0
    errors = list(csv.DictReader((out / "errors.csv").open()))
    assert len(errors) == metrics["num_frames"]
    assert float(errors[0]["position_uncertainty_m"]) > 0
    poses = (out / "poses.csv").read_text().splitlines()
    assert poses[1].endswith("position_uncertainty_m,rotation_uncertainty_deg")
    assert (out / "uncertainty.png").stat().st_size > 0
    assert "## Uncertainty" in (out / "report.md").read_text()
    mc = evaluate_mc(aleatoric_run, tiny_scene_dir)
    assert mc["uncertainty"]["kind"] == "mc-dropout" and mc["uncertainty"]["samples"] == 4


def evaluate_mc(run: Path, data: Path) -> dict[str, Any]:
    from geoposenet.evaluation import evaluate

    return evaluate(run / "last.pt", data, uncertainty="mc-dropout", samples=4)


def test_onnx_outputs_the_raw_uncertainty_and_applies_the_stored_scales(
    aleatoric_run: Path, tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geoposenet.export import OnnxPoseNet

    out = tmp_path / "model.onnx"
    assert main(["export", str(aleatoric_run), str(out)]) == 0
    onnx = OnnxPoseNet(out)
    assert [o.name for o in onnx.session.get_outputs()] == ["position", "quaternion", "uncertainty"]
    metadata = onnx.session.get_modelmeta().custom_metadata_map
    stored = load_checkpoint(aleatoric_run / "last.pt")["calibration"]["aleatoric"]
    assert json.loads(metadata["uncertainty_scale"]) == {
        "position": stored["position"],
        "rotation": stored["rotation"],
    }
    files = sorted((tiny_scene_dir / "seq3").glob("*.png"))
    ours = onnx.predict(files)
    theirs = PoseNet.from_checkpoint(aleatoric_run / "last.pt").predict(files)
    assert ours.uncertainty is not None and theirs.uncertainty is not None
    assert ours.uncertainty.calibrated
    np.testing.assert_allclose(ours.uncertainty.position, theirs.uncertainty.position, rtol=1e-4)
    np.testing.assert_allclose(ours.uncertainty.rotation, theirs.uncertainty.rotation, rtol=1e-4)
    capsys.readouterr()
    assert main(["predict", str(out), str(files[0]), "--uncertainty", "mc-dropout"]) == 2
    assert "--uncertainty mc-dropout needs the checkpoint" in capsys.readouterr().err


def test_reprojection_fine_tuning_from_an_aleatoric_model_without_validation(
    aleatoric_run: Path, tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "reprojection"
    command = ["train", str(tiny_scene_dir), "--out", str(run), *TINY_TRAIN, "--val", "none"]
    assert main([*command, "--loss", "reprojection", "--init", str(aleatoric_run / "last.pt")]) == 0
    model = PoseNet.from_checkpoint(run / "last.pt")
    assert model.config.aleatoric and model.calibration == {}  # no validation split: none
    capsys.readouterr()
    assert main(["predict", str(run), str(tiny_scene_dir / "seq3")]) == 0
    assert "UNCALIBRATED" in capsys.readouterr().out.splitlines()[0]
    metrics = json.loads(
        json.dumps(evaluate_mc(run, tiny_scene_dir))  # every figure is plain JSON
    )
    assert metrics["uncertainty"]["calibrated"] is False and metrics["uncertainty"]["scale"] is None


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--loss", "beta"], "--uncertainty aleatoric needs --loss learned"),
        (["--weighting-lr", "0.01"], "--weighting-lr has no effect with --uncertainty aleatoric"),
        (["--s-q", "-7"], "--s-q must be within +-6"),
    ],
)
def test_aleatoric_refusals(
    flags: list[str], message: str, tiny_scene_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    command = ["train", str(tiny_scene_dir), "--out", str(tmp_path / "run"), *TINY_TRAIN]
    assert main([*command, "--uncertainty", "aleatoric", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_aleatoric_training_needs_an_aleatoric_init(
    tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from geoposenet.checkpoint import save_checkpoint
    from geoposenet.models import ModelConfig

    config = ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64))
    plain = tmp_path / "plain.pt"
    save_checkpoint(
        plain, {"model_config": config.to_dict(), "model": PoseNet(config).state_dict()}
    )
    command = ["train", str(tiny_scene_dir), "--out", str(tmp_path / "run"), *TINY_TRAIN]
    assert main([*command, "--uncertainty", "aleatoric", "--init", str(plain)]) == 2
    assert "a model without the aleatoric head" in capsys.readouterr().err
