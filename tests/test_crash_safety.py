"""Training survives crashes: kill -9 at random moments, SIGINT, SIGTERM, a crash in the
end-of-epoch bookkeeping and a diverging loss. `--resume` always ends bitwise where an
uninterrupted run ends, and no checkpoint is ever half-written.

The trainers run as real processes (`python -m geoposenet train`, one torch thread), like a user's;
the reference run is trained in this process with the same flags (bitwise the same on CPU)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from geoposenet import train
from geoposenet.checkpoint import load_checkpoint
from geoposenet.cli import main

FLAGS = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "4",
    "--lr", "1e-3", "--no-progress", "--eval-every", "2",
]  # fmt: skip
# --eval-every 2: the first evaluation (so the first best.pt, chosen on validation) is at epoch 2
RUN_FILES = {"config.toml", "log.jsonl", "last.pt", "best.pt", "tensorboard"}  # tensorboard/:
# only when the optional tensorboard package is installed
TIMEOUT = 120


def command(data: Path, run: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "geoposenet", "train", str(data), "--out", str(run), *FLAGS,
            *extra]  # fmt: skip


def start(args: list[str]) -> subprocess.Popen[str]:
    """A trainer process with one torch thread and this session's cache folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition: Any, process: subprocess.Popen[str]) -> None:
    """Poll `condition()` every 10 ms until it holds (fail if the process ends first)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if process.poll() is not None:
            _, err = process.communicate()
            pytest.fail(f"trainer ended (exit {process.returncode}) too early: {err}")
        assert time.monotonic() < deadline, "trainer did not start training"
        time.sleep(0.01)


def inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def log(run: Path) -> list[dict[str, Any]]:
    """log.jsonl without the timing fields (which differ from run to run)."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time_s", "images_per_s")} for r in records]


def assert_same_run(reference: Path, run: Path) -> None:
    """Bitwise equal model and loss weights in last.pt and best.pt, and equal log metrics."""
    for name in ("last.pt", "best.pt"):
        first, second = load_checkpoint(reference / name), load_checkpoint(run / name)
        assert (first["epoch"], first["step"]) == (second["epoch"], second["step"])
        for key in ("model", "loss"):
            assert first[key].keys() == second[key].keys()
            for tensor_name, tensor in first[key].items():
                assert torch.equal(tensor, second[key][tensor_name]), f"{name} {tensor_name}"
    assert log(reference) == log(run)
    assert len(log(run)) == 4


def assert_consistent(run: Path) -> None:
    """What a killed trainer leaves: every checkpoint loads, the log parses, and the only other
    files are atomic_write's hidden temporaries (never named like a checkpoint)."""
    for name in ("last.pt", "best.pt"):
        if (run / name).exists():
            load_checkpoint(run / name)
    if (run / "log.jsonl").exists():
        log(run)
    for path in run.iterdir():
        if path.name not in RUN_FILES:
            assert path.name.startswith(".") and path.name.endswith(".tmp"), path


