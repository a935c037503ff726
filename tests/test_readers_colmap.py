"""COLMAP: models built with pycolmap in the test, written as binary and text, read back; the
default held-out split, --test-list, --scale and --scale-from."""

from __future__ import annotations

from pathlib import Path

import builders
import numpy as np
import pycolmap
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.errors import DatasetError, InputError
from geoposenet.readers import check_dataset, detect_format, load_scene
from geoposenet.readers._common import Problems
from geoposenet.readers._split import chosen_split, held_out_stretches, synthetic_names

NAMES = [f"{seq}/img{i:02d}.png" for seq in ("seqA", "seqB") for i in range(5)]


def _build(rng: np.random.Generator) -> tuple[pycolmap.Reconstruction, dict[str, dict]]:
    """A model with three camera models, 10 posed images and 40 points whose tracks are
    random subsets of the images. Returns it and the truth per image name."""
    reconstruction = pycolmap.Reconstruction()
    cameras = [
        ("PINHOLE", [500.0, 510.0, 32.0, 24.0]),
        ("SIMPLE_RADIAL", [400.0, 30.0, 20.0, 0.01]),
        ("OPENCV_FISHEYE", [300.0, 301.0, 32.0, 24.0, 0.1, 0.0, 0.0, 0.0]),
    ]
    for camera_id, (model, params) in enumerate(cameras, start=1):
        camera = pycolmap.Camera.create_from_model_name(camera_id, model, 1.0, 64, 48)
        camera.params = params
        reconstruction.add_camera_with_trivial_rig(camera)
    points = rng.normal(size=(40, 3)) * 3
    seen = rng.random((len(NAMES), len(points))) < 0.4
    truth: dict[str, dict] = {}
    for index, name in enumerate(NAMES):
        rotation = Rotation.random(random_state=int(rng.integers(1 << 30)))
        centre = rng.normal(size=3) * 5
        t = -rotation.as_matrix() @ centre
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(rotation.as_quat()), t)  # x, y, z, w
        image = pycolmap.Image(
            name=name,
            keypoints=rng.random((len(points), 2)) * 40,
            camera_id=index % 3 + 1,
            image_id=index + 1,
        )
        reconstruction.add_image_with_trivial_frame(image, pose)
        q = rotation.as_quat(scalar_first=True)
        truth[name] = {"centre": centre, "q": q * np.sign(q[0]), "seen": set()}
    for k, xyz in enumerate(points):
        track = pycolmap.Track()
        for index in np.flatnonzero(seen[:, k]):
            track.add_element(int(index) + 1, k)  # feature k of each image sees point k
            truth[NAMES[index]]["seen"].add(tuple(xyz))
        reconstruction.add_point3D(xyz, track)
    return reconstruction, truth


def _images(root: Path) -> None:
    for name in NAMES:
        (root / "images" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48)).save(root / "images" / name)


@pytest.mark.parametrize(
    ("kind", "where"), [("binary", "sparse/0"), ("text", "sparse"), ("text", ".")]
)
def test_model_round_trips(tmp_path: Path, kind: str, where: str) -> None:
    reconstruction, truth = _build(np.random.default_rng(7))
    model = tmp_path / where
    model.mkdir(parents=True, exist_ok=True)
    (reconstruction.write_binary if kind == "binary" else reconstruction.write_text)(str(model))
    _images(tmp_path)
    assert detect_format(tmp_path) == "colmap"
    scene = load_scene(tmp_path)
    # No split lists: in each sequence of 5 the last image is a test image and the one before it
    # the gap (in neither split); the rest train.
    gap = ["seqA/img03.png", "seqB/img03.png"]
    assert [f.name for f in scene.frames] == [n for n in sorted(NAMES) if n not in gap]
    assert [f.name for f in scene.split("test")] == ["seqA/img04.png", "seqB/img04.png"]
    assert len(scene.points) == 40
    for frame in scene.frames:
        expected = truth[frame.name]
        assert np.allclose(frame.centre, expected["centre"], atol=1e-9)
        assert np.allclose(frame.quaternion, expected["q"], atol=1e-9)
        assert {tuple(p) for p in scene.points[frame.point_ids]} == expected["seen"]
        assert frame.sequence == frame.name.split("/")[0]
        assert frame.image == tmp_path.resolve() / "images" / frame.name
    # --test-every 8: every 8th image in name order is a test image, the 1st and the 9th.
    scene = load_scene(tmp_path, test_every=8)
    assert [f.name for f in scene.split("test")] == [sorted(NAMES)[0], sorted(NAMES)[8]]
    assert len(scene.frames) == len(NAMES)


