"""7-Scenes: the real stairs pose files and depth maps of tests/data against hand
computations, the depth-point cache, and small hand-written scenes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from builders import STAIRS
from PIL import Image
from scipy.spatial.transform import Rotation

from geoposenet.readers import detect_format, load_scene, sevenscenes


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))


def _hand_pose(path: Path) -> list[list[float]]:
    """The oracle: the 4x4 matrix read with plain string handling."""
    text = path.read_bytes().decode("ascii").replace("\r", "")
    return [[float(v) for v in row.split()] for row in text.split("\n") if row.strip()]


def test_real_pose_files_give_the_hand_computed_centres() -> None:
    raw = (STAIRS / "seq-01" / "frame-000000.pose.txt").read_bytes()
    assert b"\r\n" in raw and b"\t" in raw and b"e-001" in raw and raw.startswith(b"  ")
    assert detect_format(STAIRS) == "7scenes"
    scene = load_scene(STAIRS)
    frames = {f.name: f for f in scene.frames}
    assert len(frames) == 18  # 3 frames in each of seq-01..06
    # From the file text: the last column of seq-01/frame-000000 is the camera centre.
    first = frames["seq-01/frame-000000.color.jpg"]
    assert np.array_equal(first.centre, [-1.4903377, -0.49737796, -0.054694783])
    for name in ("seq-01/frame-000000", "seq-04/frame-000002", "seq-06/frame-000001"):
        matrix = _hand_pose(STAIRS / f"{name}.pose.txt")
        frame = frames[f"{name}.color.jpg"]
        assert frame.centre.tolist() == [matrix[0][3], matrix[1][3], matrix[2][3]]
        # world -> camera = R^T, against scipy's nearest rotation of the file's 3x3
        r_c2w = np.array([row[:3] for row in matrix[:3]])
        expected = Rotation.from_matrix(r_c2w).inv().as_quat(scalar_first=True)
        expected *= np.sign(expected[0])
        assert np.allclose(frame.quaternion, expected, atol=1e-4)


def test_splits_sequences_and_jpg_fallback() -> None:
    scene = load_scene(STAIRS)
    train, test = scene.split("train"), scene.split("test")
    assert sorted({f.sequence for f in train}) == ["seq-02", "seq-03", "seq-05", "seq-06"]
    assert sorted({f.sequence for f in test}) == ["seq-01", "seq-04"]
    assert all(f.image.name.endswith(".color.jpg") and f.image.is_file() for f in scene.frames)
    # seq-05/06 have no depth maps: no points; the others get 512 each.
    counts = {f.name: f.point_ids.size for f in scene.frames}
    assert all(counts[n] == (0 if n.startswith(("seq-05", "seq-06")) else 512) for n in counts)
    assert len(scene.points) == 12 * 512
    assert len(load_scene(STAIRS, split="test").frames) == 6


def test_backprojected_points_match_a_hand_computation() -> None:
    # With more points per frame than pixels, every valid pixel is used, in raster order.
    scene = load_scene(STAIRS, points_per_frame=10**6, cache=False)
    for name in ("seq-01/frame-000000", "seq-03/frame-000002"):
        frame = next(f for f in scene.frames if f.name == f"{name}.color.jpg")
        depth = np.array(
            Image.open(STAIRS / f"{name}.depth.png")
        )  # decoded by PIL, not torchvision
        valid = (depth > 0) & (depth < 65535)
        points = scene.points[frame.point_ids]
        assert len(points) == valid.sum()
        pose = _hand_pose(STAIRS / f"{name}.pose.txt")
        for u, v in ((320, 240), (600, 400), (500, 100), (50, 300)):
            assert valid[v, u]
            z = depth[v, u] / 1000.0
            cam = [(u - 320) * z / 585, (v - 240) * z / 585, z]
            world = [sum(pose[i][j] * cam[j] for j in range(3)) + pose[i][3] for i in range(3)]
            index = int(valid.reshape(-1)[: v * 640 + u].sum())
            assert np.allclose(points[index], world, rtol=0, atol=1e-12)


def test_subsample_is_seeded_and_inside_the_full_set() -> None:
    full = load_scene(STAIRS, points_per_frame=10**6, cache=False)
    a = load_scene(STAIRS, points_per_frame=50, seed=3, cache=False)
    b = load_scene(STAIRS, points_per_frame=50, seed=3, cache=False)
    c = load_scene(STAIRS, points_per_frame=50, seed=4, cache=False)
    assert np.array_equal(a.points, b.points) and not np.array_equal(a.points, c.points)
    frame_full, frame_a = full.frames[0], a.frames[0]
    all_points = {tuple(p) for p in full.points[frame_full.point_ids]}
    assert all(tuple(p) in all_points for p in a.points[frame_a.point_ids])
    assert len(load_scene(STAIRS, points_per_frame=0).points) == 0


def _copy_stairs(dest: Path) -> Path:
    shutil.copytree(STAIRS, dest)
    return dest


def test_depth_points_are_cached_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_stairs(tmp_path / "stairs")
    first = load_scene(root)
    assert len(list((tmp_path / "cache" / "7scenes-points").glob("*.npz"))) == 1

    def fail(*args: object) -> None:
        raise AssertionError("depth decoded despite the cache")

    monkeypatch.setattr(sevenscenes, "decode_depth", fail)
    second = load_scene(root)
    assert np.array_equal(first.points, second.points)
    assert all(
        np.array_equal(a.point_ids, b.point_ids)
        for a, b in zip(first.frames, second.frames, strict=True)
    )
    monkeypatch.undo()
    monkeypatch.setenv("GEOPOSENET_CACHE", str(tmp_path / "cache"))
    # A damaged entry is recomputed, not trusted.
    (entry,) = (tmp_path / "cache" / "7scenes-points").glob("*.npz")
    entry.write_bytes(b"PK\x03\x04 truncated")
    assert np.array_equal(load_scene(root).points, first.points)
    # Changing a depth map changes the key: the points are computed again.
    depth_path = root / "seq-02" / "frame-000001.depth.png"
    depth = np.array(Image.open(depth_path))
    Image.fromarray(np.where(depth > 0, depth + 100, 0).astype(np.uint16)).save(depth_path)
    third = load_scene(root)
    assert len(list((tmp_path / "cache" / "7scenes-points").glob("*.npz"))) == 2
    assert not np.array_equal(first.points, third.points)


def test_png_colour_images_are_preferred(tmp_path: Path) -> None:
    root = _copy_stairs(tmp_path / "stairs")
    Image.new("RGB", (640, 480)).save(root / "seq-02" / "frame-000000.color.png")
    scene = load_scene(root, points_per_frame=0)
    names = [f.name for f in scene.frames if f.sequence == "seq-02"]
    assert names[0] == "seq-02/frame-000000.color.png"
    assert names[1] == "seq-02/frame-000001.color.jpg"


def test_corrupt_depth_png_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """Damaged compressed data in a depth map: torchvision's PNG decoder crashed the process on
    this (segfault); the reader reports the file instead."""
    from geoposenet.readers import check_dataset

    root = tmp_path / "stairs"
    shutil.copytree(STAIRS, root)
    depth = root / "seq-01" / "frame-000000.depth.png"
    data = bytearray(depth.read_bytes())
    for offset in (40, 400, 4000):
        data[data.index(b"IDAT") + offset] ^= 0xFF
    depth.write_bytes(bytes(data))
    problems = check_dataset(root).problems
    assert any(str(depth) in p and "cannot decode depth PNG" in p for p in problems), problems
