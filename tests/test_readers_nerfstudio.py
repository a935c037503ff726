"""nerfstudio transforms.json: poses against hand-computed values and scipy, intrinsics (shared,
per frame, downscaled folders), frame order, PLY points (ASCII and binary), splits, problems."""

from __future__ import annotations

import json
from pathlib import Path

import builders
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.errors import DatasetError
from geoposenet.readers import check_dataset, detect_format, load_scene
from geoposenet.readers._common import Problems
from geoposenet.readers._ply import read_ply_points

OPENGL_FLIP = np.diag([1.0, -1.0, -1.0])


def _write(root: Path, content: dict, sizes: dict[str, tuple[int, int]] | None = None) -> Path:
    """transforms.json with `content` and a 64x48 image (or sizes[file_path]) per frame."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "transforms.json").write_text(json.dumps(content))
    for frame in content["frames"]:
        path = root / frame["file_path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (sizes or {}).get(frame["file_path"], (64, 48))).save(path)
    return root


def _camera_to_world_opengl(centre: np.ndarray, rotation: Rotation) -> list[list[float]]:
    """The OpenGL camera-to-world 4x4 of a camera with this centre and world -> camera (OpenCV
    axes) rotation."""
    matrix = np.eye(4)
    matrix[:3, :3] = rotation.as_matrix().T @ OPENGL_FLIP
    matrix[:3, 3] = centre
    return matrix.tolist()


def test_camera_looking_along_world_x(tmp_path: Path) -> None:
    """A camera at (1, 2, 3) looking along world +x with world +z up, written by hand in the
    OpenGL convention: its columns are camera x (right) = -y, y (up) = +z, z (back) = -x."""
    opengl = [[0, 0, -1, 1], [-1, 0, 0, 2], [0, 1, 0, 3], [0, 0, 0, 1]]
    content = {"fl_x": 50, "w": 64, "h": 48, "frames": [
        {"file_path": "a.png", "transform_matrix": opengl},
        {"file_path": "b.png", "transform_matrix": np.eye(4).tolist()},
    ]}  # fmt: skip
    root = _write(tmp_path / "capture", content)
    assert detect_format(root) == "nerfstudio"
    frame = {f.name: f for f in load_scene(root, test_every=2).frames}["a.png"]
    np.testing.assert_array_equal(frame.centre, [1, 2, 3])
    # OpenCV camera axes in world coordinates: x right = -y, y down = -z, z forward = +x.
    expected = Rotation.from_matrix([[0, -1, 0], [0, 0, -1], [1, 0, 0]]).as_quat(scalar_first=True)
    np.testing.assert_allclose(frame.quaternion, expected * np.sign(expected[0]), atol=1e-12)
    # A world point 2 m ahead lands on the optical axis at depth 2.
    in_camera = Rotation.from_quat(frame.quaternion, scalar_first=True).apply(
        [3, 2, 3] - frame.centre
    )
    np.testing.assert_allclose(in_camera, [0, 0, 2], atol=1e-12)


@given(st.integers(0, 2**31 - 1))
def test_random_poses_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rotation, centre = Rotation.random(random_state=seed), rng.normal(size=3) * 10
    problems = Problems(strict=True)
    from geoposenet.readers.nerfstudio import _pose

    pose = _pose(np.array(_camera_to_world_opengl(centre, rotation)), "m", Path("t"), problems)
    assert pose is not None
    q = rotation.as_quat(scalar_first=True)
    np.testing.assert_allclose(pose[0], centre, atol=1e-12)
    np.testing.assert_allclose(pose[1], q * np.sign(q[0]), atol=1e-9)


def test_frames_out_of_order_and_intrinsics(tmp_path: Path) -> None:
    frames = [
        {"file_path": f"images/f{i}.png",
         "transform_matrix": _camera_to_world_opengl(np.array([i, 0.0, 0]), Rotation.identity())}
        for i in (3, 1, 2, 0)
    ]  # fmt: skip
    frames[0].update({"fl_x": 70.0, "cx": 30.0})  # per-frame intrinsics win over the shared
    content = {"camera_model": "OPENCV", "fl_x": 50.0, "fl_y": 52.0, "cx": 32.0, "cy": 24.0,
               "w": 64, "h": 48, "k1": 0.01, "p1": 0.0, "frames": frames}  # fmt: skip
    root = _write(tmp_path / "capture", content)
    scene = load_scene(root, test_every=4)
    assert [f.name for f in scene.frames] == [f"images/f{i}.png" for i in range(4)]
    assert [f.centre[0] for f in scene.frames] == [0, 1, 2, 3]
    assert [f.split for f in scene.frames] == ["test", "train", "train", "train"]
    shared, own = scene.frames[0].intrinsics, scene.frames[3].intrinsics
    assert shared is not None and own is not None
    assert (shared.width, shared.height, shared.fx, shared.fy, shared.cx, shared.cy) == (
        64, 48, 50, 52, 32, 24,
    )  # fmt: skip
    assert (own.fx, own.fy, own.cx, own.cy) == (70, 52, 30, 24)
    assert scene.frames[0].sequence == "images"
    content["camera_model"] = "OPENCV_FISHEYE"  # not a pinhole: no intrinsics, as for COLMAP
    (root / "transforms.json").write_text(json.dumps(content))
    assert all(f.intrinsics is None for f in load_scene(root, test_every=4).frames)


def test_downscaled_images_scale_the_intrinsics(tmp_path: Path) -> None:
    root = builders.nerfstudio(tmp_path / "capture")
    (root / "images_4").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 12)).save(root / "images_4" / f"im{i}.png")
    full = load_scene(root).frames[0].intrinsics
    quarter = load_scene(root, images="images_4").frames[0]
    assert quarter.image == root.resolve() / "images_4" / "im0.png"
    assert quarter.name == "images/im0.png"
    assert full is not None and quarter.intrinsics is not None
    k = quarter.intrinsics
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.cy) == (16, 12, 15, 15, 8, 6)
    assert (full.width, full.fx, full.cx) == (64, 60, 32)
    # An image of another shape is no downscaled copy: a problem naming the frame.
    Image.new("RGB", (16, 16)).save(root / "images_4" / "im1.png")
    with pytest.raises(DatasetError, match=r"frames\[1\]: image .*im1.png is 16x16, not 64x48"):
        load_scene(root, images="images_4")


def _binary_ply(points: np.ndarray) -> bytes:
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(points)}\n"
        "property float x\nproperty float y\nproperty float z\nproperty uchar red\n"
        "property uchar green\nproperty uchar blue\nelement face 0\n"
        "property list uchar int vertex_indices\nend_header\n"
    )
    table = np.zeros(len(points), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                         ("r", "u1"), ("g", "u1"), ("b", "u1")])  # fmt: skip
    for k, axis in enumerate("xyz"):
        table[axis] = points[:, k]
    return header.encode() + table.tobytes()


def test_ply_ascii_and_binary_give_the_points_each_frame_sees(tmp_path: Path) -> None:
    root = builders.nerfstudio(tmp_path / "capture")
    ascii_scene = load_scene(root)
    points = np.array([[float(v) for v in row.split()[:3]] for row in builders.NERFSTUDIO_POINTS])
    np.testing.assert_allclose(ascii_scene.points, points, atol=1e-12)
    (root / "points.ply").write_bytes(_binary_ply(points))
    binary_scene = load_scene(root)
    np.testing.assert_allclose(binary_scene.points, points, atol=1e-6)
    # Cameras at x = 0, 1, 2 looking along -z with f = 60 on a 64x48 image: point 0 (0, 0, -2)
    # projects at u = 32 + 60 (0 - x) / 2 = 32, 2, -28: outside for the camera at x = 2;
    # point 1 (1, 0.5, -4) at u = 32 + 15 (1 - x), v = 24 - 60 * 0.5 / 4 (y up in the world
    # is up in the image); point 2 (2, -0.5, -6) at u = 32 + 10 (2 - x), v = 29: all inside.
    # A point behind the cameras (z = +1) is never seen.
    for scene in (ascii_scene, binary_scene):
        seen = {f.name: f.point_ids.tolist() for f in scene.frames}
        assert seen == {"images/im0.png": [0, 1, 2], "images/im1.png": [0, 1, 2],
                        "images/im2.png": [1, 2]}  # fmt: skip
    rows = [*builders.NERFSTUDIO_POINTS, "0 0 1 0 0 0"]
    (root / "points.ply").write_text(builders.ply_ascii(rows))
    assert all(3 not in f.point_ids for f in load_scene(root).frames)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nend_header\n", "binary_big"),
        (b"ply\nformat ascii 1.0\nelement face 1\nelement vertex 1\nend_header\n", "first element"),
        (b"ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n1\n", "x, y, z"),
        (b"solid\n", "not a PLY file"),
        (builders.ply_ascii(["1 2 3 0 0 0", "4 5"]).encode(), "vertex 1: expected 6 numbers"),
        (builders.ply_ascii(["1 2 nan 0 0 0"]).encode(), "non-finite"),
        (_binary_ply(np.ones((4, 3)))[:-10], "ends after 3 of 4 vertices"),
    ],
)
def test_ply_problems(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "p.ply"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=words):
        read_ply_points(path, Problems(strict=True))


def test_splits(tmp_path: Path) -> None:
    root = builders.nerfstudio(tmp_path / "capture")
    scene = load_scene(root)  # train_filenames / test_filenames
    assert [f.name for f in scene.split("test")] == ["images/im2.png"]
    content = builders.nerfstudio_transforms()
    content["val_filenames"] = content.pop("test_filenames")  # evaluated by nerfstudio: test
    (root / "transforms.json").write_text(json.dumps(content))
    assert [f.name for f in load_scene(root).split("test")] == ["images/im2.png"]
    (tmp_path / "test.txt").write_text("images/im0.png\n")  # the flags win over the keys
    assert [f.name for f in load_scene(root, test_list=tmp_path / "test.txt").split("test")] == [
        "images/im0.png"
    ]
    assert len(load_scene(root, test_every=1).split("test")) == 3
    del content["train_filenames"], content["val_filenames"]
    (root / "transforms.json").write_text(json.dumps(content))
    report = check_dataset(root)  # no split keys: the last image is test, the one before a gap
    assert report.ok
    assert [(f.name, f.split) for f in report.scene.frames] == [
        ("images/im0.png", "train"), ("images/im2.png", "test"),
    ]  # fmt: skip
    assert "1 posed image(s) in the gap" in report.notes[0] and "images/im1.png" in report.notes[0]


def test_check_names_file_and_key(tmp_path: Path) -> None:
    content = builders.nerfstudio_transforms()
    content["frames"][1]["transform_matrix"] = [[1, 0, 0], [0, 1, 0]]
    content["frames"][2]["transform_matrix"][0][0] = 2.0
    content["test_filenames"] = ["images/im9.png"]
    content["applied_transform"] = [[1, 0, 0]]
    root = builders.nerfstudio(tmp_path / "capture", content)
    (root / "images" / "im0.png").unlink()
    report = check_dataset(root)
    path = root.resolve() / "transforms.json"
    assert report.problems[:6] == [
        f"{path}: applied_transform: not a 3x4 or 4x4 matrix of numbers",
        f"{path}: image {root.resolve()}/images/im0.png not found",
        f"{path}: frames[1].transform_matrix: not a 4x4 matrix of numbers",
        f"{path}: frames[2].transform_matrix: the 3x3 part is not a rotation "
        "(|R^T R - I| = 3, det = 2)",
        f"{path}: train_filenames[1]: 'images/im1.png' is not the file_path of a frame",
        f"{path}: test_filenames[0]: 'images/im9.png' is not the file_path of a frame",
    ]
