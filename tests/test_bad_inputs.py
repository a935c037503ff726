"""The bad-input corpus, through the command line as a user meets it: every bad dataset (in each of
the four formats), flag and checkpoint gives exit 2 and a message naming the file (and line) or
flag, with no traceback and no partial output.

Each bad dataset is a small valid one (tests/builders.py) with one thing corrupted. `check` must
list the problem; `train` (and `eval` for a subset) must stop before writing anything into --out.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import builders
import numpy as np
import pytest
import torch
from PIL import Image

from geoposenet.checkpoint import load_checkpoint, save_checkpoint
from geoposenet.cli import main
from geoposenet.models import ModelConfig, PoseNet

TRAIN_FLAGS = [
    "--preset", "cpu", "--backbone", "mobilenet_v3_small", "--pretrained", "none",
    "--resize", "48", "--crop", "48x64", "--batch-size", "4", "--epochs", "1", "--no-progress",
]  # fmt: skip
Corrupt = Callable[[Path], None]


@dataclass(frozen=True)
class Bad:
    """A bad dataset: `fmt` builder, one corruption, and what the message must name."""

    name: str
    fmt: str  # cambridge | 7scenes | colmap | colmap-bin | nerfstudio
    corrupt: Corrupt
    where: str  # the file (path inside the dataset) and ":line:" when there is one
    also_eval: bool = False  # also run `eval --out` on it


def write(relative: str, content: str | bytes) -> Corrupt:
    def corrupt(root: Path) -> None:
        path = root / relative
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)

    return corrupt


def line(relative: str, number: int, text: str | bytes) -> Corrupt:
    """Replace line `number` (1-based) of a file."""

    def corrupt(root: Path) -> None:
        path = root / relative
        lines = path.read_bytes().splitlines(keepends=True)
        new = text if isinstance(text, bytes) else text.encode()
        lines[number - 1] = new + b"\n"
        path.write_bytes(b"".join(lines))

    return corrupt


def cut(relative: str, keep: float) -> Corrupt:
    """Truncate a file to the fraction `keep` of its bytes."""

    def corrupt(root: Path) -> None:
        path = root / relative
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])

    return corrupt


def remove(relative: str) -> Corrupt:
    return lambda root: (root / relative).unlink()


def replace(relative: str, old: str, new: str) -> Corrupt:
    def corrupt(root: Path) -> None:
        path = root / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return corrupt


def copy(source: str, target: str) -> Corrupt:
    """Copy a file or folder of the dataset to a new place in it."""

    def corrupt(root: Path) -> None:
        if (root / source).is_dir():
            shutil.copytree(root / source, root / target)
        else:
            shutil.copy(root / source, root / target)

    return corrupt


def both(first: Corrupt, second: Corrupt) -> Corrupt:
    def corrupt(root: Path) -> None:
        first(root)
        second(root)

    return corrupt


def depth_png(relative: str, width: int, height: int) -> Corrupt:
    def corrupt(root: Path) -> None:
        depth = np.full((height, width), 1000, dtype=np.uint16)
        Image.fromarray(depth).save(root / relative)

    return corrupt


def edit(change: Callable[[dict], object]) -> Corrupt:
    """Change the parsed transforms.json of a nerfstudio capture in place and write it back."""

    def corrupt(root: Path) -> None:
        content = json.loads((root / NS).read_text())
        change(content)
        (root / NS).write_text(json.dumps(content))

    return corrupt


LABELS = "dataset_train.txt"
NS = "transforms.json"
NVM = "reconstruction.nvm"
POSE = "seq-02/frame-000001.pose.txt"
PNG_GARBAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
CAMERA_2 = builders.NVM_CAMERAS[1]
CORPUS = [
    # Cambridge Landmarks label files (line 4 is the first frame, line 5 the second)
    Bad("truncated line", "cambridge", line(LABELS, 5, "seq1/frame00002.png 4 5 6 0 1"),
        f"{LABELS}:5:", also_eval=True),
    Bad("file cut mid-line", "cambridge", cut(LABELS, 0.9), f"{LABELS}:5:"),
    Bad("garbage line", "cambridge", line(LABELS, 5, "hello world"), f"{LABELS}:5:"),
    Bad("control bytes", "cambridge", line(LABELS, 4, "\x00\x01\x02\x7f"), f"{LABELS}:4:"),
    Bad("NaN position", "cambridge", line(LABELS, 5, "seq1/frame00002.png nan 5 6 0 1 0 0"),
        f"{LABELS}:5:", also_eval=True),
    Bad("inf quaternion", "cambridge", line(LABELS, 5, "seq1/frame00002.png 4 5 6 0 inf 0 0"),
        f"{LABELS}:5:"),
    Bad("zero quaternion", "cambridge", line(LABELS, 4, "seq1/frame00001.png 1 2 3 0 0 0 0"),
        f"{LABELS}:4:"),
    Bad("wrong header", "cambridge", line(LABELS, 1, "Some Other Dataset v2"), f"{LABELS}:1:"),
    Bad("empty label file", "cambridge", write("dataset_test.txt", ""), "dataset_test.txt: "),
    Bad("missing label file", "cambridge", remove("dataset_test.txt"), "dataset_test.txt: "),
    Bad("duplicate frame", "cambridge", line("dataset_test.txt", 4, builders.TRAIN[1]),
        "dataset_test.txt:4:"),
    Bad("missing image", "cambridge", remove("seq1/frame00002.png"), f"{LABELS}:5:",
        also_eval=True),
    Bad("corrupt image", "cambridge", write("seq2/frame00001.png", PNG_GARBAGE),
        "seq2/frame00001.png", also_eval=True),
    Bad("truncated image", "cambridge", cut("seq1/frame00001.png", 0.5), "seq1/frame00001.png"),
    Bad("non-UTF-8 bytes", "cambridge", line(LABELS, 5, b"seq1/\xe9t\xe9.png 4 5 6 0 1 0 0"),
        f"{LABELS}:5:"),
    Bad("absolute path", "cambridge", line(LABELS, 5, "/etc/passwd 4 5 6 0 1 0 0"),
        f"{LABELS}:5:"),
    Bad("path leaving the dataset", "cambridge",
        line(LABELS, 5, "seq1/../../secret.png 4 5 6 0 1 0 0"), f"{LABELS}:5:"),
    # NVM reconstruction beside the Cambridge labels (lines 4-6 cameras, 8-9 points)
    Bad("NVM wrong header", "cambridge", line(NVM, 1, "NVM_V2"), f"{NVM}:1:"),
    Bad("NVM camera index out of range", "cambridge",
        line(NVM, 8, "0 0 5 255 0 0 2 0 0 1 2 7 0 3 4"), f"{NVM}:8:"),
    Bad("NVM negative camera index", "cambridge",
        line(NVM, 9, "1 1 6 0 255 0 1 -1 1 5 6"), f"{NVM}:9:"),
    Bad("NVM NaN point", "cambridge", line(NVM, 8, "0 nan 5 255 0 0 1 0 0 1 2"), f"{NVM}:8:"),
    Bad("NVM zero quaternion", "cambridge", line(NVM, 5, CAMERA_2.replace("0 1 0 0", "0 0 0 0")),
        f"{NVM}:5:"),
    Bad("NVM garbage count", "cambridge", line(NVM, 3, "two"), f"{NVM}:3:"),
    Bad("NVM truncated", "cambridge", cut(NVM, 0.3), f"{NVM}:"),
    Bad("label line lost (its NVM camera names no frame)", "cambridge", line(LABELS, 5, ""),
        f"{NVM}:5: camera seq1/frame00002.jpg names no frame"),
    Bad("labelled frame without NVM camera", "cambridge",
        write(NVM, builders.nvm(builders.NVM_CAMERAS[:2])),
        f"{NVM}: no camera for the frame seq2/frame00001.png (dataset_test.txt:4)"),
    # 7-Scenes (a copy of the real stairs excerpt; TestSplit.txt lists sequence1, sequence4)
    Bad("depth PNG of the wrong size", "7scenes",
        depth_png("seq-02/frame-000002.depth.png", 320, 240), "frame-000002.depth.png",
        also_eval=True),
    Bad("corrupt depth PNG", "7scenes", write("seq-01/frame-000000.depth.png", PNG_GARBAGE),
        "seq-01/frame-000000.depth.png"),
    Bad("pose with NaN", "7scenes", line(POSE, 2, "1 nan 0 0"), f"{POSE}:2:"),
    Bad("pose truncated", "7scenes", cut(POSE, 0.6), "frame-000001.pose.txt:"),
    Bad("pose empty", "7scenes", write(POSE, ""), "frame-000001.pose.txt"),
    Bad("pose not a rotation", "7scenes", write(POSE, "2 0 0 0\n0 2 0 0\n0 0 2 0\n0 0 0 1\n"),
        f"{POSE}:1:"),
    Bad("pose non-UTF-8", "7scenes", write(POSE, b"\xff\xfe1 0 0 0\n"), "frame-000001.pose.txt"),
    Bad("split garbage", "7scenes", write("TestSplit.txt", "sequence1\nsequenceX\n"),
        "TestSplit.txt:2:"),
    Bad("split lists a sequence twice", "7scenes", write("TestSplit.txt", "sequence1\nsequence2\n"),
        "TestSplit.txt:2:"),
    Bad("split names a missing sequence", "7scenes",
        write("TestSplit.txt", "sequence1\nsequence9\n"), "TestSplit.txt:2:"),
    Bad("missing colour image", "7scenes", remove("seq-03/frame-000000.color.jpg"),
        "seq-03/frame-000000"),
    Bad("corrupt colour image", "7scenes", write("seq-05/frame-000001.color.jpg", b"\xff\xd8junk"),
        "seq-05/frame-000001.color.jpg"),
    Bad("missing pose file", "7scenes", remove("seq-01/frame-000000.pose.txt"),
        "seq-01/frame-000000.pose.txt: pose file not found"),
    Bad("stray depth map", "7scenes",
        copy("seq-04/frame-000000.depth.png", "seq-04/frame-000003.depth.png"),
        "seq-04/frame-000003.pose.txt: pose file not found"),
    Bad("missing depth map", "7scenes", remove("seq-02/frame-000001.depth.png"),
        "seq-02/frame-000001.depth.png: depth map not found"),
    Bad("sequence folder in neither split", "7scenes", copy("seq-05", "seq-07"),
        "seq-07: sequence folder listed in neither"),
    # COLMAP (3 registered images im0..2.png, text model in sparse/ unless colmap-bin)
    Bad("model without images", "colmap", write("sparse/images.txt", "# no images\n"),
        "images.txt"),
    Bad("image path leaving the dataset", "colmap",
        replace("sparse/images.txt", "im1.png", "../im1.png"), "images.txt"),
    Bad("absolute image path", "colmap",
        replace("sparse/images.txt", "im1.png", "/etc/im1.png"), "images.txt"),
    Bad("missing image", "colmap", remove("images/im1.png"), "im1.png", also_eval=True),
    Bad("split names an unknown image", "colmap", write("test.txt", "im0.png\nim7.png\n"),
        "test.txt:2:"),
    Bad("split lists leave an image out", "colmap",
        both(write("train.txt", "im1.png\n"), write("test.txt", "im0.png\n")),
        "train.txt: registered image 'im2.png' is in neither"),
    Bad("image name registered twice", "colmap",
        replace("sparse/images.txt", "im1.png", "im0.png"),
        "images.txt: image name 'im0.png' registered twice"),
    Bad("no points3D", "colmap", remove("sparse/points3D.txt"), "points3D"),
    Bad("truncated images.bin", "colmap-bin", cut("sparse/images.bin", 0.7), "images.bin"),
    Bad("unknown camera model", "colmap-bin", lambda root: _camera_model(root, 99),
        "cameras.bin"),
    # nerfstudio (builders.nerfstudio: frames[0..2] = images/im0..2.png, train im0, im1, test im2)
    Bad("transform_matrix not 4x4", "nerfstudio",
        edit(lambda c: c["frames"][1].update(transform_matrix=[[1, 0, 0], [0, 1, 0]])),
        f"{NS}: frames[1].transform_matrix: not a 4x4 matrix", also_eval=True),
    Bad("NaN in transform_matrix", "nerfstudio",
        edit(lambda c: c["frames"][1]["transform_matrix"][0].__setitem__(3, float("nan"))),
        f"{NS}: frames[1].transform_matrix: a value that is not a finite number"),
    Bad("non-rigid rotation", "nerfstudio",
        edit(lambda c: c["frames"][0]["transform_matrix"][0].__setitem__(0, 2.0)),
        f"{NS}: frames[0].transform_matrix: the 3x3 part is not a rotation"),
    Bad("last row not 0 0 0 1", "nerfstudio",
        edit(lambda c: c["frames"][2]["transform_matrix"].__setitem__(3, [0, 0, 1, 1])),
        f"{NS}: frames[2].transform_matrix: the last row must be [0, 0, 0, 1]"),
    Bad("transform_matrix missing", "nerfstudio",
        edit(lambda c: c["frames"][0].pop("transform_matrix")),
        f"{NS}: frames[0].transform_matrix: missing"),
    Bad("file_path not a string", "nerfstudio", edit(lambda c: c["frames"][0].clear()),
        f"{NS}: frames[0].file_path: expected a string, found None"),
    Bad("missing image", "nerfstudio", remove("images/im1.png"), "images/im1.png not found",
        also_eval=True),
    Bad("corrupt image", "nerfstudio", write("images/im0.png", PNG_GARBAGE), "images/im0.png"),
    Bad("JSON cut short", "nerfstudio", cut(NS, 0.5), f"{NS}:"),
    Bad("not a JSON object", "nerfstudio", write(NS, "[1, 2]"), f"{NS}: expected a JSON object"),
    Bad("no frames", "nerfstudio", edit(lambda c: c.update(frames=[])),
        f"{NS}: frames: expected a non-empty list"),
    Bad("no focal length", "nerfstudio", edit(lambda c: c.pop("fl_x")),
        f"{NS}: frames[0]: no fl_x (neither in the frame nor at the top level)"),
    Bad("negative image width", "nerfstudio", edit(lambda c: c.update(w=-64)),
        f"{NS}: w: expected a positive finite number"),
    Bad("file_path leaving the dataset", "nerfstudio",
        edit(lambda c: c["frames"][1].update(file_path="../im1.png")),
        f"{NS}: frames[1].file_path: image path '../im1.png' leaves the dataset folder"),
    Bad("file_path twice", "nerfstudio",
        edit(lambda c: c["frames"][1].update(file_path="images/im0.png")),
        f"{NS}: frames[1].file_path: 'images/im0.png' again (first at frames[0])"),
    Bad("split names an unknown image", "nerfstudio",
        edit(lambda c: c.update(test_filenames=["images/im9.png"])),
        f"{NS}: test_filenames[0]: 'images/im9.png' is not the file_path of a frame"),
    Bad("frame in no split list", "nerfstudio",
        edit(lambda c: c.update(train_filenames=["images/im0.png"])),
        f"{NS}: frame 'images/im1.png' is in none of train_filenames, test_filenames"),
    Bad("image not a downscaled copy", "nerfstudio",
        lambda root: Image.new("RGB", (64, 64)).save(root / "images" / "im2.png"),
        f"{NS}: frames[2]: image"),
    Bad("applied_transform not a matrix", "nerfstudio",
        edit(lambda c: c.update(applied_transform=[[1, 0], [0, 1]])),
        f"{NS}: applied_transform: not a 3x4 or 4x4 matrix"),
    Bad("PLY missing", "nerfstudio", remove("points.ply"),
        "points.ply: point cloud file not found"),
    Bad("PLY cut short", "nerfstudio",
        write("points.ply", builders.ply_ascii(builders.NERFSTUDIO_POINTS).rsplit("\n", 2)[0]),
        "points.ply: expected 3 vertex lines, found 2"),
]  # fmt: skip


def _camera_model(root: Path, model_id: int) -> None:
    path = root / "sparse" / "cameras.bin"
    data = path.read_bytes()
    path.write_bytes(data[:12] + model_id.to_bytes(4, "little") + data[16:])


def build(fmt: str, root: Path) -> Path:
    """A valid dataset of format `fmt` in `root` (images fit the training crop)."""
    if fmt == "cambridge":
        return builders.cambridge(root, size=(64, 48), nvm=builders.NVM)
    if fmt == "7scenes":
        return builders.stairs(root)
    if fmt == "nerfstudio":
        return builders.nerfstudio(root)
    return builders.colmap(root, binary=fmt == "colmap-bin")


def with_defaults(args: list[str]) -> list[str]:
    """The TRAIN_FLAGS that `args` does not set itself."""
    extra: list[str] = []
    for i, flag in enumerate(TRAIN_FLAGS):
        takes_value = i + 1 < len(TRAIN_FLAGS) and not TRAIN_FLAGS[i + 1].startswith("--")
        if flag.startswith("--") and flag not in args:
            extra += [flag, TRAIN_FLAGS[i + 1]] if takes_value else [flag]
    return extra


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def assert_clean_error(code: int, err: str, where: str, one_line: bool = True) -> None:
    """Exit 2 and a message naming `where`, no traceback; one line unless it is a list."""
    assert code == 2, err
    assert where in err, err
    assert "Traceback" not in err and 'File "' not in err, err
    assert ".cpp:" not in err, err  # no C++ source locations from the image decoders
    if one_line:
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained but valid mobilenet_v3_small checkpoint at the corpus' input size."""
    config = ModelConfig(backbone="mobilenet_v3_small", pretrained="none", resize=48, crop=(48, 64))
    path = tmp_path_factory.mktemp("bad-inputs") / "model.pt"
    save_checkpoint(path, {"model_config": config.to_dict(), "model": PoseNet(config).state_dict()})
    return path


