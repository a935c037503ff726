"""Tests for the evaluation plots and report.md (tiny hand-made scene, errors and logs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from geoposenet.metrics import FrameErrors, summarize
from geoposenet.report import (
    ground_axes,
    metrics_table,
    plot_cdf,
    plot_training,
    plot_trajectory,
    read_log,
    write_report,
)
from geoposenet.scene import Frame, Scene

IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def make_scene() -> Scene:
    """12 training frames on a circle and 8 test frames in two sequences; z is up."""
    frames = []
    for i in range(12):
        angle = 2 * np.pi * i / 12
        centre = [4 + 3 * np.cos(angle), 3 + 2 * np.sin(angle), 1.5 + 0.05 * (i % 2)]
        frames.append(
            Frame(f"seq1/{i}.png", Path("missing.png"), centre, IDENTITY, "seq1", "train")
        )
    for i in range(8):
        sequence = "seq2" if i < 4 else "seq3"
        centre = [1 + 0.8 * i, 1 + 0.5 * i, 1.5]
        frames.append(Frame(f"{sequence}/{i}.png", Path("missing.png"), centre, IDENTITY,
                            sequence, "test"))  # fmt: skip
    return Scene(Path("/data/tiny"), "tiny", "cambridge", frames)


def make_errors(scene: Scene) -> FrameErrors:
    """Predictions offset along x by 0.1 .. 0.8 m; rotation errors 1 .. 8 degrees."""
    test = scene.split("test")
    truth = np.stack([f.centre for f in test])
    position_error = 0.1 * np.arange(1, 9)
    predicted = truth + np.stack([position_error, 0 * position_error, 0 * position_error], 1)
    quaternions = np.tile(IDENTITY, (8, 1))
    return FrameErrors([f.name for f in test], [f.sequence for f in test], truth, quaternions,
                       predicted, quaternions, position_error, np.arange(1.0, 9.0))  # fmt: skip


def write_log(path: Path, loss: str = "learned", with_eval: bool = True) -> Path:
    """A trainer log of 6 epochs; the train keys depend on the loss, eval every 2nd epoch."""
    with path.open("w") as handle:
        for epoch in range(1, 7):
            train = {"loss": 3.0 / epoch - 1.0, "position": 2.0 / epoch, "orientation": 0.2 / epoch}
            if loss == "learned":
                train |= {"s_x": -0.1 * epoch, "s_q": -3.0 - 0.1 * epoch}
            if loss == "reprojection":
                train = {"loss": 5.0 / epoch, "reprojection": 5.0 / epoch}
            entry = {"epoch": epoch, "step": 10 * epoch, "time_s": 5.0 * epoch, "lr": 1e-4,
                     "images_per_s": 100.0, "train": train}  # fmt: skip
            if with_eval and epoch % 2 == 0:
                for split, scale in (("val", 0.8), ("test", 1.0)):
                    entry[split] = {"median_position_error_m": scale / epoch,
                                    "median_rotation_error_deg": 10.0 * scale / epoch}  # fmt: skip
            handle.write(json.dumps(entry) + "\n")
        handle.write('{"epoch": 7, "tra')  # a line cut short by an interrupted run
    return path


def check_png(path: Path, min_width: int = 500, min_height: int = 300) -> None:
    image = imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert image.shape[1] >= min_width and image.shape[0] >= min_height
    assert image[..., :3].std() > 0.05  # not a blank canvas
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, unlike the temp file


@pytest.fixture
def scene() -> Scene:
    return make_scene()


def test_ground_axes_drops_the_axis_of_least_spread() -> None:
    rng = np.random.default_rng(0)
    z_up = rng.normal(size=(50, 3)) * [3.0, 2.0, 0.1]
    y_down = rng.normal(size=(50, 3)) * [3.0, 0.1, 2.0]
    assert ground_axes(z_up) == (0, 1)
    assert ground_axes(y_down) == (0, 2)
    assert ground_axes(rng.normal(size=(50, 3)) * [0.1, 3.0, 2.0]) == (1, 2)


def test_write_report_writes_plots_and_markdown(scene: Scene, tmp_path: Path) -> None:
    errors = make_errors(scene)
    metrics = summarize(errors.position_error_m, errors.rotation_error_deg, errors.sequences)
    metrics["split"] = "test"
    log = write_log(tmp_path / "log.jsonl")
    out = tmp_path / "eval"
    write_report(out, scene, errors, metrics, log)
    for name in ("trajectory.png", "cdf.png", "training.png"):
        check_png(out / name)
    report = (out / "report.md").read_text()
    assert report.startswith("# ") and "tiny" in report and "cambridge" in report
    assert "0.450 m" in report and "4.50°" in report  # medians of 0.1..0.8 m and 1..8 deg
    assert "**test**, 8 frames" in report and "12 training, 8 test" in report
    for link in ("](trajectory.png)", "](cdf.png)", "](training.png)"):
        assert link in report
    assert "| seq2 | 4 | 0.250 | 2.50 |" in report and "| seq3 | 4 | 0.650 | 6.50 |" in report
    assert "within 0.25 m, 2°" in report and "x–y plane" in report
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


def test_missing_log_skips_training_plot(scene: Scene, tmp_path: Path) -> None:
    errors = make_errors(scene)
    metrics = summarize(errors.position_error_m, errors.rotation_error_deg, errors.sequences)
    (tmp_path / "training.png").write_bytes(b"stale")
    write_report(tmp_path, scene, errors, metrics, tmp_path / "no-such-log.jsonl")
    report = (tmp_path / "report.md").read_text()
    assert "No training log" in report and "](training.png)" not in report
    assert not (tmp_path / "training.png").exists()
    check_png(tmp_path / "trajectory.png")
    check_png(tmp_path / "cdf.png")


@pytest.mark.parametrize("loss, with_eval, panels", [("beta", False, 2), ("reprojection", True, 3)])
def test_plot_training_plots_what_the_log_holds(
    tmp_path: Path, loss: str, with_eval: bool, panels: int
) -> None:
    log = write_log(tmp_path / "log.jsonl", loss, with_eval)
    assert len(read_log(log)) == 6
    assert plot_training(log, tmp_path / "training.png")
    # one or two panels lay out on one row, three or four on two rows
    check_png(tmp_path / "training.png", min_height=600 if panels > 2 else 300)
    if panels == 2:
        assert imread(tmp_path / "training.png").shape[0] < 600


def test_plot_training_without_usable_entries(tmp_path: Path) -> None:
    assert not plot_training(tmp_path / "missing.jsonl", tmp_path / "a.png")
    empty = tmp_path / "empty.jsonl"
    empty.write_text('\n{"epoch": 1}\nnot json\n[1, 2]\n')
    assert not plot_training(empty, tmp_path / "b.png")
    assert not (tmp_path / "a.png").exists() and not (tmp_path / "b.png").exists()


def test_reusable_plots_for_several_stages(scene: Scene, tmp_path: Path) -> None:
    first = make_errors(scene)
    second = make_errors(scene)
    second.position_error_m = first.position_error_m / 2
    plot_cdf([("learned", first), ("+ reprojection", second)], tmp_path / "cdf.png", "Stages")
    plot_trajectory(scene, second, tmp_path / "trajectory.png", title="Stage 2")
    check_png(tmp_path / "cdf.png")
    check_png(tmp_path / "trajectory.png")


def test_metrics_table_lists_medians_means_and_thresholds() -> None:
    metrics = summarize(np.array([0.1, 0.3, 2.0]), np.array([1.0, 3.0, 20.0]))
    table = metrics_table(metrics)
    assert "| median position error | 0.300 m |" in table
    assert "| median rotation error | 3.00° |" in table
    assert "| within 0.5 m, 5° | 66.7 % |" in table
    assert table.count("\n") == 2 + 4 + len(metrics["accuracy"]) - 1


def test_model_units_in_every_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unscaled reconstruction: axis labels, tables and report.md say "model units"."""
    import geoposenet.report as report

    scene = make_scene()
    scene.position_unit = "model units"
    errors = make_errors(scene)
    labels: list[str] = []

    def keep_labels(fig: object, path: Path, dpi: int = 120) -> None:
        labels.extend(ax.get_xlabel() + "|" + ax.get_ylabel() for ax in fig.axes)  # type: ignore[attr-defined]

    monkeypatch.setattr(report, "save_figure", keep_labels)
    metrics = {**summarize(errors.position_error_m, errors.rotation_error_deg, errors.sequences),
               "position_unit": "model units"}  # fmt: skip
    write_report(tmp_path, scene, errors, metrics, write_log(tmp_path / "log.jsonl"))
    assert "x (model units)|y (model units)" in labels  # trajectory
    assert "position error (model units)|fraction of frames" in labels  # CDF
    assert any("median position error (model units)" in label for label in labels)  # training
    assert not any("(m)" in label for label in labels)
    text = (tmp_path / "report.md").read_text()
    assert "| median position error | 0.450 model units |" in text
    assert "| within 0.25 model units, 2° |" in text and "median position (model units)" in text
    assert " m |" not in text and "(m)" not in text
