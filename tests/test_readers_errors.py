"""Bad input: every reader raises DatasetError naming file and line; check_dataset and
`geoposenet check` list every problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import (
    HEADER,
    NVM,
    NVM_CAMERA,
    NVM_CAMERAS,
    REALDATA,
    STAIRS,
    TRAIN,
    cambridge,
    colmap,
    colmap_model,
    nvm,
    stairs,
)
from PIL import Image

from geoposenet import cli
from geoposenet.errors import DatasetError, InputError
from geoposenet.readers import check_dataset, load_scene


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))


def _raises(root: Path, file: str, line: int | None, words: str, **options: object) -> None:
    with pytest.raises(DatasetError) as info:
        load_scene(root, **options)
    error = info.value
    assert (error.path.name, error.line) == (file, line), str(error)
    where = f"{file}:{line}: " if line is not None else f"{file}: "
    assert where in str(error) and words in str(error), str(error)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("seq1/frame00002.png 1 2 3 1 0 0", "expected 8 fields"),  # short
        ("seq1/frame00002.png 1 2 3 1 0 0 0 9", "expected 8 fields"),  # long
        ("seq1/frame00002.png 1 2 x 1 0 0 0", "'x' is not a number"),
        ("seq1/frame00002.png 1 nan 3 1 0 0 0", "'nan' is not a finite number"),
        ("seq1/frame00002.png 1 2 -inf 1 0 0 0", "'-inf' is not a finite number"),
        ("seq1/frame00002.png 1 2 3 0 0 0 0", "zero-length quaternion"),
        ("seq1/frame00002.png 1 2 3 1e-300 0 0 0", "near-zero length"),
        ("/data/seq1/frame00002.png 1 2 3 1 0 0 0", "is absolute"),
        ("C:\\seq1\\frame00002.png 1 2 3 1 0 0 0", "is absolute"),
        ("../seq1/frame00002.png 1 2 3 1 0 0 0", "leaves the dataset folder"),
        ("seq1/../../frame00002.png 1 2 3 1 0 0 0", "leaves the dataset folder"),
        ("seq1/frame00001.png 1 2 3 1 0 0 0", "duplicate frame seq1/frame00001.png"),
        ("seq1/frame00009.png 1 2 3 1 0 0 0", "frame00009.png not found"),
    ],
)
def test_cambridge_bad_label_lines(tmp_path: Path, line: str, words: str) -> None:
    root = cambridge(tmp_path / "scene", train=[TRAIN[0], line])
    _raises(root, "dataset_train.txt", 5, words)


def test_cambridge_bad_files(tmp_path: Path) -> None:
    root = cambridge(tmp_path / "scene", test=[TRAIN[1]])
    _raises(root, "dataset_test.txt", 4, "duplicate frame seq1/frame00002.png")
    cambridge(root)
    (root / "dataset_train.txt").write_bytes(
        (HEADER + TRAIN[0] + "\nseq1/\xe9t\xe9.png\n").encode("latin-1")
    )
    _raises(root, "dataset_train.txt", 5, "not UTF-8")
    (root / "dataset_train.txt").write_text("Some other file\n" + HEADER[27:] + TRAIN[0] + "\n")
    _raises(root, "dataset_train.txt", 1, "header: expected a line starting with 'Visual")
    (root / "dataset_train.txt").write_text(HEADER[:27] + "\n\n" + TRAIN[0] + "\n")
    _raises(root, "dataset_train.txt", 2, "header: expected a line starting with 'ImageFile'")
    (root / "dataset_test.txt").write_text("")
    cambridge(root, train=TRAIN)
    (root / "dataset_test.txt").write_text("  \n")
    _raises(root, "dataset_test.txt", None, "file is empty")
    (root / "dataset_test.txt").unlink()
    _raises(root, "dataset_test.txt", None, "file not found")


def test_no_frames_unknown_format_and_bad_paths(tmp_path: Path) -> None:
    root = cambridge(tmp_path / "scene", train=[], test=[])
    _raises(root, "scene", None, "has no frames")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as info:
        load_scene(tmp_path / "empty")
    assert info.value.path.name == "empty"
    for looked_for in ("dataset_train.txt", "TrainSplit.txt", "sparse/0"):
        assert looked_for in str(info.value)
    with pytest.raises(DatasetError, match="not found"):
        load_scene(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a folder"):
        load_scene(root / "dataset_train.txt")
    with pytest.raises(InputError, match="unknown format"):
        load_scene(root, format="kitti")
    with pytest.raises(InputError, match="unknown option"):
        load_scene(root, points_per_frame=3)
    with pytest.raises(InputError, match="split"):
        load_scene(root, split="val")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("NVM_V2\n\n1\n" + NVM_CAMERA + "\n0\n", 1, "expected the header 'NVM_V3'"),
        ("NVM_V3\n\n1\nseq1/frame00001.jpg\t500 1 0 0 0 1 2\n0\n", 4, "camera line needs"),
        ("NVM_V3\n\n1\nseq1/frame00001.jpg\t500 0 0 0 0 1 2 3 0 0\n0\n", 4, "zero-length"),
        ("NVM_V3\n\ntwo\n", 3, "'two' is not an integer"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 0 1 0 0 0 1 1 0 5 5\n", 6, "of camera 1, but"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 0 1 0 0 0 2 0 0 5 5\n", 6, "for 2 observations"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 0 1 0 0 300 1 0 0 5 5\n", 6, "colour 300"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 nan 1 0 0 0 0\n", 6, "not a finite"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 0 1 0 0 0 -1\n", 6, "-1 is negative"),
        ("NVM_V3\n\n2\n" + NVM_CAMERA + "\n", None, "file ends after 1 of 2 cameras"),
        ("NVM_V3\n\n1\n" + NVM_CAMERA + "\n3\n0 0 1 0 0 0 0\n", None, "ends after 1 of 3"),
    ],
)
def test_nvm_problems(tmp_path: Path, text: str, line: int | None, words: str) -> None:
    root = cambridge(tmp_path / "scene")
    (root / "reconstruction.nvm").write_text(text)
    _raises(root, "reconstruction.nvm", line, words)


def test_sevenscenes_problems(tmp_path: Path) -> None:
    root = stairs(tmp_path / "stairs")
    pose = root / "seq-02" / "frame-000001.pose.txt"
    good = pose.read_text()
    rows = good.splitlines()
    cases = [
        ("\n".join(rows[:3]), 3, "expected 4 rows of 4 numbers, found 3"),
        ("\n".join([rows[0], "1 2 3", *rows[2:]]), 2, "expected 4 numbers in a row, found 3"),
        ("\n".join([rows[0], "1 nan 0 0", *rows[2:]]), 2, "not a finite"),
        ("\n".join([*rows[:3], "0 0 1 1"]), 4, "last row must be '0 0 0 1'"),
        ("2 0 0 0\n0 2 0 0\n0 0 2 0\n0 0 0 1\n", 1, "not a rotation"),
        ("-1 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n", 1, "not a rotation"),  # a reflection
    ]
    for text, line, words in cases:
        pose.write_text(text)
        _raises(root, "frame-000001.pose.txt", line, words)
    pose.write_text(good)
    depth = root / "seq-02" / "frame-000002.depth.png"
    Image.fromarray(np.full((240, 320), 1000, dtype=np.uint16)).save(depth)
    _raises(root, "frame-000002.depth.png", None, "is 320x240, expected 640x480")
    Image.fromarray(np.full((480, 640), 100, dtype=np.uint8)).save(depth)
    _raises(root, "frame-000002.depth.png", None, "must be 16-bit")
    depth.write_bytes(b"\x89PNG not really")
    _raises(root, "frame-000002.depth.png", None, "cannot decode depth PNG")
    depth.unlink()  # the other frames of seq-02 have one
    _raises(root, "frame-000002.depth.png", None, "depth map not found, while 2 of the 3 frames")
    shutil.copy(STAIRS / "seq-02" / "frame-000002.depth.png", depth)
    (root / "seq-03" / "frame-000000.color.jpg").unlink()
    _raises(root, "frame-000000.pose.txt", None, "frame-000000.color.png not found")
    assert len(load_scene(root, require_images=False).frames) == 18
    (root / "TestSplit.txt").write_text("sequence1\nsequenceX\n")
    _raises(
        root, "TestSplit.txt", 2, "expected 'sequenceN', found 'sequenceX'", require_images=False
    )
    (root / "TestSplit.txt").write_text("sequence1\nsequence2\n")
    _raises(
        root,
        "TestSplit.txt",
        2,
        "seq-02 listed twice (first at TrainSplit.txt:1)",
        require_images=False,
    )
    (root / "TestSplit.txt").write_text("sequence1\r\nsequence9\r\n")
    _raises(root, "TestSplit.txt", 2, "seq-09 not found", require_images=False)


def test_colmap_problems(tmp_path: Path) -> None:
    root = tmp_path / "model"
    reconstruction = colmap_model(root)
    reconstruction.write_text(str(root / "sparse"))
    images = root / "sparse" / "images.txt"
    good = images.read_text()
    images.write_text("# no images\n")
    _raises(root, "images.txt", None, "no registered images", require_images=False)
    images.write_text(good.replace("im1.png", "../im1.png"))
    _raises(root, "images.txt", None, "'../im1.png' leaves the dataset folder")
    images.write_text(good.replace(" 0 0 0 0 1 im2.png", " 0 0 0 x 1 im2.png"))
    _raises(root, "sparse", None, "cannot read the COLMAP model", require_images=False)
    images.write_text(good)
    _raises(root, "images.txt", None, "images/im0.png not found")
    (root / "test.txt").write_text("im0.png\nim7.png\n")
    _raises(root, "test.txt", 2, "'im7.png' is not a registered image", require_images=False)
    (root / "sparse" / "points3D.txt").unlink()
    _raises(root, "sparse", None, "lacks points3D.bin/.txt")
    with pytest.raises(InputError, match="--test-every must be at least 1"):
        load_scene(root, test_every=0)


def test_colmap_corrupt_binary_counts_fail_fast(tmp_path: Path) -> None:
    # COLMAP's own reader would allocate for the corrupt counts; the layout check refuses them.
    root = tmp_path / "model"
    colmap_model(root).write_binary(str(root / "sparse"))
    files = {n: (root / "sparse" / n).read_bytes() for n in ("images.bin", "cameras.bin")}
    images, cameras = root / "sparse" / "images.bin", root / "sparse" / "cameras.bin"
    count_at = 8 + 4 + 56 + 4 + len(b"im0.png") + 1  # the first image's 2D point count
    huge = (1 << 40).to_bytes(8, "little")
    images.write_bytes(files["images.bin"][:count_at] + huge + files["images.bin"][count_at + 8 :])
    _raises(root, "images.bin", None, f"2D point count {1 << 40} at byte {count_at} does not fit")
    images.write_bytes(files["images.bin"][:-5])
    _raises(root, "images.bin", None, "runs past the end of the file")
    images.write_bytes(files["images.bin"] + b"\0")
    _raises(root, "images.bin", None, "1 unexpected bytes after the last element")
    images.write_bytes(files["images.bin"])
    cameras.write_bytes(
        files["cameras.bin"][:12] + (99).to_bytes(4, "little") + files["cameras.bin"][16:]
    )
    _raises(root, "cameras.bin", None, "unknown camera model id 99")


def test_check_dataset_lists_every_problem(tmp_path: Path) -> None:
    train = [
        "seq1/frame00001.png 1 2 3 1 0 0",  # line 4: short
        "seq1/frame00002.png 1 2 3 0 0 0 0",  # line 5: zero quaternion
        "seq1/frame00009.png 1 2 3 1 0 0 0",  # line 6: missing image
        "seq1/frame00002.png 1 2 nan 1 0 0 0",  # line 7: NaN
    ]
    root = cambridge(tmp_path / "scene", train=train)
    (root / "seq2" / "frame00001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "reconstruction.nvm").write_text(
        "NVM_V3\n\n1\n" + NVM_CAMERA + "\n1\n0 0 1 0 0 0 1 4 0 5 5\n"
    )
    report = check_dataset(root)
    assert not report.ok and report.scene is not None
    train_file, test_file = (
        root.resolve() / "dataset_train.txt",
        root.resolve() / "dataset_test.txt",
    )
    nvm_file = root.resolve() / "reconstruction.nvm"
    expected = [
        f"{train_file}:4: expected 8 fields",
        f"{train_file}:5: zero-length quaternion",
        f"{train_file}:6: image",  # not found; the frame itself is kept
        f"{train_file}:7: pose: 'nan' is not a finite number",
        f"{test_file}:4: image",  # the image does not decode
        f"{nvm_file}:6: observation of camera 4",
        f"{nvm_file}:4: camera seq1/frame00001.jpg names no frame",  # its label line is short
        f"{nvm_file}: no camera for the frame seq1/frame00009.png (dataset_train.txt:6)",
        f"{nvm_file}: no camera for the frame seq2/frame00001.png (dataset_test.txt:4)",
    ]
    assert len(report.problems) == len(expected), report.problems
    for prefix, problem in zip(expected, report.problems, strict=True):
        assert problem.startswith(prefix), (prefix, problem)
    assert "cannot be decoded" in report.problems[4]
    assert report.describe().startswith(f"{root.resolve()}: 9 problem(s) found")
    # The images of the unusable lines 4, 5 and 7 are noted, not counted as problems.
    assert report.notes == [
        f"{root.resolve()}: 2 image file(s) that no label line names, not frames: "
        "seq1/frame00001.png, seq1/frame00002.png"
    ]
    assert len(report.scene.frames) == 2  # the two frames with readable lines


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = cambridge(tmp_path / "scene")
    assert cli.main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    assert "OK, cambridge dataset 'scene'" in out and "frames: 2 train, 1 test" in out
    (root / "dataset_test.txt").write_text(HEADER + "seq2/frame00001.png 7 8 9 0 0 0 0\nx\n")
    assert cli.main(["check", str(root), "--format", "cambridge"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "3 problem(s) found" in captured.err
    assert "dataset_test.txt:4: zero-length quaternion" in captured.err
    assert "dataset_test.txt:5: expected 8 fields" in captured.err
    assert "no test frames" in captured.err
    assert cli.main(["check", str(tmp_path / "nowhere")]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert cli.main(["check", str(REALDATA / "7scenes" / "stairs")]) == 0
    assert "frames: 12 train, 6 test" in capsys.readouterr().out


# No frame is dropped in silence (issue 14.3): a frame the format defines but whose pose, image or
# depth map is missing is a problem for load_scene and check; files that are not frames are notes.


@pytest.mark.parametrize(
    ("cameras", "line", "words"),
    [
        (NVM_CAMERAS[:2], None, "no camera for the frame seq2/frame00001.png (dataset_test.txt:4)"),
        ([NVM_CAMERAS[0], NVM_CAMERAS[2]], None, "frame seq1/frame00002.png (dataset_train.txt:5)"),
        ([*NVM_CAMERAS, "seq3/frame00001.jpg\t1 1 0 0 0 0 0 0 0 0"], 7, "camera seq3/frame00001"),
        ([*NVM_CAMERAS, NVM_CAMERAS[0].replace(".jpg", ".png")], 7, "duplicate camera seq1/"),
    ],
)
def test_cambridge_nvm_cameras_and_label_frames_match(
    tmp_path: Path, cameras: list[str], line: int | None, words: str
) -> None:
    root = cambridge(tmp_path / "scene", nvm=nvm(cameras, points=[]))
    _raises(root, "reconstruction.nvm", line, words)
    report = check_dataset(root)
    assert len(report.problems) == 1 and words in report.problems[0], report.problems


def test_cambridge_lost_label_line_shows_in_the_nvm_and_the_notes(tmp_path: Path) -> None:
    root = cambridge(tmp_path / "scene", train=[TRAIN[0]], nvm=NVM)
    _raises(root, "reconstruction.nvm", 5, "camera seq1/frame00002.jpg names no frame")
    (root / "reconstruction.nvm").unlink()  # without the NVM: a note, not a problem
    report = check_dataset(root)
    assert report.ok and len(load_scene(root).frames) == 2
    note = f"{root.resolve()}: 1 image file(s) that no label line names, not frames: "
    assert report.notes == [note + "seq1/frame00002.png"]
    assert report.describe().endswith(f"notes (1, not problems):\n  - {note}seq1/frame00002.png")
    for name in ("seq1/frame00003.jpg", "seq1/frame00004.PNG", "seq2/a.jpeg", "seq9/b.png"):
        (root / name).parent.mkdir(exist_ok=True)
        (root / name).write_bytes(b"")  # only names are looked at; seq9 holds no labelled image
    (root / "seq1" / "notes.txt").write_text("not an image")
    assert check_dataset(root).notes == [
        note.replace(": 1 image", ": 4 image")
        + "seq1/frame00002.png, seq1/frame00003.jpg, seq1/frame00004.PNG, ..."
    ]
    assert check_dataset(root, require_images=False).notes == []


@pytest.mark.parametrize(
    ("removed", "file", "words"),
    [
        (
            "seq-01/frame-000000.pose.txt",
            "frame-000000.pose.txt",
            "pose file not found, but there is frame-000000.color.jpg, frame-000000.depth.png",
        ),
        (  # in a sequence without depth maps
            "seq-06/frame-000002.pose.txt",
            "frame-000002.pose.txt",
            "pose file not found, but there is frame-000002.color.jpg",
        ),
        ("seq-03/frame-000000.color.jpg", "frame-000000.pose.txt", "color.png not found"),
        (
            "seq-02/frame-000001.depth.png",
            "frame-000001.depth.png",
            "depth map not found, while 2 of the 3 frames of seq-02 have one",
        ),
    ],
)
def test_sevenscenes_incomplete_real_frames(
    tmp_path: Path, removed: str, file: str, words: str
) -> None:
    root = stairs(tmp_path / "stairs")
    (root / removed).unlink()
    _raises(root, file, None, words)
    report = check_dataset(root)
    assert len(report.problems) == 1, report.problems
    where = root.resolve() / removed.replace("color.jpg", "pose.txt")
    assert report.problems[0].startswith(f"{where}: ") and words in report.problems[0]


def test_sevenscenes_stray_files_and_unlisted_sequences(tmp_path: Path) -> None:
    root = stairs(tmp_path / "stairs")
    shutil.copy(
        root / "seq-01" / "frame-000000.depth.png", root / "seq-05" / "frame-000007.depth.png"
    )
    _raises(root, "frame-000007.pose.txt", None, "but there is frame-000007.depth.png")
    (root / "seq-05" / "frame-000007.depth.png").unlink()
    (root / "seq-05" / "frame-000000.color.png.orig").write_bytes(b"")  # not a frame file
    assert len(load_scene(root).frames) == 18
    shutil.copytree(root / "seq-06", root / "seq-07")
    words = "sequence folder listed in neither TrainSplit.txt nor TestSplit.txt (as sequence7)"
    _raises(root, "seq-07", None, words)
    report = check_dataset(root)
    assert report.problems == [f"{root.resolve() / 'seq-07'}: {words}"]
    (root / "TestSplit.txt").write_bytes(b"sequence1\r\nsequence4\r\nsequence7\r\n")
    assert len(load_scene(root).split("test")) == 9


def test_colmap_every_registered_image_is_a_frame(tmp_path: Path) -> None:
    root = colmap(tmp_path / "colmap")
    (root / "train.txt").write_text("im1.png\n")
    (root / "test.txt").write_text("im0.png\n")
    _raises(root, "train.txt", None, "registered image 'im2.png' is in neither train.txt nor")
    (root / "images" / "im1.png").unlink()
    assert check_dataset(root).problems == [
        f"{root.resolve() / 'train.txt'}: registered image 'im2.png' is in neither train.txt "
        "nor test.txt",
        f"{root.resolve() / 'sparse' / 'images.txt'}: image {root.resolve()}/images/im1.png "
        "not found",
    ]
    colmap(tmp_path / "again")
    shutil.copy(tmp_path / "again" / "images" / "im1.png", root / "images")
    (root / "train.txt").write_text("im1.png\nim2.png\n")
    assert len(load_scene(root).frames) == 3
    images = root / "sparse" / "images.txt"
    good = images.read_text()
    images.write_text(good.replace("im1.png", "im0.png"))
    (root / "train.txt").unlink()
    _raises(root, "images.txt", None, "image name 'im0.png' registered twice (image ids 1 and 2)")
    images.write_text(good)


def test_colmap_unregistered_image_files_are_notes(tmp_path: Path) -> None:
    root = colmap(tmp_path / "colmap")
    (root / "images" / "late").mkdir()
    Image.new("RGB", (64, 48)).save(root / "images" / "late" / "im9.jpg")
    (root / "images" / "list.txt").write_text("not an image")
    report = check_dataset(root)
    assert report.ok and len(load_scene(root).frames) == 2
    folder = root.resolve() / "images"
    assert report.notes == [
        f"{root.resolve() / 'sparse' / 'images.txt'}: 1 posed image(s) in the gap before a "
        "held-out test stretch (in neither split), not frames: im1.png",
        f"{folder}: 1 image file(s) that the model does not register, not frames: late/im9.jpg",
    ]
