"""The synthetic scene end to end: formats agree through the readers, geometric truth against the
rendered depth and images, determinism, reuse of a complete render, speed of `tiny`."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geoposenet.errors import InputError
from geoposenet.geometry import project
from geoposenet.readers import load_scene
from geoposenet.scene import Frame, Scene
from geoposenet.synthetic import PRESETS, synthesize
from geoposenet.synthetic.core import MARKER, PARTIAL
from geoposenet.synthetic.room import build_room

FORMATS = ("cambridge", "7scenes", "colmap", "nerfstudio")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`tiny`, seed 0, rendered once in each format."""
    root = tmp_path_factory.mktemp("tiny")
    return {fmt: synthesize(root / fmt, preset="tiny", format=fmt, seed=0).root for fmt in FORMATS}


def _key(frame: Frame) -> tuple[int, int]:
    """(sequence number, frame number from 0) of a frame in any of the three formats."""
    seq = int(re.findall(r"\d+", frame.sequence)[-1])
    number = int(re.findall(r"\d+", Path(frame.name).name)[-1])
    offset = 0 if "frame-" in frame.name else 1  # 7-Scenes counts from 0, the others from 1
    return seq, number - offset


def _frames(scene: Scene) -> dict[tuple[int, int], Frame]:
    return {_key(f): f for f in scene.frames}


def _intrinsics() -> torch.Tensor:
    return torch.from_numpy(PRESETS["tiny"].camera.matrix())


def test_tiny_is_fast_and_reports_difficulty(tmp_path: Path) -> None:
    start = time.perf_counter()
    report = synthesize(tmp_path / "t", preset="tiny")
    assert time.perf_counter() - start < 5.0
    preset = PRESETS["tiny"]
    assert report.frames == {"train": sum(preset.train), "test": sum(preset.test)}
    saved = json.loads((tmp_path / "t" / "difficulty.json").read_text())
    assert saved["median_position_m"] == report.difficulty["median_position_m"] > 0
    assert saved["median_rotation_deg"] == report.difficulty["median_rotation_deg"] > 0
    text = report.describe()
    assert "20 train, 10 test" in text and "difficulty" in text
    assert not (tmp_path / "t" / PARTIAL).exists()


def test_formats_load_to_the_same_poses_and_points(tiny: dict[str, Path]) -> None:
    scenes = {fmt: load_scene(path, format=fmt) for fmt, path in tiny.items()}
    frames = {fmt: _frames(scene) for fmt, scene in scenes.items()}
    keys = set(frames["cambridge"])
    assert len(keys) == sum(PRESETS["tiny"].train) + sum(PRESETS["tiny"].test)
    for fmt in ("7scenes", "colmap", "nerfstudio"):
        assert set(frames[fmt]) == keys
        for key in keys:
            a, b = frames["cambridge"][key], frames[fmt][key]
            assert a.split == b.split
            np.testing.assert_allclose(a.centre, b.centre, atol=1e-6)
            np.testing.assert_allclose(a.quaternion, b.quaternion, atol=1e-6)
    # nerfstudio's OpenGL camera-to-world matrices (JSON floats) and COLMAP's cam_from_world
    # (binary doubles) are both exact: the same poses to 1e-9.
    for key in keys:
        a, b = frames["colmap"][key], frames["nerfstudio"][key]
        np.testing.assert_allclose(a.centre, b.centre, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.quaternion, b.quaternion, rtol=0, atol=1e-9)
    # nerfstudio's points per frame are the PLY points projecting into the image (no occlusion
    # test), COLMAP's the observed ones: the same order of magnitude, never fewer.
    colmap_seen = np.array([frames["colmap"][k].point_ids.size for k in sorted(keys)])
    nerf_seen = np.array([frames["nerfstudio"][k].point_ids.size for k in sorted(keys)])
    assert (nerf_seen >= colmap_seen).all() and np.median(nerf_seen / colmap_seen) < 3
    # Cambridge (NVM) and COLMAP carry the renderer's points: the same ones in every frame.
    seen = 0
    for key in keys:
        a = scenes["cambridge"].points[frames["cambridge"][key].point_ids]
        b = scenes["colmap"].points[frames["colmap"][key].point_ids]
        assert len(a) == len(b)
        np.testing.assert_allclose(np.sort(a, axis=0), np.sort(b, axis=0), atol=1e-6)
        seen += len(a)
    assert seen > 10 * len(keys)
    # 7-Scenes points are depth back-projections: they must lie on the room's surfaces.
    faces = build_room(0, PRESETS["tiny"].texel).faces
    points = scenes["7scenes"].points
    assert len(points) > 1000
    gap = np.maximum(
        np.maximum(faces.lo[None] - points[:, None], points[:, None] - faces.hi[None]), 0
    )
    distance = np.linalg.norm(gap, axis=-1).min(axis=1)
    assert np.quantile(distance, 0.99) < 0.01


