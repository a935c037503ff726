"""Training on the synthetic `tiny` scene: the loss falls, resume is exact, failures are clean."""

from __future__ import annotations

import json
import os
import signal
import tomllib
from pathlib import Path
from typing import Any

import pytest
import torch

from geoposenet.checkpoint import load_checkpoint
from geoposenet.config import TrainConfig, resolve_config
from geoposenet.errors import InputError, TrainingError, TrainingInterrupted
from geoposenet.step import EpochBatches, learning_rate
from geoposenet.train import fit


def tiny_config(data: Path, out: Path, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "backbone": "mobilenet_v3_small",
        "pretrained": "none",
        "resize": 48,
        "crop": (48, 64),
        "batch_size": 4,
        "epochs": 3,
        "lr": 1e-3,
        "jitter": 0.2,
        "dropout": 0.1,
        "eval_every": 2,
        "val": "none",  # all 20 training frames: 5 batches of 4 per epoch
        **overrides,
    }
    return resolve_config("cpu", data=str(data), out=str(out), **values)


def log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a), load_checkpoint(b)
    for key in ("model", "loss"):
        assert first[key].keys() == second[key].keys()
        for name, tensor in first[key].items():
            assert torch.equal(tensor, second[key][name]), f"{key}.{name} differs"


def test_loss_falls_and_run_files(tiny_scene_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_scene_dir, tmp_path / "run", epochs=6, eval_every=3, val="auto")
    run = fit(config, progress=False)
    records = log(run)
    assert [r["epoch"] for r in records] == list(range(6))
    assert records[-1]["train"]["loss"] < records[0]["train"]["loss"]
    assert records[-1]["train"]["position"] < records[0]["train"]["position"]
    for split in ("val", "test"):  # both evaluated and logged; best.pt chosen on "val" only
        assert split in records[2] and split in records[5] and split not in records[0]
    assert {"s_x", "s_q"} <= records[0]["train"].keys()
    for name in ("config.toml", "last.pt", "best.pt"):
        assert (run / name).is_file()
    checkpoint = load_checkpoint(run / "last.pt")
    assert checkpoint["epoch"] == 6 and checkpoint["batch"] == 0
    assert checkpoint["train_config"]["backbone"] == "mobilenet_v3_small"
    assert tomllib.loads((run / "config.toml").read_text())["recipe"]["lr"] == 1e-3


def test_weighting_lr_moves_s_x_and_s_q_faster(tiny_scene_dir: Path, tmp_path: Path) -> None:
    """--weighting-lr sets the learning rate of s_x, s_q only; Adam moves a parameter by about
    its learning rate per step, so 20x the rate moves them several times further."""
    moved, lrs = {}, {}
    for name, weighting_lr in (("same", None), ("fast", 2e-2)):
        run = fit(
            tiny_config(tiny_scene_dir, tmp_path / name, epochs=2, weighting_lr=weighting_lr),
            progress=False,
        )
        checkpoint = load_checkpoint(run / "last.pt")
        lrs[name] = [group["lr"] for group in checkpoint["optimizer"]["param_groups"]]
        moved[name] = abs(float(checkpoint["loss"]["s_q"]) + 3.0)
    assert lrs["same"] == [1e-3, 1e-3]
    assert lrs["fast"] == pytest.approx([1e-3, 2e-2])
    assert moved["fast"] > 5 * moved["same"] > 0


