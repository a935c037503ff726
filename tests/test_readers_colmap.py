"""COLMAP: models built with pycolmap in the test, written as binary and text, read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.errors import DatasetError
from geoposenet.readers import detect_format, load_scene

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
