"""Arbitrary file contents make the readers raise DatasetError and nothing else (a small,
fast property test; the text is built from tokens that exercise the parsers' edge cases)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoposenet.errors import DatasetError
from geoposenet.readers import check_dataset, load_scene

HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"
STAIRS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "7scenes" / "stairs"
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