def test_resume_after_epoch_and_mid_epoch_equals_uninterrupted(
    tiny_scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = fit(tiny_config(tiny_scene_dir, tmp_path / "reference"), progress=False)

    # Stop by SIGINT in the middle of epoch 2 (at the 7th optimiser step of 5 per epoch).
    steps = {"count": 0}
    original_step = torch.optim.Adam.step

    def step_then_interrupt(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        result = original_step(self, *args, **kwargs)
        steps["count"] += 1
        if steps["count"] == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    config = tiny_config(tiny_scene_dir, tmp_path / "interrupted")
    monkeypatch.setattr(torch.optim.Adam, "step", step_then_interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        fit(config, progress=False)
    monkeypatch.undo()
    state = load_checkpoint(tmp_path / "interrupted" / "last.pt")
    assert (state["epoch"], state["batch"]) == (1, 2)
    resumed = fit(config, resume=True, progress=False)
    assert_same_weights(reference / "last.pt", resumed / "last.pt")
    assert [r["train"] for r in log(reference)] == [r["train"] for r in log(resumed)]


def test_resume_refuses_changed_settings_and_fresh_run_refuses_existing(
    tiny_scene_dir: Path, tmp_path: Path
) -> None:
    fit(tiny_config(tiny_scene_dir, tmp_path / "run", epochs=1), progress=False)
    with pytest.raises(InputError, match="--resume"):
        fit(tiny_config(tiny_scene_dir, tmp_path / "run", epochs=1), progress=False)
    with pytest.raises(InputError, match=r"lr: 0.001 -> 0.01"):
        fit(tiny_config(tiny_scene_dir, tmp_path / "run", lr=1e-2), resume=True, progress=False)
    # More epochs may be added to a finished run.
    run = fit(tiny_config(tiny_scene_dir, tmp_path / "run", epochs=2), resume=True, progress=False)
    assert [r["epoch"] for r in log(run)] == [0, 1]


def test_finetune_with_reprojection_from_init(tiny_scene_dir: Path, tmp_path: Path) -> None:
    first = fit(tiny_config(tiny_scene_dir, tmp_path / "learned", epochs=1), progress=False)
    second = fit(
        tiny_config(
            tiny_scene_dir, tmp_path / "reproj", epochs=1, loss="reprojection",
            init=str(first / "last.pt"), points_per_frame=32,
        ),
        progress=False,
    )  # fmt: skip
    records = log(second)
    assert records[0]["train"]["reprojection"] > 0
    start, end = load_checkpoint(first / "last.pt"), load_checkpoint(second / "last.pt")
    assert torch.equal(start["model"]["offset"], end["model"]["offset"])
    assert not torch.equal(start["model"]["head.weight"], end["model"]["head.weight"])


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_last_epoch(
    tiny_scene_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_config(tiny_scene_dir, tmp_path / "run", loss="beta")
    fit(replace_epochs(config, 1), progress=False)
    good = load_checkpoint(tmp_path / "run" / "last.pt")["model"]["head.weight"].clone()
    from geoposenet import losses

    def broken(self: Any, position: torch.Tensor, quaternion: torch.Tensor, batch: Any) -> Any:
        value = position.sum() * float("nan")
        return value, {"loss": value.detach(), "position": value.detach()}

    monkeypatch.setattr(losses.BetaLoss, "forward", broken)
    with pytest.raises(TrainingError, match=r"non-finite at epoch 2, batch 1 .*--lr.*check"):
        fit(config, resume=True, progress=False)
    kept = load_checkpoint(tmp_path / "run" / "last.pt")
    assert kept["epoch"] == 1
    assert torch.equal(kept["model"]["head.weight"], good)


def replace_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    return TrainConfig.from_dict({**config.to_dict(), "epochs": epochs})


def test_reprojection_without_points_is_refused(tmp_path: Path, tiny_scene_dir: Path) -> None:
    import shutil

    data = tmp_path / "nopoints"
    shutil.copytree(tiny_scene_dir, data)
    (data / "reconstruction.nvm").unlink()
    with pytest.raises(InputError, match="needs 3D points"):
        fit(tiny_config(data, tmp_path / "run", loss="reprojection"), progress=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"epochs": 0}, "--epochs"),
        ({"lr": -1.0}, "--lr"),
        ({"weighting_lr": 0.0}, "--weighting-lr"),
        ({"backbone": "vgg99"}, "--backbone"),
        ({"loss": "huber"}, "--loss"),
        ({"dropout": 1.0}, "--dropout"),
        ({"crop": (8, 8)}, "--crop"),
        ({"device": "tpu"}, "--device"),
    ],
)
def test_flags_out_of_range(override: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_config("cpu", data="x", out="y", **override)


def test_presets() -> None:
    paper = resolve_config("paper")
    assert (paper.backbone, paper.resize, paper.crop, paper.batch_size, paper.loss) == (
        "googlenet", 256, (224, 224), 64, "learned"
    )  # fmt: skip
    cpu = resolve_config("cpu", batch_size=16)
    assert (cpu.backbone, cpu.batch_size) == ("googlenet", 16) and cpu.crop[0] < 224
    with pytest.raises(InputError, match="--preset"):
        resolve_config("gpu")


def test_epoch_batches_order_is_seeded_and_resumable() -> None:
    sampler = EpochBatches(10, 4, seed=3)
    sampler.epoch = 1
    full = list(sampler)
    assert len(full) == 2 and all(len(b) == 4 for b in full)
    assert len({i for b in full for i in b}) == 8
    sampler.start = 1
    assert list(sampler) == full[1:]
    sampler.epoch, sampler.start = 2, 0
    assert list(sampler) != full


def test_learning_rate_schedules() -> None:
    config = TrainConfig(lr=1.0, epochs=4, schedule="cosine", warmup_epochs=1)
    assert learning_rate(config, 0, 0, 10) == pytest.approx(0.1)
    assert learning_rate(config, 1, 0, 10) == pytest.approx(1.0)
    assert learning_rate(config, 2, 5, 10) == pytest.approx(0.5)
    step = TrainConfig(lr=1.0, epochs=4, schedule="step")
    assert [learning_rate(step, e, 0, 10) for e in range(4)] == pytest.approx([1, 1, 0.1, 0.01])


def test_epoch_summary_lines_logged_lr_and_closing_table(
    tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a progress bar (and stdout not a terminal) every epoch leaves one line; the
    logged lr is the one the epoch's first step used, also during warm-up."""
    config = tiny_config(
        tiny_scene_dir, tmp_path / "run", epochs=2, warmup_epochs=1, schedule="cosine",
        eval_every=1, val="auto",
    )  # fmt: skip
    run = fit(config, progress=False)
    out = capsys.readouterr().out
    records = log(run)
    from geoposenet.readers import load_scene
    from geoposenet.validation import hold_out

    training = len(hold_out(load_scene(tiny_scene_dir), "auto")[0].split("train"))
    batches = training // config.batch_size
    assert [r["lr"] for r in records] == [
        learning_rate(config, epoch, 0, batches) for epoch in (0, 1)
    ]
    assert records[0]["lr"] == pytest.approx(1e-3 / batches)  # not the 1e-3 after warm-up
    lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2
    for line, record in zip(lines, records, strict=True):
        for part in ("loss", "position", "orientation", "s_x", "s_q", "images/s"):
            assert part in line
        assert f"lr {record['lr']:.3g}" in line
        median = record["val"]["median_position_error_m"]
        assert f"val {median:.3f} m" in line and "test " in line
    best = min(records, key=lambda r: r["val"]["median_position_error_m"])
    assert (
        f"| {best['epoch'] + 1} (best) | val | {best['val']['median_position_error_m']:.3f}" in out
    )
    assert f"files: {run / 'last.pt'}, {run / 'best.pt'}" in out