def test_visible_points_land_on_the_rendered_surface(tiny: dict[str, Path]) -> None:
    """Project each frame's visible points with its written pose: the NVM measurement, the
    7-Scenes depth map (rendered by an independent 640x480 depth camera) and the image agree."""
    scene = load_scene(tiny["cambridge"], format="cambridge")
    depth_frames = _frames(load_scene(tiny["7scenes"], format="7scenes", points_per_frame=0))
    depth_k = torch.tensor([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]], dtype=torch.float64)
    errors = []
    for frame in scene.frames:
        points = torch.from_numpy(scene.points[frame.point_ids])
        centre, q = torch.from_numpy(frame.centre), torch.from_numpy(frame.quaternion)
        uv, z = project(points, centre, q, _intrinsics())
        assert (z > 0).all()
        camera = PRESETS["tiny"].camera
        assert ((uv >= 0) & (uv < torch.tensor([camera.width, camera.height]))).all()
        depth_frame = depth_frames[_key(frame)]
        depth_png = depth_frame.image.with_name(
            depth_frame.image.name.replace(".color.png", ".depth.png")
        )
        depth = np.asarray(Image.open(depth_png)).astype(np.float64) / 1000
        uv_d, z_d = project(points, centre, q, depth_k)
        cols = uv_d[:, 0].round().long().clamp(0, 639).numpy()
        rows = uv_d[:, 1].round().long().clamp(0, 479).numpy()
        errors.append(np.abs(depth[rows, cols] - z_d.numpy()))
    errors_m = np.concatenate(errors)
    assert np.median(errors_m) < 0.003
    assert np.quantile(errors_m, 0.95) < 0.03


def test_nvm_measurements_are_the_projections(tiny: dict[str, Path]) -> None:
    lines = (tiny["cambridge"] / "reconstruction.nvm").read_text().splitlines()
    n_cams = int(lines[2])
    cameras = [line.split() for line in lines[3 : 3 + n_cams]]
    n_points = int(lines[4 + n_cams])
    camera = PRESETS["tiny"].camera
    checked = 0
    for line in lines[5 + n_cams : 5 + n_cams + n_points]:
        values = line.split()
        point = torch.tensor([[float(v) for v in values[:3]]], dtype=torch.float64)
        for k in range(int(values[6])):
            cam, _, x, y = values[7 + 4 * k : 11 + 4 * k]
            q = torch.tensor([float(v) for v in cameras[int(cam)][2:6]], dtype=torch.float64)
            c = torch.tensor([float(v) for v in cameras[int(cam)][6:9]], dtype=torch.float64)
            uv, _ = project(point, c, q, _intrinsics())
            expected = uv[0].numpy() - [camera.cx, camera.cy]
            np.testing.assert_allclose([float(x), float(y)], expected, atol=1e-3)
            checked += 1
    assert checked > 100


