"""Cambridge Landmarks labels and the NVM reader, on the real files of tests/data and on
small hand-written scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from builders import REALDATA
from PIL import Image

from geoposenet.errors import DatasetError
from geoposenet.readers import detect_format, load_scene
from geoposenet.readers._common import Problems
from geoposenet.readers._nvm import read_nvm

COUNTS = {
    "KingsCollege": (1220, 343),
    "OldHospital": (895, 182),
    "ShopFacade": (231, 103),
    "StMarysChurch": (1487, 530),
    "GreatCourt": (1532, 760),
    "Street": (3015, 2923),
}
HEADER = "Visual Landmark Dataset V1\nImageFile, Camera Position [X Y Z W P Q R]\n\n"


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (6, 4)).save(path)


def _label_lines(path: Path) -> list[list[str]]:
    """The oracle: the label file split by hand."""
    return [line.split() for line in path.read_text().splitlines()[3:] if line.strip()]


@pytest.mark.parametrize("scene_name", sorted(COUNTS))
def test_real_label_sets_parse_with_right_counts(scene_name: str) -> None:
    root = REALDATA / "cambridge" / scene_name
    assert detect_format(root) == "cambridge"
    scene = load_scene(root, require_images=False)
    train, test = COUNTS[scene_name]
    assert (len(scene.split("train")), len(scene.split("test"))) == (train, test)
    assert np.allclose(np.linalg.norm(scene.quaternions, axis=1), 1.0, atol=1e-12)
    assert (scene.quaternions[:, 0] >= 0).all()
    assert len(scene.points) == 0
    # Every frame equals its line, read by hand (quaternion up to the sign and the normalisation).
    oracle = _label_lines(root / "dataset_train.txt") + _label_lines(root / "dataset_test.txt")
    assert [f.name for f in scene.frames] == [row[0] for row in oracle]
    values = np.array([[float(v) for v in row[1:]] for row in oracle])
    assert np.array_equal(scene.centres, values[:, :3])
    q = values[:, 3:] / np.linalg.norm(values[:, 3:], axis=1, keepdims=True)
    q *= np.sign(q[:, :1])
    assert np.allclose(scene.quaternions, q, atol=1e-15)
    assert {f.sequence for f in scene.frames} == {row[0].split("/")[0] for row in oracle}


def test_split_filter_and_frame_fields() -> None:
    root = REALDATA / "cambridge" / "ShopFacade"
    test = load_scene(root, split="test", require_images=False)
    assert len(test.frames) == 103 and {f.split for f in test.frames} == {"test"}
    first = test.frames[0]
    assert first.image == root.resolve() / first.name
    assert first.intrinsics is None and first.point_ids.dtype == np.int64


def test_real_nvm_parses_with_its_quirks() -> None:
    path = REALDATA / "nvm" / "nvm-conv" / "model.nvm"
    text = path.read_text()
    assert text.startswith("NVM_V3 \n") and "\t" in text and "#the last part of NVM file" in text
    model = read_nvm(path, Problems(strict=True))
    assert model is not None
    assert len(model.cameras) == 22
    assert len(model.points) == int(text.splitlines()[26])  # the point count line
    # Camera 0 against its line in the file.
    name, rest = text.splitlines()[3].split("\t")
    numbers = [float(v) for v in rest.split()]
    camera = model.cameras[0]
    assert (camera.name, camera.line, camera.focal) == (name, 4, numbers[0])
    q = np.array(numbers[1:5])
    assert np.allclose(camera.quaternion, q / np.linalg.norm(q), atol=1e-15)
    assert np.array_equal(camera.centre, numbers[5:8]) and camera.radial == numbers[8]
    # The last point: '... 2 20 780 x y 21 554 x y' is seen by cameras 20 and 21.
    last_point_line = text.splitlines()[879].split()
    assert np.array_equal(model.points[-1], [float(v) for v in last_point_line[:3]])
    assert list(model.colors[-1]) == [157, 135, 143]
    last = len(model.points) - 1
    seen_by = [i for i, ids in enumerate(model.observed) if last in ids]
    assert seen_by == [20, 21]
    assert sum(len(ids) for ids in model.observed) == sum(
        int(line.split()[6]) for line in text.splitlines()[27:880]
    )


def _write_scene(root: Path, nvm: str | None) -> None:
    rows = {
        "train": ["seq1/frame00001.png 1 2 3 1 0 0 0", "seq1/frame00002.png 4 5 6 0 1 0 0"],
        "test": ["seq2/frame00001.png 7 8 9 0.5 0.5 0.5 -0.5"],
    }
    for split, lines in rows.items():
        (root / f"dataset_{split}.txt").write_text(HEADER + "\n".join(lines) + "\n")
        for line in lines:
            _png(root / line.split()[0])
    if nvm is not None:
        (root / "reconstruction.nvm").write_text(nvm)


# Two models; VisualSFM quirks: trailing space, TAB after the name, trailing PLY block.
NVM_TWO_MODELS = """NVM_V3{space}