def test_intrinsics_from_pinhole_family_only(tmp_path: Path) -> None:
    reconstruction, _ = _build(np.random.default_rng(1))
    reconstruction.write_binary(str(tmp_path))
    scene = load_scene(tmp_path, require_images=False)
    by_camera = {NAMES.index(f.name) % 3: f.intrinsics for f in scene.frames}
    pinhole, radial, fisheye = by_camera[0], by_camera[1], by_camera[2]
    assert pinhole is not None and radial is not None and fisheye is None
    assert (pinhole.width, pinhole.height) == (64, 48)
    assert (pinhole.fx, pinhole.fy, pinhole.cx, pinhole.cy) == (500, 510, 32, 24)
    assert (radial.fx, radial.fy, radial.cx, radial.cy) == (400, 400, 30, 20)


def test_split_lists_and_options(tmp_path: Path) -> None:
    reconstruction, _ = _build(np.random.default_rng(2))
    (tmp_path / "sparse").mkdir()
    reconstruction.write_text(str(tmp_path / "sparse"))
    (tmp_path / "test.txt").write_text("seqB/img03.png\n\nseqA/img01.png\n")
    scene = load_scene(tmp_path, require_images=False)
    assert [f.name for f in scene.split("test")] == ["seqA/img01.png", "seqB/img03.png"]
    assert len(scene.split("train")) == 8
    # Both lists beside the model win over the root's; they must list every registered image.
    (tmp_path / "sparse" / "train.txt").write_text("seqA/img00.png\nseqA/img02.png\n")
    (tmp_path / "sparse" / "test.txt").write_text("seqB/img04.png\n")
    with pytest.raises(DatasetError, match=r"'seqA/img01\.png' is in neither train\.txt"):
        load_scene(tmp_path, require_images=False)
    train = [n for n in sorted(NAMES) if n != "seqB/img04.png"]
    (tmp_path / "sparse" / "train.txt").write_text("\n".join(train) + "\n")
    scene = load_scene(tmp_path, require_images=False)
    assert [f.name for f in scene.split("train")] == train
    assert [f.name for f in scene.split("test")] == ["seqB/img04.png"]
    for f in ("train.txt", "test.txt"):
        (tmp_path / "sparse" / f).unlink()
    (tmp_path / "test.txt").unlink()
    scene = load_scene(tmp_path, require_images=False, test_every=3)
    assert len(scene.split("test")) == 4  # names 0, 3, 6, 9
    # A separate image folder, relative to the dataset folder.
    _images(tmp_path)
    (tmp_path / "images").rename(tmp_path / "photos")
    scene = load_scene(tmp_path, images="photos", split="train")
    assert all(f.image.is_file() and f.image.parent.parent.name == "photos" for f in scene.frames)


@given(st.lists(st.integers(1, 40), min_size=1, max_size=5))
def test_default_split_holds_out_whole_stretches(lengths: list[int]) -> None:
    sequences = {f"s{k}/f{i:03d}": f"s{k}" for k, n in enumerate(lengths) for i in range(n)}
    roles = held_out_stretches(sequences)
    assert set(roles) == set(sequences)
    for k, n in enumerate(lengths):
        order = [roles[f"s{k}/f{i:03d}"] for i in range(n)]
        if len(lengths) >= 3:  # whole sequences
            assert len(set(order)) == 1
            continue
        tests = [i for i, role in enumerate(order) if role == "test"]
        trains = [i for i, role in enumerate(order) if role == "train"]
        if n >= 3:  # room for a training frame, a gap and a test frame
            assert tests and tests == list(range(tests[0], n)) and trains
            assert max(trains) < tests[0] - 1  # a gap between them: never neighbours
        else:
            assert not tests
    if len(lengths) >= 3:
        held = {sequences[n] for n, role in roles.items() if role == "test"}
        assert held == {f"s{k}" for k in range(len(lengths))[-max(1, round(0.15 * len(lengths))) :]}


@given(st.lists(st.integers(1, 40), min_size=1, max_size=5), st.integers(1, 30),
       st.sampled_from([None, 2, 5]))  # fmt: skip
