"""The validation split (--val): which training frames are held out, the gaps beside them, and
that training chooses best.pt on validation only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_train import tiny_config

from geoposenet.checkpoint import load_checkpoint
from geoposenet.cli import main
from geoposenet.errors import InputError
from geoposenet.scene import Frame, Scene
from geoposenet.train import fit
from geoposenet.validation import hold_out, parse_val


def scene_of(lengths: dict[str, int], test: int = 3) -> Scene:
    """Training sequences of the given lengths (frame k of `seq` at x = k) and one test walk."""
    frames = [
        Frame(f"{seq}/frame{k:05d}.png", Path("x.png"), [k, 0, 0], [1, 0, 0, 0], seq, "train")
        for seq, count in lengths.items()
        for k in range(count)
    ]
    frames += [
        Frame(f"t/frame{k:05d}.png", Path("x.png"), [k, 1, 0], [1, 0, 0, 0], "t", "test")
        for k in range(test)
    ]
    return Scene(Path("scene"), "s", "test", frames)


def roles(scene: Scene, held: Scene, seq: str) -> str:
    """One letter per frame of `seq` in capture order: t(rain), v(al) or g(ap, left out)."""
    split = {f.name: f.split for f in held.frames}
    names = sorted(f.name for f in scene.frames if f.sequence == seq)
    return "".join({"train": "t", "val": "v"}.get(split.get(name, ""), "g") for name in names)


def test_parse_val() -> None:
    assert parse_val("auto") == "auto" and parse_val("none") == "none"
    assert parse_val("0.2") == 0.2
    assert parse_val("seq-03, seq-05") == ("seq-03", "seq-05")
    for bad in ("0", "0.7", "-0.1", " , "):
        with pytest.raises(InputError, match="--val"):
            parse_val(bad)


def test_auto_holds_out_whole_sequences_when_there_are_at_least_three() -> None:
    scene = scene_of({"seq1": 5, "seq2": 6, "seq3": 7, "seq4": 4})
    held, holdout = hold_out(scene, "auto")
    assert sorted(f.name for f in held.split("val")) == sorted(
        f.name for f in scene.frames if f.sequence == "seq4"
    )  # round(0.15 x 4) = 1 sequence, the last by name
    assert holdout.val == 4 and holdout.gap == 0
    assert len(held.split("train")) == 18
    assert [f.name for f in held.split("test")] == [f.name for f in scene.split("test")]


def test_auto_with_two_sequences_takes_the_middle_with_gaps() -> None:
    # 20 frames: ceil(0.15 x 20) = 3 validation frames from (20 - 3) // 2 = 8, gaps of
    # ceil(0.03 x 20) = 1 frame on each side (hand-computed).
    scene = scene_of({"a": 20, "b": 20})
    held, holdout = hold_out(scene, "auto")
    assert roles(scene, held, "a") == "ttttttt" + "g" + "vvv" + "g" + "tttttttt"
    assert roles(scene, held, "b") == roles(scene, held, "a")
    assert (holdout.val, holdout.gap) == (6, 4)
    assert len(held.frames) == len(scene.frames) - 4


def test_named_sequences_and_their_errors() -> None:
    scene = scene_of({"a": 5, "b": 5, "c": 5})
    held, _ = hold_out(scene, "a,c")
    assert {f.sequence for f in held.split("val")} == {"a", "c"}
    with pytest.raises(InputError, match="zz is not a training sequence"):
        hold_out(scene, "a,zz")
    with pytest.raises(InputError, match="every training sequence"):
        hold_out(scene, "a,b,c")
    held, holdout = hold_out(scene, "none")
    assert held is scene and holdout.val == 0


def test_sequences_too_short_for_a_stretch() -> None:
    scene = scene_of({"a": 5, "b": 6})
    held, holdout = hold_out(scene, "auto")  # auto falls back to no validation, and says so
    assert holdout.val == 0 and held is scene and "under" in holdout.description
    with pytest.raises(InputError, match="shorter than"):
        hold_out(scene, "0.3")


@settings(max_examples=40)
@given(
    st.lists(st.integers(1, 60), min_size=1, max_size=2),
    st.floats(0.01, 0.5),
)
def test_stretches_are_contiguous_and_never_touch_training_frames(
    lengths: list[int], fraction: float
) -> None:
    scene = scene_of({f"s{i}": n for i, n in enumerate(lengths)})
    if max(lengths) < 8:  # no sequence long enough: an explicit fraction is refused
        with pytest.raises(InputError, match="shorter than 8 frames"):
            hold_out(scene, repr(fraction))
        return
    held, holdout = hold_out(scene, repr(fraction))
    for i, n in enumerate(lengths):
        letters = roles(scene, held, f"s{i}")
        if n < 8:
            assert set(letters) == {"t"}
            continue
        val = [k for k, c in enumerate(letters) if c == "v"]
        train = [k for k, c in enumerate(letters) if c == "t"]
        assert val == list(range(val[0], val[-1] + 1))  # one contiguous stretch
        assert len(val) == int(np.ceil(fraction * n))
        gap = int(np.ceil(0.03 * n))
        assert all(abs(t - v) > gap for t in train for v in val)  # a gap on both sides
    assert len(held.split("val")) == holdout.val
    assert len(held.frames) + holdout.gap == len(scene.frames)
    assert [f.name for f in held.split("test")] == [f.name for f in scene.split("test")]


def test_best_checkpoint_is_chosen_on_validation(tiny_scene_dir: Path, tmp_path: Path) -> None:
    config = tiny_config(tiny_scene_dir, tmp_path / "run", epochs=4, eval_every=1, val="auto")
    run = fit(config, progress=False)
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    val = [r["val"]["median_position_error_m"] for r in records]
    test = [r["test"]["median_position_error_m"] for r in records]
    assert load_checkpoint(run / "best.pt")["best"] == min(val)
    assert load_checkpoint(run / "best.pt")["epoch"] == int(np.argmin(val)) + 1
    assert val != test  # two different splits were evaluated


def test_val_none_writes_no_best_and_cli_says_so(
    tiny_scene_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
             "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1",
             "--no-progress"]  # fmt: skip
    out = tmp_path / "run"
    assert main(["train", str(tiny_scene_dir), "--out", str(out), "--val", "none", *flags]) == 0
    printed = capsys.readouterr().out
    assert "validation split: none" in printed and "no best.pt" in printed
    assert (out / "last.pt").is_file() and not (out / "best.pt").exists()
    bad = main(["train", str(tiny_scene_dir), "--out", str(tmp_path / "b"), "--val", "0.9", *flags])
    assert bad == 2 and "--val" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
