"""Predicted poses in the field's formats (geoposenet.poseformats): the colmap line of a frame is
pycolmap's own cam_from_world of that image; csv and json carry the same numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.errors import InputError
from geoposenet.poseformats import CSV_CONVENTION, CSV_HEADER, format_poses, poses_colmap
from geoposenet.readers import load_scene


def colmap_scene(root: Path, count: int = 5) -> pycolmap.Reconstruction:
    """A COLMAP dataset of `count` images with random, far-from-identity poses (text model)."""
    rng = np.random.default_rng(7)
    reconstruction = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 100.0, 64, 48)
    reconstruction.add_camera_with_trivial_rig(camera)
    (root / "images").mkdir(parents=True)
    for i in range(count):
        xyzw = Rotation.random(random_state=i).as_quat()  # scipy is xyzw, as is pycolmap
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(xyzw), rng.normal(scale=20.0, size=3))
        image = pycolmap.Image(name=f"im{i}.png", camera_id=1, image_id=i + 1)
        reconstruction.add_image_with_trivial_frame(image, pose)
        Image.new("RGB", (64, 48), (40 * i, 80, 120)).save(root / "images" / f"im{i}.png")
    (root / "sparse").mkdir()
    reconstruction.write_text(str(root / "sparse"))
    return reconstruction


def test_colmap_line_is_pycolmaps_cam_from_world(tmp_path: Path) -> None:
    reconstruction = colmap_scene(tmp_path)
    # --test-every keeps every image (the default split leaves a gap out of both splits)
    frames = load_scene(tmp_path, format="colmap", test_every=2).frames
    names = [f.name for f in frames]
    text = poses_colmap(
        names, np.stack([f.centre for f in frames]), np.stack([f.quaternion for f in frames])
    )
    by_name = {image.name: image for image in reconstruction.images.values()}
    lines = text.splitlines()
    assert len(lines) == len(frames) == 5
    for line in lines:
        name, *numbers = line.split(" ")
        q, t = np.array(numbers[:4], dtype=float), np.array(numbers[4:], dtype=float)
        expected = by_name[name].cam_from_world()
        x, y, z, w = expected.rotation.quat  # pycolmap's order is xyzw
        wxyz = np.array([w, x, y, z]) * (1 if w >= 0 else -1)
        np.testing.assert_allclose(q, wxyz, atol=1e-9, rtol=0)
        np.testing.assert_allclose(t, expected.translation, atol=1e-9, rtol=0)
        assert q[0] >= 0


def test_csv_json_and_colmap_carry_the_same_pose() -> None:
    centre = np.array([[1.5, -2.0, 3.25]])
    q = Rotation.from_euler("xyz", [10, -40, 170], degrees=True).as_quat()  # xyzw
    quaternion = np.array([[-q[3], -q[0], -q[1], -q[2]]])  # wxyz, w < 0: written canonical
    names = ["a/b.png"]
    lines = format_poses("csv", names, centre, quaternion).splitlines()
    assert lines[:2] == [CSV_CONVENTION, CSV_HEADER] and CSV_CONVENTION.startswith("#")
    row = next(csv.reader(lines[2:]))
    assert row[0] == "a/b.png" and [float(v) for v in row[1:4]] == centre[0].tolist()
    rows = json.loads(format_poses("json", names, centre, quaternion))
    assert rows == [{"image": "a/b.png", "position": centre[0].tolist(),
                     "quaternion_wxyz": quaternion[0].tolist()}]  # fmt: skip
    name, *numbers = format_poses("colmap", names, centre, quaternion).split()
    assert name == "a/b.png"
    matrix = Rotation.from_quat(q).as_matrix()  # R world -> camera; t = -R c by hand
    np.testing.assert_allclose(np.array(numbers[4:], float), -matrix @ centre[0], atol=1e-12)
    np.testing.assert_allclose(np.array(numbers[:4], float), -quaternion[0], atol=1e-15)


def test_colmap_refuses_a_name_with_spaces() -> None:
    with pytest.raises(InputError, match=r"my photo\.png"):
        poses_colmap(["my photo.png"], np.zeros((1, 3)), np.array([[1.0, 0, 0, 0]]))