3
seq2/frame00001.jpg\t500 0.5 0.5 0.5 -0.5 7 8 9 0 0
seq1/frame00001.jpg\t500 1 0 0 0 1 2 3 0 0
seq1/frame00002.jpg\t500 0 1 0 0 4 5 6 0 0

3
0 0 10 255 0 0 1 1 5 1.5 2.5
1 0 10 0 255 0 2 0 6 3 4 1 7 5 6
2 0 10 0 0 255 1 0 8 0 0

1
other.jpg\t500 1 0 0 0 0 0 0 0 0
1
9 9 9 0 0 0 1 0 0 0 0

0

#the last part of NVM file points to the PLY files
#the first number is the number of associated PLY files
#each following number gives a model-index that has PLY
0
""".format(space=" ")


def test_nvm_points_matched_by_sequence_and_stem(tmp_path: Path) -> None:
    _write_scene(tmp_path, NVM_TWO_MODELS)
    scene = load_scene(tmp_path)
    assert np.array_equal(scene.points, [[0, 0, 10], [1, 0, 10], [2, 0, 10]])  # first model only
    ids = {f.name: f.point_ids.tolist() for f in scene.frames}
    assert ids == {
        "seq1/frame00001.png": [0, 1],  # NVM camera 1 (.jpg)
        "seq1/frame00002.png": [],  # NVM camera 2 observes no point: pose losses only
        "seq2/frame00001.png": [1, 2],  # NVM camera 0
    }
    assert scene.summary()["points_per_frame"] == {"min": 0, "median": 2.0, "max": 2}


def test_scene_without_nvm_has_no_points(tmp_path: Path) -> None:
    _write_scene(tmp_path, None)
    scene = load_scene(tmp_path)
    assert len(scene.points) == 0 and all(f.point_ids.size == 0 for f in scene.frames)
    assert [f.sequence for f in scene.frames] == ["seq1", "seq1", "seq2"]
    assert np.allclose(scene.frames[2].quaternion, [0.5, 0.5, 0.5, -0.5])


def test_nvm_with_fixed_intrinsics_header_and_zero_cameras(tmp_path: Path) -> None:
    path = tmp_path / "m.nvm"
    path.write_text("NVM_V3 FixedK 500 320 500 240 0\n\n0\n\n0\n")
    model = read_nvm(path, Problems(strict=True))
    assert model is not None and model.cameras == [] and model.points.shape == (0, 3)


def test_missing_images_are_required_by_default(tmp_path: Path) -> None:
    _write_scene(tmp_path, None)
    (tmp_path / "seq1" / "frame00002.png").unlink()
    with pytest.raises(DatasetError) as info:
        load_scene(tmp_path)
    assert info.value.path.name == "dataset_train.txt" and info.value.line == 5
    assert "frame00002.png not found" in str(info.value)
    assert len(load_scene(tmp_path, require_images=False).frames) == 3
