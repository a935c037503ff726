"""Arbitrary file contents make the readers raise the library's own errors and nothing else.

Two kinds of input: text built from tokens that exercise the parsers' edge cases, and byte-level
mutations (inserted, deleted, replaced bytes, cut files, repeated lines, non-UTF-8 bytes) of real
files: a Cambridge label excerpt (ShopFacade), an NVM excerpt, a 7-Scenes pose and split file;
and random JSON values in a nerfstudio transforms.json with a cut PLY."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import builders
import pytest
from builders import REALDATA, STAIRS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoposenet.errors import DatasetError, InputError
from geoposenet.readers import check_dataset, load_scene

HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
TOKENS = [
    "seq1/frame00001.png", "seq1/a.jpg", "0", "1", "-1", "0.5", "2", "1e-320", "1e309", "nan",
    "inf", "1_0", "99999999999999999999", "..", "/x", "C:", "\\", " ", "\t", "\n", "\r\n", "\x00",
    "é", "#", "NVM_V3", "sequence1", "seq-01", "\ud800",
]  # fmt: skip
TEXT = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def _write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8", "surrogatepass"))


def _only_dataset_errors(root: Path) -> None:
    with contextlib.suppress(DatasetError):  # any other exception fails the test
        load_scene(root, require_images=False)
    report = check_dataset(root)
    assert report.problems or report.scene is not None
    assert report.describe()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GEOPOSENET_CACHE", str(folder / "cache"))
        yield folder


@SETTINGS
@given(train=TEXT, test=TEXT, nvm=TEXT, raw=st.binary(max_size=8))
def test_cambridge_and_nvm(workdir: Path, train: str, test: str, nvm: str, raw: bytes) -> None:
    root = workdir / "cambridge"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    _write(root / "dataset_train.txt", HEADER + train)
    (root / "dataset_train.txt").write_bytes((root / "dataset_train.txt").read_bytes() + raw)
    _write(root / "dataset_test.txt", HEADER + test)
    _write(root / "reconstruction.nvm", "NVM_V3\n" + nvm)
    _only_dataset_errors(root)


@SETTINGS
@given(pose=TEXT, split=TEXT)
def test_sevenscenes(workdir: Path, pose: str, split: str) -> None:
    root = workdir / "stairs"
    if not root.exists():
        shutil.copytree(STAIRS, root)
    _write(root / "seq-02" / "frame-000001.pose.txt", pose)
    _write(root / "TestSplit.txt", split)
    _only_dataset_errors(root)


def _excerpt(path: Path, lines: int) -> bytes:
    return b"".join(path.read_bytes().splitlines(keepends=True)[:lines])


def _nvm_excerpt(labels: list[bytes]) -> bytes:
    """The real NVM's header and 22 cameras, then its first 6 points (count line adjusted). The
    cameras are renamed to the frames of the 22 label lines `labels`, with .jpg for .png as in
    the real Cambridge NVMs: a reader requires cameras and labelled frames to match."""
    lines = (REALDATA / "nvm" / "nvm-conv" / "model.nvm").read_bytes().splitlines(keepends=True)
    cameras = [
        label.split()[0].removesuffix(b".png") + b".jpg" + camera[camera.index(b"\t") :]
        for label, camera in zip(labels, lines[3:25], strict=True)
    ]
    return b"".join([*lines[:3], *cameras, lines[25], b"6\n", *lines[27:33]])


SHOP = REALDATA / "cambridge" / "ShopFacade"
TRAIN_EXCERPT = _excerpt(SHOP / "dataset_train.txt", 19)  # the header and 16 frames
TEST_EXCERPT = _excerpt(SHOP / "dataset_test.txt", 9)  # the header and 6 frames
LABELS = [*TRAIN_EXCERPT.splitlines()[3:], *TEST_EXCERPT.splitlines()[3:]]
VALID = {
    "train": TRAIN_EXCERPT,
    "test": TEST_EXCERPT,
    "nvm": _nvm_excerpt(LABELS),
    "pose": (STAIRS / "seq-02" / "frame-000001.pose.txt").read_bytes(),
    "split": (STAIRS / "TestSplit.txt").read_bytes(),
}
BYTES = [
    b"nan", b"inf", b"-", b"+", b"e", b".", b"0", b"1e309", b"9" * 30, b"\n", b"\r", b"\r\n",
    b" ", b"\t", b"\x00", b"\xff", b"\xc3", b"\xed\xa0\x80", "é".encode(), b"..", b"/", b"\\",
    b"#", b"sequence", b"NVM_V3",
]  # fmt: skip
EDIT = st.tuples(
    st.sampled_from(["insert", "delete", "replace", "cut", "repeat line"]),
    st.floats(0, 1),
    st.sampled_from(BYTES) | st.binary(min_size=1, max_size=3),
)


def _apply(data: bytes, edits: list[tuple[str, float, bytes]]) -> bytes:
    """Apply byte edits at relative positions of a file."""
    for kind, where, token in edits:
        at = int(where * len(data))
        if kind == "insert":
            data = data[:at] + token + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + len(token) :]
        elif kind == "replace":
            data = data[:at] + token + data[at + len(token) :]
        elif kind == "cut":
            data = data[:at]
        else:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data = data[:end] + data[start:end] + data[end:]
    return data


def mutated(name: str) -> st.SearchStrategy[bytes]:
    """The valid file `name` with 1 to 4 byte edits."""
    return st.lists(EDIT, min_size=1, max_size=4).map(lambda edits: _apply(VALID[name], edits))


MUTATIONS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))


def _only_library_errors(root: Path) -> None:
    """load_scene raises nothing but InputError (DatasetError); check_dataset never raises and
    reports a problem whenever load_scene refused the data."""
    refused = None
    try:
        load_scene(root, require_images=False)
    except InputError as error:
        refused = error
    report = check_dataset(root, require_images=False)
    assert report.describe()
    if refused is not None:
        assert report.problems, f"load_scene refused ({refused}) but check found no problem"


def _cambridge_root(workdir: Path, **files: bytes) -> Path:
    root = workdir / "cambridge-mutated"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    (root / "dataset_train.txt").write_bytes(files.get("train", VALID["train"]))
    (root / "dataset_test.txt").write_bytes(files.get("test", VALID["test"]))
    (root / "reconstruction.nvm").write_bytes(files.get("nvm", VALID["nvm"]))
    return root


def test_valid_excerpts_load(workdir: Path) -> None:
    scene = load_scene(_cambridge_root(workdir), require_images=False)
    assert len(scene.frames) == 22 and len(scene.points) == 6
    assert all(frame.point_ids.size for frame in scene.frames[:2])  # cameras 0 and 1 see points
    root = workdir / "stairs-mutated"
    shutil.copytree(STAIRS, root, dirs_exist_ok=True)
    assert len(load_scene(root, require_images=False).frames) == 18


@MUTATIONS
@given(data=mutated("train"))
def test_mutated_cambridge_labels(workdir: Path, data: bytes) -> None:
    _only_library_errors(_cambridge_root(workdir, train=data))


@MUTATIONS
@given(data=mutated("nvm"))
def test_mutated_nvm(workdir: Path, data: bytes) -> None:
    _only_library_errors(_cambridge_root(workdir, nvm=data))


def _stairs_root(workdir: Path, pose: bytes, split: bytes) -> Path:
    root = workdir / "stairs-mutated"
    if not root.exists():
        shutil.copytree(STAIRS, root)
    (root / "seq-02" / "frame-000001.pose.txt").write_bytes(pose)
    (root / "TestSplit.txt").write_bytes(split)
    return root


@MUTATIONS
@given(data=mutated("pose"))
def test_mutated_sevenscenes_pose(workdir: Path, data: bytes) -> None:
    _only_library_errors(_stairs_root(workdir, data, VALID["split"]))


@settings(MUTATIONS, max_examples=50)  # a 20-byte file; each example reads 18 frames
@given(data=mutated("split"))
def test_mutated_sevenscenes_split(workdir: Path, data: bytes) -> None:
    _only_library_errors(_stairs_root(workdir, VALID["pose"], data))


NERF_KEYS = [
    "frames", "file_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h",
    "camera_model", "ply_file_path", "applied_transform", "train_filenames", "test_filenames",
]  # fmt: skip
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 100) | st.floats()
    | st.sampled_from(["images/im0.png", "images/im1.png", "../x", "", "/abs", "PINHOLE"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(NERF_KEYS), inner),
    max_leaves=24,
)  # fmt: skip


@SETTINGS
@given(
    top=st.dictionaries(st.sampled_from(NERF_KEYS), JSON_VALUES, max_size=3),
    frame=st.dictionaries(st.sampled_from(NERF_KEYS), JSON_VALUES, max_size=3),
    cut=st.integers(0, 400),
    tail=st.binary(max_size=24),
)
def test_nerfstudio_json_and_ply(
    workdir: Path, top: dict, frame: dict, cut: int, tail: bytes
) -> None:
    root = workdir / "nerfstudio"
    shutil.rmtree(root, ignore_errors=True)
    content = builders.nerfstudio_transforms()
    content["frames"][1].update(frame)
    content.update(top)
    builders.nerfstudio(root, content)
    ply = (root / "points.ply").read_bytes()
    (root / "points.ply").write_bytes(ply[:cut] + tail)
    _only_dataset_errors(root)