@pytest.fixture(scope="module")
def reference(tiny_scene_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run (in this process, one torch thread as set in conftest)."""
    run = tmp_path_factory.mktemp("crash") / "reference"
    assert main(["train", str(tiny_scene_dir), "--out", str(run), *FLAGS]) == 0
    return run


def test_kill_9_at_random_moments_then_resume_equals_uninterrupted(
    reference: Path, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    # The same command (with --resume, a fresh start while there is no last.pt) is started and
    # killed three times, each time at a seeded random moment after it began training (it
    # rewrites config.toml just before its first step), then run to the end.
    rng = random.Random(9)
    run = tmp_path / "run"
    killed = 0
    for _ in range(3):
        before = inode(run / "config.toml")
        process = start(command(tiny_scene_dir, run, "--resume"))
        wait_for(lambda old=before: inode(run / "config.toml") not in (None, old), process)
        time.sleep(rng.uniform(0.05, 0.6))
        process.kill()
        process.communicate(timeout=TIMEOUT)
        killed += process.returncode == -signal.SIGKILL
        assert_consistent(run)
    assert killed >= 2  # the kills hit running trainers (not ones that had already finished)
    done = subprocess.run(
        command(tiny_scene_dir, run, "--resume"),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    assert_same_run(reference, run)
    # temporaries swept: the same files as the uninterrupted run
    assert sorted(p.name for p in run.iterdir()) == sorted(p.name for p in reference.iterdir())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigint_sigterm_checkpoint_and_say_how_to_resume(
    signum: int, reference: Path, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    process = start(command(tiny_scene_dir, run))
    wait_for(lambda: (run / "log.jsonl").exists(), process)  # in the 2nd of 4 epochs
    process.send_signal(signum)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err
    assert re.search(rf"training stopped by signal {signum} at epoch \d, batch \d", err), err
    assert f"--out {run} --resume" in err and str(run / "last.pt") in err
    state = load_checkpoint(run / "last.pt")
    assert (1, 0) < (state["epoch"], state["batch"]) < (4, 0)
    assert_consistent(run)
    if signum == signal.SIGTERM:  # one signal suffices to show the resumed run is exact
        resumed = subprocess.run(
            command(tiny_scene_dir, run, "--resume"),
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert resumed.returncode == 0, resumed.stderr
        assert_same_run(reference, run)


class Crash(BaseException):
    """Stands for the process dying (nothing catches it)."""


@pytest.mark.parametrize("crash_after", ["best.pt", "last.pt"])
def test_crash_in_end_of_epoch_bookkeeping_loses_no_log_record(
    crash_after: str,
    reference: Path,
    tiny_scene_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The process dies right after writing a checkpoint at the end of epoch 2, before anything
    # else: the resumed run must not lose or repeat a log line.
    save = train.save_checkpoint

    def save_then_crash(path: Path, content: dict[str, Any]) -> None:
        save(path, content)
        if path.name == crash_after and content["epoch"] == 2:
            raise Crash

    run = tmp_path / "run"
    monkeypatch.setattr(train, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        main(["train", str(tiny_scene_dir), "--out", str(run), *FLAGS])
    monkeypatch.undo()
    stale = run / f".{crash_after}.k1ll3d.tmp"  # as a kill -9 in the middle of a write leaves
    stale.write_bytes(b"half a checkpoint")
    assert main(["train", str(tiny_scene_dir), "--out", str(run), *FLAGS, "--resume"]) == 0
    assert_same_run(reference, run)
    assert not stale.exists()


@pytest.mark.parametrize(("lr", "first_epoch"), [("1e30", True), ("1e6", False)])
def test_diverging_run_names_step_parts_and_cause_and_keeps_last_good_epoch(
    lr: str,
    first_epoch: bool,
    tiny_scene_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A learning rate far too high makes the loss non-finite within a few steps (1e30: at the
    # second step; 1e6: in a later epoch), through the command line as a user meets it.
    run = tmp_path / "run"
    flags = [*FLAGS[: FLAGS.index("--lr")], "--lr", lr, "--no-progress"]
    assert main(["train", str(tiny_scene_dir), "--out", str(run), *flags]) == 1
    err = capsys.readouterr().err
    found = re.search(r"non-finite at epoch (\d+), batch \d+ \(step \d+\): loss=(nan|inf)", err)
    assert found, err
    assert "position=" in err and "orientation=" in err and "s_x=" in err  # the loss parts
    assert "smaller --lr" in err and f"geoposenet check {tiny_scene_dir}" in err
    assert "Traceback" not in err
    epoch = int(found.group(1))
    assert (epoch == 1) == first_epoch
    if first_epoch:
        assert not (run / "last.pt").exists() and "no checkpoint" in err
    else:
        assert load_checkpoint(run / "last.pt")["epoch"] == epoch - 1
        assert f"{run / 'last.pt'} keeps the last good epoch" in err


EXP_TOML = """# the settings of FLAGS, as a user writes them
[recipe]
preset = "cpu"
backbone = "mobilenet_v3_small"
pretrained = "none"
resize = 48
crop = "48x64"
batch_size = 4
lr = 1e-3

[options]
epochs = 4
eval_every = 2
progress = false
"""


def test_config_file_ctrl_c_then_resume_by_folder_equals_uninterrupted(
    reference: Path, tiny_scene_dir: Path, tmp_path: Path
) -> None:
    """`train DATA --out RUN --config exp.toml`, Ctrl-C, then `train --resume RUN` and nothing
    else: the run continues with its own settings, bitwise as the uninterrupted run ends."""
    exp = tmp_path / "exp.toml"
    exp.write_text(EXP_TOML)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "geoposenet", "train", str(tiny_scene_dir), "--out", str(run)]
    process = start([*args, "--config", str(exp)])
    wait_for(lambda: (run / "log.jsonl").exists(), process)  # in the 2nd of 4 epochs
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGINT, err
    assert f"Continue with: geoposenet train --resume {run} " in err
    state = load_checkpoint(run / "last.pt")
    assert (1, 0) < (state["epoch"], state["batch"]) < (4, 0)
    resumed = subprocess.run(
        [sys.executable, "-m", "geoposenet", "train", "--resume", str(run)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_same_run(reference, run)


def test_resume_by_folder_options_win_and_recipe_changes_are_refused(
    reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil
    import tomllib

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = (run / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--lr", "0.01", "--crop", "48x48"]) == 2
    err = capsys.readouterr().err
    assert "lr: 0.001 -> 0.01" in err and "crop: 48x64 -> 48x48" in err
    assert (run / "last.pt").read_bytes() == before  # nothing written
    assert main(["train", "--resume", str(run), "--epochs", "5", "--eval-every", "5"]) == 0
    assert [r["epoch"] for r in log(run)] == [0, 1, 2, 3, 4] and "test" in log(run)[4]
    options = tomllib.loads((run / "config.toml").read_text())["options"]
    assert (options["epochs"], options["eval_every"]) == (5, 5)
    assert load_checkpoint(run / "last.pt")["epoch"] == 5
    trained = (run / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--eval-every", "3"]) == 2
    err = capsys.readouterr().err
    assert f"--resume {run}: the run has trained 5 epochs, more than --epochs 3" in err
    assert (run / "last.pt").read_bytes() == trained  # nothing written
