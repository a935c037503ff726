"""The command line as a user meets it: train -> eval -> predict -> export, demo, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from geoposenet import PoseNet, evaluate, load_scene
from geoposenet.cli import main

TINY_TRAIN = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "2",
    "--lr", "1e-3", "--no-progress",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tiny_scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", str(tiny_scene_dir), "--out", str(run), *TINY_TRAIN]) == 0
    return run


def test_eval_writes_metrics_errors_plots_and_report(
    trained_run: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = trained_run / "evaluation"
    assert main(["eval", str(trained_run / "last.pt"), str(tiny_scene_dir), "--out", str(out)]) == 0
    assert "median" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("num_frames", "median_position_error_m", "median_rotation_error_deg",
                "mean_position_error_m", "mean_rotation_error_deg", "accuracy"):  # fmt: skip
        assert key in metrics
    assert metrics["num_frames"] == 10
    assert "0.25m_2deg" in metrics["accuracy"] and "per_sequence" in metrics
    rows = (out / "errors.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("name,sequence,position_error_m")
    for name in ("trajectory.png", "cdf.png", "training.png", "report.md"):
        assert (out / name).stat().st_size > 0
    # The Python API gives the same numbers.
    api = evaluate(trained_run / "last.pt", tiny_scene_dir)
    assert api["median_position_error_m"] == pytest.approx(metrics["median_position_error_m"])


def test_predict_json_and_csv_match_the_python_api(
    trained_run: Path, tiny_scene_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [str(f.image) for f in load_scene(tiny_scene_dir, split="test").frames[:3]]
    assert main(["predict", str(trained_run / "last.pt"), *images, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in rows] == images
    quaternions = np.array([r["quaternion_wxyz"] for r in rows])
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=1), 1.0, atol=1e-6)
    assert (quaternions[:, 0] >= 0).all()
    poses = PoseNet.from_checkpoint(trained_run / "last.pt").predict(images)
    np.testing.assert_array_equal(np.array([r["position"] for r in rows]), poses.positions)
    np.testing.assert_array_equal(quaternions, poses.quaternions)
    assert main(["predict", str(trained_run / "last.pt"), *images]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# x y z: camera centre") and len(lines) == 5
    assert lines[1] == "image,x,y,z,qw,qx,qy,qz"


def test_predict_into_a_closed_pipe_is_quiet(trained_run: Path, tiny_scene_dir: Path) -> None:
    """`geoposenet predict ... | head -1`: the reader leaves early; no traceback, exit 0."""
    images = [str(f.image) for f in load_scene(tiny_scene_dir, split="test").frames]
    command = [sys.executable, "-m", "geoposenet", "predict", str(trained_run), *images]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # before the first pose is written: every write meets EPIPE
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "Error" not in err


def test_export_onnx_matches_torch(trained_run: Path, tmp_path: Path) -> None:
    """The graph gives float32 centred positions and canonical quaternions; the helper adds the
    float64 offset from the metadata and equals PoseNet.predict."""
    import onnxruntime
    import torch

    from geoposenet.export import OnnxPoseNet

    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_run / "last.pt"), str(out)]) == 0
    model = PoseNet.from_checkpoint(trained_run / "last.pt")
    images = torch.randint(0, 256, (5, 3, 48, 64), dtype=torch.uint8)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    position, quaternion = session.run(None, {"image": images.numpy()})
    assert position.dtype == quaternion.dtype == np.float32
    poses = model.predict(images)
    offset = model.offset.numpy()
    np.testing.assert_allclose(position + offset, poses.positions, atol=1e-4, rtol=0)
    np.testing.assert_allclose(quaternion, poses.quaternions, atol=1e-4, rtol=0)
    helper = OnnxPoseNet(out).predict(images)
    np.testing.assert_allclose(helper.positions, poses.positions, atol=1e-4, rtol=0)
    np.testing.assert_allclose(helper.quaternions, poses.quaternions, atol=1e-4, rtol=0)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["scene_offset"]) == offset.tolist()  # every float64 digit


def test_predict_runs_an_onnx_file_like_its_checkpoint(
    trained_run: Path, tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`geoposenet predict MODEL.onnx` prepares the images as the checkpoint does and gives the
    same poses within 1e-4."""
    out = tmp_path / "model.onnx"
    assert main(["export", str(trained_run), str(out)]) == 0
    images = [str(f.image) for f in load_scene(tiny_scene_dir, split="test").frames]
    capsys.readouterr()
    assert main(["predict", str(out), *images, "--format", "json"]) == 0
    onnx = json.loads(capsys.readouterr().out)
    assert main(["predict", str(trained_run / "last.pt"), *images, "--format", "json"]) == 0
    torch_rows = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in onnx] == [r["image"] for r in torch_rows] == images
    for key in ("position", "quaternion_wxyz"):
        np.testing.assert_allclose(
            [r[key] for r in onnx], [r[key] for r in torch_rows], atol=1e-4, rtol=0
        )