def _bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample (H, W, 3) image at continuous (k, 2) coordinates (pixel centres at +0.5)."""
    h, w = image.shape[:2]
    x = np.clip(uv[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(uv[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(int), y.astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x0 + 1] * fx
    bottom = image[y0 + 1, x0] * (1 - fx) + image[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def test_a_point_has_the_same_colour_in_two_frames(tiny: dict[str, Path]) -> None:
    scene = load_scene(tiny["cambridge"], format="cambridge")
    matched, shuffled = [], []
    rng = np.random.default_rng(0)
    for a, b in itertools.pairwise(scene.frames):
        if a.sequence != b.sequence:
            continue
        common = np.intersect1d(a.point_ids, b.point_ids)
        if len(common) < 5:
            continue
        colours = []
        for frame in (a, b):
            image = np.asarray(Image.open(frame.image), dtype=np.float64) / 255
            uv, _ = project(
                torch.from_numpy(scene.points[common]),
                torch.from_numpy(frame.centre),
                torch.from_numpy(frame.quaternion),
                _intrinsics(),
            )
            colours.append(_bilinear(image, uv.numpy()))
        matched.append(np.abs(colours[0] - colours[1]).mean(axis=1))
        shuffled.append(np.abs(colours[0] - colours[1][rng.permutation(len(common))]).mean(axis=1))
    assert len(matched) >= 5
    assert np.median(np.concatenate(matched)) < 0.06
    assert np.median(np.concatenate(matched)) < 0.5 * np.median(np.concatenate(shuffled))


def test_same_seed_gives_identical_files(tiny: dict[str, Path], tmp_path: Path) -> None:
    again = synthesize(tmp_path / "again", preset="tiny", format="cambridge", seed=0).root
    first = sorted(
        p.relative_to(tiny["cambridge"]) for p in tiny["cambridge"].rglob("*") if p.is_file()
    )
    second = sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert first == second
    for rel in first:
        assert (tiny["cambridge"] / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = synthesize(tmp_path / "other", preset="tiny", format="cambridge", seed=1).root
    assert (other / "dataset_train.txt").read_bytes() != (again / "dataset_train.txt").read_bytes()


def test_colmap_and_sevenscenes_are_deterministic(tiny: dict[str, Path], tmp_path: Path) -> None:
    for fmt, names in (
        ("colmap", ["sparse/0/images.bin", "sparse/0/points3D.bin"]),
        ("nerfstudio", ["transforms.json", "sparse_pc.ply"]),
        ("7scenes", ["seq-01/frame-000003.depth.png", "seq-03/frame-000002.pose.txt"]),
    ):
        again = synthesize(tmp_path / fmt, preset="tiny", format=fmt, seed=0).root
        for name in names:
            assert (again / name).read_bytes() == (tiny[fmt] / name).read_bytes(), name


def test_complete_render_is_reused_and_partial_one_redone(tmp_path: Path) -> None:
    out = tmp_path / "scene"
    synthesize(out, preset="tiny")
    stamp = (out / "seq1" / "frame00001.png").stat().st_mtime_ns
    again = synthesize(out, preset="tiny")
    assert again.reused and again.frames["train"] == 20
    assert (out / "seq1" / "frame00001.png").stat().st_mtime_ns == stamp
    # A different format or seed re-renders; so does a folder a killed render left behind.
    assert not synthesize(out, preset="tiny", seed=3).reused
    (out / MARKER).unlink()
    (out / PARTIAL).write_text("{}")
    assert not synthesize(out, preset="tiny", seed=3).reused
    assert json.loads((out / MARKER).read_text())["seed"] == 3


def test_refuses_a_foreign_folder_and_bad_names(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(InputError):
        synthesize(tmp_path, preset="tiny")
    assert (tmp_path / "mine.txt").exists()
    with pytest.raises(InputError):
        synthesize(tmp_path / "x", preset="huge")
    with pytest.raises(InputError):
        synthesize(tmp_path / "x", preset="tiny", format="nerf")