def test_synthetic_images_take_no_part_in_the_split(
    lengths: list[int], synthesised: int, test_every: int | None
) -> None:
    """The images of augment's sequences are training images, and the captured images get the
    roles they have without them (whatever their names sort like)."""
    captured = {f"s{k}/f{i:03d}": f"s{k}" for k, n in enumerate(lengths) for i in range(n)}
    added = {f"{seq}/f{i:03d}": seq for i in range(synthesised) for seq in ("a-syn", "z-syn")}
    sequences = captured | added
    synthetic = synthetic_names(sequences, {"a-syn", "z-syn"})
    assert synthetic == set(added)
    problems = Problems(strict=True)
    roles = chosen_split(sequences, None, None, test_every, problems, synthetic)
    assert roles == chosen_split(captured, None, None, test_every, problems) | dict.fromkeys(
        added, "train"
    )


def test_test_list_and_scale(tmp_path: Path) -> None:
    reconstruction, truth = _build(np.random.default_rng(3))
    reconstruction.write_binary(str(tmp_path))
    points = np.array([p.xyz for _, p in sorted(reconstruction.points3D.items())])
    (tmp_path / "mine.txt").write_text("seqB/img02.png\n\nseqA/img04.png\n")
    scene = load_scene(tmp_path, require_images=False, test_list=tmp_path / "mine.txt")
    assert [f.name for f in scene.split("test")] == ["seqA/img04.png", "seqB/img02.png"]
    assert len(scene.frames) == len(NAMES) and scene.position_unit == "model units"
    (tmp_path / "mine.txt").write_text("seqA/img04.png\nseqC/x.png\n")
    with pytest.raises(DatasetError, match=r"mine\.txt:2: image 'seqC/x\.png' is not a posed"):
        load_scene(tmp_path, require_images=False, test_list=tmp_path / "mine.txt")
    # --scale multiplies the centres and the points (pycolmap's model is the oracle).
    scaled = load_scene(tmp_path, require_images=False, scale=2.5)
    assert scaled.position_unit == "m"
    np.testing.assert_allclose(scaled.points, points * 2.5, rtol=0, atol=1e-12)
    for frame in scaled.frames:
        np.testing.assert_allclose(frame.centre, truth[frame.name]["centre"] * 2.5, atol=1e-9)
        np.testing.assert_allclose(frame.quaternion, truth[frame.name]["q"], atol=1e-9)
    # --scale-from: two known distances of 3x the model's give a scale of 3.
    a, b, c = (truth[n]["centre"] for n in ("seqA/img00.png", "seqB/img01.png", "seqA/img02.png"))
    lines = [
        "# tape-measured distances between camera centres",
        f"seqA/img00.png seqB/img01.png {3 * float(np.linalg.norm(a - b))!r}",
        f"seqA/img02.png seqA/img00.png {3 * float(np.linalg.norm(c - a))!r}",
    ]
    (tmp_path / "scale.txt").write_text("\n".join(lines) + "\n")
    from_file = load_scene(tmp_path, require_images=False, scale_from=tmp_path / "scale.txt")
    np.testing.assert_allclose(from_file.points, points * 3, rtol=1e-12, atol=1e-12)
    for frame in from_file.frames:
        np.testing.assert_allclose(frame.centre, truth[frame.name]["centre"] * 3, atol=1e-9)
    (tmp_path / "scale.txt").write_text(lines[1] + "\nseqA/img00.png nowhere.png 2\n")
    with pytest.raises(DatasetError, match=r"scale\.txt:2: image 'nowhere\.png' is not a frame"):
        load_scene(tmp_path, require_images=False, scale_from=tmp_path / "scale.txt")
    (tmp_path / "scale.txt").write_text(lines[1] + "\nseqA/img00.png seqA/img02.png 1e9\n")
    report = check_dataset(tmp_path, require_images=False, scale_from=tmp_path / "scale.txt")
    assert report.ok and "2 line(s) disagree by more than 5%" in report.notes[-1]
    with pytest.raises(InputError, match="--scale and --scale-from both"):
        load_scene(tmp_path, scale=2.0, scale_from=tmp_path / "scale.txt")
    with pytest.raises(InputError, match="--scale must be positive"):
        load_scene(tmp_path, scale=0.0)


def test_metric_formats_refuse_a_scale(tmp_path: Path) -> None:
    root = builders.cambridge(tmp_path / "scene")
    with pytest.raises(InputError, match="--scale: the cambridge format is in metres already"):
        load_scene(root, scale=2.0)
    with pytest.raises(InputError, match=r"unknown option\(s\) for the cambridge format: --images"):
        load_scene(root, images="photos")