def test_corpus_size_and_clean_builders_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(CORPUS) + len(FLAGS) + len(CHECKPOINTS) * len(CHECKPOINT_USERS) >= 30
    assert len(CORPUS) >= 52  # with one entry per silently skipped case of issue 14.3
    assert len({bad.name + bad.fmt for bad in CORPUS}) == len(CORPUS)
    for fmt in ("cambridge", "7scenes", "colmap", "colmap-bin", "nerfstudio"):
        root = build(fmt, tmp_path / fmt)
        code, err = run_cli(["check", str(root)], capsys)
        assert code == 0, err
    # The training flags of the corpus are fine: on clean data, training runs.
    out = tmp_path / "run"
    args = ["train", str(tmp_path / "cambridge"), "--out", str(out), *TRAIN_FLAGS]
    assert run_cli(args, capsys)[0] == 0 and (out / "last.pt").is_file()


@pytest.mark.parametrize("bad", CORPUS, ids=lambda bad: f"{bad.fmt}: {bad.name}")
def test_bad_dataset(
    bad: Bad, tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = build(bad.fmt, tmp_path / "data")
    bad.corrupt(root)
    # check lists the problem (among possibly others)
    code, err = run_cli(["check", str(root)], capsys)
    assert_clean_error(code, err, bad.where, one_line=False)
    assert "problem(s) found" in err
    # train stops before writing anything
    out = tmp_path / "run"
    code, err = run_cli(["train", str(root), "--out", str(out), *TRAIN_FLAGS], capsys)
    assert_clean_error(code, err, bad.where)
    assert not out.exists()
    if bad.also_eval:
        out = tmp_path / "evaluation"
        code, err = run_cli(["eval", str(checkpoint), str(root), "--out", str(out)], capsys)
        assert_clean_error(code, err, bad.where)
        assert not out.exists() and not (checkpoint.parent / "eval-test").exists()


def flag_id(value: object) -> str | None:
    return " ".join(str(v) for v in value[2:]) if isinstance(value, list) else None


FLAGS = [
    (["train", "{data}", "--out", "{out}", "--batch-size", "0"], "--batch-size"),
    (["train", "{data}", "--out", "{out}", "--dropout", "1.0"], "--dropout"),
    (["train", "{data}", "--out", "{out}", "--jitter", "1.5"], "--jitter"),
    (["train", "{data}", "--out", "{out}", "--resize", "8"], "--resize"),
    (["train", "{data}", "--out", "{out}", "--workers", "-1"], "--workers"),
    (["train", "{data}", "--out", "{out}", "--eval-every", "0"], "--eval-every"),
    (["train", "{data}", "--out", "{out}", "--lr", "nan"], "--lr"),
    (["train", "{data}", "--out", "{out}", "--lr", "inf"], "--lr"),
    (["train", "{data}", "--out", "{out}", "--weighting-lr", "-1"], "--weighting-lr"),
    (["train", "{data}", "--out", "{out}", "--loss", "beta", "--beta", "-1"], "--beta"),
    (["train", "{data}", "--out", "{out}", "--loss", "beta", "--beta", "inf"], "--beta"),
    (["train", "{data}", "--out", "{out}", "--weight-decay", "inf"], "--weight-decay"),
    (["train", "{data}", "--out", "{out}", "--warmup-epochs", "3", "--epochs", "2"],
     "--warmup-epochs"),
    (["train", "{data}", "--out", "{out}", "--format", "kitti"], "--format"),
    (["train", "{data}", "--out", "{out}", "--format", "7scenes"], "{data}"),
    (["train", "{data}", "--out", "{out}", "--preset", "gpu"], "--preset"),
    (["train", "{data}", "--out", "{out}", "--device", "cuda:0"], "--device"),
    (["train", "{data}", "--out", "{out}", "--pretrained", "{tmp}/missing.pth"], "missing.pth"),
    (["train", "{data}", "--out", "{out}", "--crop", "48x640"], "crop 48x640"),
    (["train", "{data}", "--out", "{out}", "--loss", "reprojection", "--points-per-frame", "-1"],
     "--points-per-frame"),
    (["train", "{data}", "--out", "{out}", "--amp", "fp16", "--device", "cpu"], "--amp fp16"),
    (["train", "{data}", "--out", "{out}", "--device", "tpu"], "--device"),
    (["train", "{data}", "--out", "{out}", "--config", "{tmp}/missing.toml"], "missing.toml"),
    (["train", "--resume", "{tmp}"], "--resume {tmp}: not a training run"),
    (["train", "--resume", "{tmp}", "--out", "{out}"], "continues that run; drop --out {out}"),
    (["eval", "{ckpt}", "{data}", "--device", "cuda", "--out", "{out}"], "--device cuda"),
    (["predict", "{ckpt}", "{tmp}/garbage.png", "--device", "mps"], "--device mps"),
    (["export", "{ckpt}", "{out}/model.onnx", "--device", "gpu"], "--device"),
    (["eval", "{ckpt}", "{data}", "--split", "val"], "--split"),
    (["eval", "{ckpt}", "{data}", "--batch-size", "0", "--out", "{out}"], "--batch-size"),
    (["predict", "{ckpt}", "{tmp}/missing.png"], "missing.png"),
    (["predict", "{ckpt}", "{tmp}/garbage.png"], "garbage.png"),
    (["synth", "{out}", "--format", "nvm"], "--format"),
    (["check", "{data}", "--format", "colmap"], "{data}"),
    (["train", "{data}", "--out", "{out}", "--scale", "0"], "--scale"),
    (["train", "{data}", "--out", "{out}", "--test-every", "0"], "--test-every"),
    (["train", "{data}", "--out", "{out}", "--test-every", "2", "--test-list", "{tmp}/t.txt"],
     "--test-list and --test-every both"),
    (["train", "{data}", "--out", "{out}", "--scale", "2", "--scale-from", "{tmp}/s.txt"],
     "--scale and --scale-from both"),
    (["train", "{data}", "--out", "{out}", "--images", "photos"],
     "unknown option(s) for the cambridge format: --images"),
    (["train", "{data}", "--out", "{out}", "--scale", "2"],
     "--scale: the cambridge format is in metres already"),
    (["check", "{data}", "--scale-from", "{tmp}/s.txt"],
     "--scale-from: the cambridge format is in metres already"),
    (["eval", "{ckpt}", "{data}", "--test-list", "{tmp}/t.txt", "--out", "{out}"],
     "--test-list"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "where"), FLAGS, ids=flag_id)
def test_bad_flag(
    args: list[str],
    where: str,
    tmp_path: Path,
    checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = builders.cambridge(tmp_path / "data", size=(64, 48))
    (tmp_path / "garbage.png").write_bytes(PNG_GARBAGE)
    out = tmp_path / "out"
    values = {"data": data, "out": out, "tmp": tmp_path, "ckpt": checkpoint}
    filled = [a.format(**values) for a in args]
    if args[0] == "train":
        filled += with_defaults(args)
    code, err = run_cli(filled, capsys)
    assert_clean_error(code, err, where.format(**values), one_line=args[0] != "check")
    assert not out.exists()


PATHS = [
    (["export", "{ckpt}", "{empty}/"], "{empty}/: is a folder"),
    (["export", "{ckpt}", "{empty}"], "{empty}: is a folder"),
    (["export", "{ckpt}", "{out}/model.onnx"], "the folder {out} does not exist"),
    (["train", "{data}", "--out", "{file}"], "--out {file}: is a file"),
    (["train", "{data}", "--out", "{data}/run"],
     "--out {data}/run: lies inside the dataset folder"),
    (["train", "{data}", "--out", "{out}", "--pretrained", "{photo}"],
     "{photo}: not a torch weights file"),
    (["train", "{data}", "--out", "{out}", "--pretrained", "{ckpt}"],
     "{ckpt}: a geoposenet checkpoint, not ImageNet classifier weights; to start training from it "
     "use --init {ckpt}"),
    (["predict", "{ckpt}", "{empty}"], "{empty}: no .png/.jpg/.jpeg images in this folder"),
    (["predict", "{ckpt}", "{empty}/*.png"], "{empty}/*.png: no file matches this pattern"),
    (["predict", "{ckpt}", "{photo}", "{tmp}/missing.jpg"],
     "{tmp}/missing.jpg: image file not found"),
    (["eval", "{empty}", "{data}", "--out", "{out}"], "{empty}: a folder without last.pt"),
    (["predict", "{empty}", "{photo}"], "{empty}: a folder without last.pt"),
    (["export", "{empty}", "{tmp}/model.onnx"], "{empty}: a folder without last.pt"),
]  # fmt: skip


def tree(root: Path) -> dict[str, bytes | None]:
    """Every file (with its content) and folder under `root`, but the private image cache."""
    return {
        str(p.relative_to(root)): p.read_bytes() if p.is_file() else None
        for p in root.rglob("*")
        if "cache" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize(("args", "where"), PATHS, ids=flag_id)
def test_bad_path(
    args: list[str],
    where: str,
    tmp_path: Path,
    checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Output files and folders, image arguments, --pretrained files and checkpoint folders a
    user gets wrong: one message naming them, and nothing written anywhere."""
    values = {
        "data": builders.cambridge(tmp_path / "data", size=(64, 48)),
        "out": tmp_path / "out",
        "tmp": tmp_path,
        "ckpt": checkpoint,
        "empty": tmp_path / "empty",
        "file": tmp_path / "notes.txt",
        "photo": tmp_path / "photo.png",
    }
    values["empty"].mkdir()
    values["file"].write_text("not a folder")
    Image.new("RGB", (64, 48), (90, 120, 150)).save(values["photo"])
    filled = [a.format(**values) for a in args]
    if args[0] == "train":
        filled += with_defaults(args)
    before, checkpoints = tree(tmp_path), tree(checkpoint.parent)
    code, err = run_cli(filled, capsys)
    assert_clean_error(code, err, where.format(**values))
    assert tree(tmp_path) == before and tree(checkpoint.parent) == checkpoints


class Exploit:
    """Unpickling this would create the folder named in it (proof that code ran)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.makedirs, (str(self.marker),))


def unsafe_pickle(valid: Path, path: Path) -> None:
    content = load_checkpoint(valid)
    torch.save({**content, "extra": Exploit(path.parent / "code-ran")}, path)


def other_backbone(valid: Path, path: Path) -> None:
    content = load_checkpoint(valid)
    config = ModelConfig(backbone="resnet18", pretrained="none", resize=48, crop=(48, 64))
    save_checkpoint(path, {**content, "model_config": config.to_dict()})


def other_shapes(valid: Path, path: Path) -> None:
    content = load_checkpoint(valid)
    model = {
        k: torch.zeros(3, 3) if k.startswith("head") else v for k, v in content["model"].items()
    }
    save_checkpoint(path, {**content, "model": model})


def other_keys(valid: Path, path: Path) -> None:
    content = load_checkpoint(valid)
    model = {k: v for k, v in content["model"].items() if k != "head.bias"}
    save_checkpoint(path, {**content, "model": {**model, "head.scale": torch.ones(7)}})


def older_format(valid: Path, path: Path) -> None:
    torch.save({**load_checkpoint(valid), "version": 0}, path)


def truncated(valid: Path, path: Path) -> None:
    path.write_bytes(valid.read_bytes()[: valid.stat().st_size // 2])


CHECKPOINTS = {
    "unsafe pickle": (unsafe_pickle, "refused"),
    "another backbone": (other_backbone, "do not fit a resnet18 PoseNet"),
    "wrong shapes": (
        other_shapes,
        "mobilenet_v3_small PoseNet: head.weight is 3x3, the model needs 7x576",
    ),
    "missing and unexpected weights": (
        other_keys,
        "1 missing weights (head.bias); 1 unexpected weights (head.scale)",
    ),
    "older format": (older_format, "format version 0"),
    "truncated": (truncated, "not a readable checkpoint"),
}
CHECKPOINT_USERS = {
    "eval": ["eval", "{ckpt}", "{data}", "--out", "{out}"],
    "predict": ["predict", "{ckpt}", "{image}"],
    "export": ["export", "{ckpt}", "{out}/model.onnx"],
    "train --init": ["train", "{data}", "--out", "{out}", "--init", "{ckpt}", *TRAIN_FLAGS],
}


@pytest.mark.parametrize("user", CHECKPOINT_USERS)
@pytest.mark.parametrize("kind", CHECKPOINTS)
def test_bad_checkpoint(
    kind: str,
    user: str,
    tmp_path: Path,
    checkpoint: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    make, words = CHECKPOINTS[kind]
    bad = tmp_path / "bad.pt"
    make(checkpoint, bad)
    data = builders.cambridge(tmp_path / "data", size=(64, 48))
    out = tmp_path / "out"
    values = {"ckpt": bad, "data": data, "out": out, "image": data / builders.TEST[0].split()[0]}
    code, err = run_cli([a.format(**values) for a in CHECKPOINT_USERS[user]], capsys)
    assert_clean_error(code, err, f"{bad}: ")
    assert words in err
    assert len(err) < 400 and "size mismatch for" not in err and "Unexpected key" not in err
    assert not out.exists() and not (tmp_path / "code-ran").exists()