def test_demo_on_tiny_writes_table_and_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--preset", "tiny", "--out", str(out), "--backbone", "mobilenet_v3_small",
            "--pretrained", "none"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "oracle nearest training pose" in printed and "mean training pose" in printed
    rows = json.loads((out / "metrics.json").read_text())
    assert len(rows) == 7  # 3 reference rows, 4 stages: the tiny plan synthesises 10 views
    assert "+ 1 more epoch(s) with 10 synthesised views (exact renderer)" in rows
    assert "+ 1 more epoch(s) on the original frames (control)" in rows
    assert "oracle nearest training pose, synthesised views included" in rows
    report = (out / "report.md").read_text()
    for image in ("trajectory.png", "cdf.png", "training-stage1-learned.png",
                  "training-stage1b-synthesised-views.png"):  # fmt: skip
        assert image in report and (out / image).is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["train", "{data}", "--out", "{tmp}/r", "--epochs", "0"],
        ["train", "{data}", "--out", "{tmp}/r", "--lr", "abc"],
        ["train", "{data}", "--out", "{tmp}/r", "--backbone", "vgg99"],
        ["train", "{data}", "--out", "{tmp}/r", "--crop", "12x"],
        ["train", "{tmp}/missing", "--out", "{tmp}/r"],
        ["train", "{data}"],
        ["eval", "{tmp}/missing.pt", "{data}"],
        ["eval", "{tmp}/junk.pt", "{data}"],
        ["predict", "{tmp}/junk.pt", "{tmp}/image.png"],
        ["export", "{tmp}/missing.pt", "{tmp}/out.onnx"],
        ["frobnicate"],
    ],
)
def test_bad_input_exits_2_with_one_message(
    args: list[str], tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    filled = [a.format(data=tiny_scene_dir, tmp=tmp_path) for a in args]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_console_script_help_and_exit_code() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "geoposenet", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    for command in ("demo", "synth", "check", "train", "eval", "predict", "export"):
        assert command in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "geoposenet", "train"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_demo_interrupted_says_rerun_demo_and_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import torch

    out = tmp_path / "demo"
    args = ["demo", "--preset", "tiny", "--out", str(out), "--backbone", "mobilenet_v3_small",
            "--pretrained", "none", "--device", "cpu", "--threads", "1"]  # fmt: skip
    step = torch.optim.Adam.step

    def step_then_interrupt(self: torch.optim.Adam, *a: object, **k: object) -> object:
        result = step(self, *a, **k)
        os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(torch.optim.Adam, "step", step_then_interrupt)
    assert main(args) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    assert f"Continue with: geoposenet demo --out {out}" in err and "train --resume" not in err
    monkeypatch.undo()
    assert main(args) == 0  # continues the interrupted stage
    assert len(json.loads((out / "metrics.json").read_text())) == 7
    records = [
        json.loads(x) for x in (out / "stage1-learned" / "log.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in records] == [0, 1]
