"""Settings declared once: the flags, --help, validation, config files and README's table all come
from the declarations in geoposenet.config; devices and precision; the typed run state."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from geoposenet import choices
from geoposenet.checkpoint import load_checkpoint, save_checkpoint
from geoposenet.cli import build_parser, main
from geoposenet.config import SETTINGS, TrainConfig, resolve_config, shown_default
from geoposenet.configfile import config_toml, read_config_file
from geoposenet.devices import check_amp, pick_device
from geoposenet.errors import CheckpointError, InputError
from geoposenet.runconfig import train_config
from geoposenet.runstate import Progress, RunState
from geoposenet.settings import add_flags, default_text, flag_table, problems, setting, within

README = Path(__file__).resolve().parents[1] / "README.md"


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser, _ = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_flag_has_help_and_its_default_and_lists_its_choices() -> None:
    for name, parser in subparsers().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest}: no help"
            if action.option_strings and action.dest not in ("config", "resume"):
                if action.required:
                    continue
                assert "default" in action.help, f"{name} {action.option_strings}: no default"
    train = subparsers()["train"].format_help()
    for name in (*choices.BACKBONE_NAMES, *choices.LOSSES, *choices.SCHEDULES, "7scenes"):
        assert name in train
    for item in SETTINGS.values():
        assert (item.setting.metavar if item.setting.positional else item.flag) in train
    assert "height x width" in train


def test_help_does_not_import_torch_and_version() -> None:
    code = (
        "import sys\nfrom geoposenet.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--resume" in done.stdout
    version = subprocess.run(
        [sys.executable, "-m", "geoposenet", "--version"], capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.strip() == "geoposenet 0.1.0"


def test_readme_command_line_table_is_the_declarations() -> None:
    text = README.read_text()
    begin, end = "<!-- train flags: begin -->", "<!-- train flags: end -->"
    table = text[text.index(begin) + len(begin) : text.index(end)].strip()
    assert table == flag_table(TrainConfig, shown_default)


def test_a_new_setting_is_one_declaration() -> None:
    """What README's Contributing section promises: the declaration alone gives the flag, its
    help with the default, parsing, validation naming the flag, and config-file values."""

    @dataclass
    class Extended(TrainConfig):
        label_smoothing: float = setting(0.0, "label smoothing", check=within(0, 1))

    parser = argparse.ArgumentParser()
    add_flags(parser, Extended, default_text)
    assert "label smoothing (default: 0)" in " ".join(parser.format_help().split())
    assert parser.parse_args(["--label-smoothing", "0.25"]).label_smoothing == 0.25
    assert problems(Extended(label_smoothing=2.0), Extended) == [
        "--label-smoothing must be in [0, 1], got 2.0"
    ]


def test_crop_flag_is_height_by_width() -> None:
    assert resolve_config("cpu", crop=(96, 128)).crop == (96, 128)
    parser = subparsers()["train"]
    assert parser.parse_args(["--crop", "96x128"]).crop == (96, 128)
    assert parser.parse_args(["--crop", "64"]).crop == (64, 64)


def test_config_toml_round_trip(tmp_path: Path) -> None:
    config = resolve_config(
        "cpu", data="scene", out="run", crop=(48, 64), weighting_lr=2e-3, jitter=0.2,
        val="seq-01,seq-03", lr=1e-5, progress=False, init="a b/\"c\".pt",
    )  # fmt: skip
    path = tmp_path / "config.toml"
    path.write_text(config_toml(config))
    assert TrainConfig(**read_config_file(path)) == config
    assert train_config({}, path, None) == config  # `--config RUN/config.toml` as written


def test_flags_override_the_file_and_plain_keys_work(tmp_path: Path) -> None:
    path = tmp_path / "exp.toml"
    path.write_text('data = "d"\nout = "o"\npreset = "cpu"\nlr = 0.001\ncrop = "48x64"\n')
    config = train_config({"lr": 0.01}, path, None)
    assert (config.lr, config.crop, config.batch_size, config.preset) == (0.01, (48, 64), 32, "cpu")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
        (
            "[recipe]\nbatchsize = 4\n",
            "unknown key [recipe] 'batchsize' (did you mean batch_size?)",
        ),
        ("[options]\nepochs = 'many'\n", "epochs: expected a whole number, got 'many'"),
        ("lr = \n", "not valid TOML"),
        ("crop = [1, 2, 3]\n", "crop: expected N or HxW pixels"),
    ],
)
def test_bad_config_file_names_file_and_key(
    text: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "exp.toml"
    path.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "data", "--out", str(out), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_resume_of_a_folder_that_is_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"--resume {tmp_path}: not a training run" in capsys.readouterr().err


def test_backbone_and_format_names_match_their_registries() -> None:
    from geoposenet.models import BACKBONES
    from geoposenet.readers import FORMATS

    assert tuple(BACKBONES) == choices.BACKBONE_NAMES
    assert FORMATS == choices.FORMATS


@pytest.mark.parametrize(
    ("name", "cuda", "mps", "rank", "device"),
    [
        ("auto", True, True, None, "cuda"),
        ("auto", False, True, None, "mps"),
        ("auto", False, False, None, "cpu"),
        ("cpu", True, True, None, "cpu"),
        ("cuda:1", True, False, None, "cuda:1"),
        ("mps", False, True, None, "mps"),
        ("cuda", True, False, 3, "cuda:3"),
        ("auto", True, False, 1, "cuda:1"),
        ("cpu", True, False, 1, "cpu"),
    ],
)
def test_device_choice(name: str, cuda: bool, mps: bool, rank: int | None, device: str) -> None:
    assert pick_device(name, cuda, mps, rank) == device


@pytest.mark.parametrize(
    ("name", "cuda", "mps", "rank", "message"),
    [
        ("cuda", False, True, None, "CUDA is not available"),
        ("mps", True, False, None, "MPS backend is not available"),
        ("tpu", True, True, None, "expected auto, cpu, cuda[:N] or mps"),
        ("cuda:0", True, False, 1, "every process uses cuda:LOCAL_RANK"),
    ],
)
def test_device_refusals(name: str, cuda: bool, mps: bool, rank: int | None, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        pick_device(name, cuda, mps, rank)


def test_amp_where_the_device_has_it() -> None:
    """fp16 on CUDA only; bf16 on CUDA and on CPUs with bf16 instructions (tests/test_amp.py)."""
    check_amp("none", "cpu")
    check_amp("bf16", "cuda")
    check_amp("fp16", "cuda")
    for amp, device, message in (
        ("fp16", "cpu", "--amp fp16: float16 mixed precision needs a CUDA device"),
        ("fp16", "mps", "--amp fp16: float16 mixed precision needs a CUDA device"),
        ("bf16", "mps", "--amp bf16: mixed precision runs on CUDA or a CPU with bf16"),
    ):
        with pytest.raises(InputError, match=message):
            check_amp(amp, device)


def run_state() -> RunState:
    return RunState(
        model_config={"backbone": "resnet18"},
        model={"head.weight": torch.ones(7, 3)},
        config=TrainConfig().to_dict(),
        loss_name="learned",
        loss={"s_x": torch.tensor(0.5), "s_q": torch.tensor(-3.0)},
        optimizer={"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]},
        progress=Progress(2, 3, 13, 0.75, {"test": {"num_frames": 1}}, {"loss": 1.5}),
    )


def test_run_state_round_trip_and_old_format(tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    save_checkpoint(path, run_state().to_checkpoint())
    back = RunState.from_checkpoint(load_checkpoint(path), path)
    assert back.progress == run_state().progress and back.config == run_state().config
    assert torch.equal(back.loss["s_x"], torch.tensor(0.5)) and back.written_by == "0.1.0"
    old = {k: v for k, v in load_checkpoint(path).items() if k != "written_by"}
    torch.save({**old, "version": 1}, path)  # the layout of format 1
    state = RunState.from_checkpoint(load_checkpoint(path), path)
    assert state.progress == run_state().progress and state.written_by == "0.1.0 (format 1)"
    torch.save({**old, "version": 3, "written_by": "9.0"}, path)
    with pytest.raises(CheckpointError, match=r"format version 3, written by geoposenet 9\.0"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epoch", -1),
        ("batch", 1.5),
        ("step", None),
        ("best", float("nan")),
        ("sums", {"loss": "x"}),
        ("model", {"w": [1.0]}),
        ("loss", None),
        ("optimizer", {"param_groups": []}),
        ("train_config", "lr=1"),
        ("loss_name", "huber"),
        ("metrics", []),
    ],
)
def test_run_state_names_the_bad_field(key: str, value: object, tmp_path: Path) -> None:
    content = {**run_state().to_checkpoint(), key: value}
    with pytest.raises(CheckpointError, match=f"{key}"):
        RunState.from_checkpoint(content, tmp_path / "x.pt")
