"""The view sampler: new cameras stay out of the geometry (the built-in room's exact walls and
boxes as the oracle), within their limits, between real trajectories, reproducibly; the free-space
test sees walls; too-small free space is a clear error. Rotations are checked with scipy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation, Slerp

from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.readers import load_scene
from geoposenet.scene import Frame
from geoposenet.synthetic import PRESETS
from geoposenet.synthetic.core import ANGLE_PER_METRE as DIFFICULTY_ANGLE_PER_METRE
from geoposenet.synthetic.core import sequence_poses
from geoposenet.synthetic.room import ROOM, build_room
from geoposenet.viewsynth import sampler
from geoposenet.viewsynth.sampler import (
    BLOCKED,
    FREE,
    FreeSpace,
    Limits,
    nearest_training,
    place_views,
    sample_views,
    slerp,
)
from geoposenet.viewsynth.views import View

GRID_M = 0.05  # spacing of the surface points made from the room's exact geometry
COVER_M = GRID_M / math.sqrt(2)  # their covering radius: every surface point is this close


@pytest.fixture(scope="module")
def boxes() -> np.ndarray:
    """(B, 2, 3) the furniture boxes of the room the `tiny` preset renders."""
    return build_room(0, PRESETS["tiny"].texel).boxes


@pytest.fixture(scope="module")
def grid(boxes: np.ndarray) -> np.ndarray:
    """(M, 3) points on every face of the room and its boxes, a grid of spacing <= GRID_M."""
    out = []
    for lo, hi in [ROOM, *boxes]:
        for axis in range(3):
            u, v = [a for a in range(3) if a != axis]
            su = np.linspace(lo[u], hi[u], int(np.ceil((hi[u] - lo[u]) / GRID_M)) + 1)
            sv = np.linspace(lo[v], hi[v], int(np.ceil((hi[v] - lo[v]) / GRID_M)) + 1)
            gu, gv = np.meshgrid(su, sv, indexing="ij")
            for plane in (lo[axis], hi[axis]):
                face = np.empty((gu.size, 3))
                face[:, axis], face[:, u], face[:, v] = plane, gu.ravel(), gv.ravel()
                out.append(face)
    return np.concatenate(out)


@pytest.fixture(scope="module")
def tiny_train(tiny_scene_dir: Path) -> tuple[list[Frame], np.ndarray]:
    """The rendered `tiny` room's training frames (2 sequences) and its 800 SfM-like points."""
    scene = load_scene(tiny_scene_dir, format="cambridge")
    return scene.split("train"), scene.points


@pytest.fixture(scope="module")
def room_train() -> list[Frame]:
    """The `room` preset's 4 training sequences (1000 poses), without rendering them."""
    p = PRESETS["room"]
    frames = []
    for k, (split, centres, rotations) in enumerate(sequence_poses(p, build_room(0, 0.04), 0)):
        quats = matrix_to_quaternion_np(rotations)
        if split == "train":
            frames += [
                Frame(f"seq{k}/{i}.png", Path("unused"), c, q, f"seq{k}", "train")
                for i, (c, q) in enumerate(zip(centres, quats, strict=True))
            ]
    return frames


def geometry_distance(x: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N,) signed distance of (N, 3) points to the room's surfaces: positive inside the room
    and outside every box (exact, from the axis-aligned geometry)."""
    walls = np.minimum(x - ROOM[0], ROOM[1] - x).min(axis=1)
    out = walls
    for lo, hi in boxes:
        gap = np.maximum(lo - x, x - hi)  # > 0 along an axis where x is outside the slab
        outside = np.linalg.norm(np.maximum(gap, 0.0), axis=1)
        inside = gap.max(axis=1)  # <= 0 inside the box: minus the depth
        out = np.minimum(out, np.where(gap.max(axis=1) > 0, outside, inside))
    return out


def angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) angle of b a^T by scipy (the oracle)."""
    return np.degrees(Rotation.from_matrix(b @ np.swapaxes(a, 1, 2)).magnitude())


def frame_rotations(frames: list[Frame], index: np.ndarray) -> np.ndarray:
    """(N, 3, 3) cam_from_world of frames[index], by scipy (quaternions wxyz -> xyzw)."""
    q = np.stack([frames[i].quaternion for i in index])
    return Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()


@settings(max_examples=5)
@given(
    seed=st.integers(0, 2**16),
    clearance=st.floats(0.1, 0.35),
    shift=st.floats(0.1, 0.8),
)
def test_cameras_never_sit_in_geometry(
    tiny_train: tuple[list[Frame], np.ndarray],
    grid: np.ndarray,
    boxes: np.ndarray,
    seed: int,
    clearance: float,
    shift: float,
) -> None:
    # Promised: with points covering the surfaces within r = COVER_M, every centre is at least
    # clearance - r from every surface, and every point of the path from its source camera at
    # least clearance - step/2 - r (so that path crosses no wall or box).
    frames, points = tiny_train
    limits = Limits(max_shift_m=shift, clearance_m=clearance, max_angle_deg=20)
    free = FreeSpace(frames, points, limits, dense_points=grid)
    placed = place_views(frames, free, limits, 300, seed)
    dist = geometry_distance(placed.centre, boxes)
    assert dist.min() >= clearance - COVER_M
    sources = np.stack([frames[i].centre for i in placed.source])
    s = np.linspace(0, 1, 101)[:, None, None]
    path = sources[None] + s * (placed.centre - sources)[None]  # (101, N, 3), <= 1 cm apart
    path_dist = geometry_distance(path.reshape(-1, 3), boxes)
    assert path_dist.min() >= clearance - free.step_m / 2 - COVER_M
    assert placed.between.sum() == 150  # half of them between the two sequences


def test_limits_hold(room_train: list[Frame]) -> None:
    frames = room_train
    limits = Limits(max_shift_m=0.4, max_angle_deg=12, max_roll_deg=3, clearance_m=0.2)
    free = FreeSpace(frames, np.array([[-1.0, -1, -1], [9, 7, 4]]), limits)
    placed = place_views(frames, free, limits, 400, 3)
    jit = ~placed.between
    origin = placed.origin[jit]
    start = np.stack([frames[i].centre for i in origin])
    assert np.linalg.norm(placed.centre[jit] - start, axis=1).max() <= 0.4 + 1e-12
    turn = placed.cam_from_world[jit] @ np.swapaxes(frame_rotations(frames, origin), 1, 2)
    assert np.degrees(Rotation.from_matrix(turn).magnitude()).max() <= 12 + 1e-9
    # Roll: the twist about the optical axis (swing-twist: from the quaternion's w and z).
    xyzw = Rotation.from_matrix(turn).as_quat()
    roll = np.degrees(2 * np.arctan2(np.abs(xyzw[:, 2]), np.abs(xyzw[:, 3])))
    assert roll.max() <= 3 + 1e-9
    assert roll.max() > 2  # the limit is used, not avoided
    # The source is the nearest training pose by metres + degrees / 25.
    assert sampler.ANGLE_PER_METRE == DIFFICULTY_ANGLE_PER_METRE
    all_r = frame_rotations(frames, np.arange(len(frames)))
    for k in range(0, len(placed.source), 37):
        d = np.linalg.norm(np.stack([f.centre for f in frames]) - placed.centre[k], axis=1)
        a = angle_deg(np.repeat(placed.cam_from_world[k][None], len(frames), 0), all_r)
        assert placed.source[k] == np.argmin(d + a / 25)
    assert (nearest_training(placed.centre, placed.cam_from_world, frames) == placed.source).all()


def test_rotation_only_keeps_the_centre(tiny_train: tuple[list[Frame], np.ndarray]) -> None:
    frames, points = tiny_train
    limits = Limits(rotation_only=True, max_angle_deg=10)
    views = sample_views(frames, FreeSpace(frames, points, limits), limits, 50, 0)
    assert len(views) == 50 and all(isinstance(v, View) for v in views)
    for v in views:
        assert np.array_equal(v.centre, frames[v.source].centre)
        r = frame_rotations(frames, np.array([v.source]))
        assert angle_deg(r, v.cam_from_world[None])[0] <= 10 + 1e-9
    assert [v.source for v in views] == sorted(v.source for v in views)
    without = sample_views(frames, None, limits, 50, 0)  # no geometry needed to turn a camera
    pairs = zip(views, without, strict=True)
    assert all(np.array_equal(a.cam_from_world, b.cam_from_world) for a, b in pairs)
    with pytest.raises(ValueError, match="need a FreeSpace"):
        sample_views(frames, None, Limits(), 5, 0)


def test_between_views_lie_between_two_sequences(room_train: list[Frame]) -> None:
    frames = room_train
    limits = Limits(between=1.0, max_gap_m=1.5, max_gap_deg=30, between_jitter=0.2)
    free = FreeSpace(frames, np.array([[-1.0, -1, -1], [9, 7, 4]]), limits)
    placed = place_views(frames, free, limits, 300, 5)
    assert placed.between.all()
    o, p, t = placed.origin, placed.partner, placed.t
    assert all(frames[i].sequence != frames[j].sequence for i, j in zip(o, p, strict=True))
    a = np.stack([frames[i].centre for i in o])
    b = np.stack([frames[j].centre for j in p])
    assert np.linalg.norm(b - a, axis=1).max() <= 1.5
    ra, rb = frame_rotations(frames, o), frame_rotations(frames, p)
    gap = angle_deg(ra, rb)
    assert gap.max() <= 30 + 1e-9
    # Distance to the segment a-b: at most the between-jitter (0.2 * 0.5 m).
    ab = b - a
    s = np.clip(np.sum((placed.centre - a) * ab, 1) / np.maximum(np.sum(ab * ab, 1), 1e-12), 0, 1)
    assert np.linalg.norm(placed.centre - (a + s[:, None] * ab), axis=1).max() <= 0.1 + 1e-12
    # Angles: to the pair's ends they sum to at most the gap plus twice the jitter (0.2 * 15).
    assert (angle_deg(ra, placed.cam_from_world) + angle_deg(rb, placed.cam_from_world)).max() <= (
        gap.max() + 2 * 3 + 1e-6
    )
    # Against scipy's Slerp at the recorded t: within the jitter.
    expected = np.stack(
        [
            Slerp([0, 1], Rotation.from_matrix(np.stack([ra[k], rb[k]])))(t[k]).as_matrix()
            for k in range(len(t))
        ]
    )
    assert angle_deg(expected, placed.cam_from_world).max() <= 3 + 1e-9
    assert ((t >= 0) & (t <= 1)).all() and t.std() > 0.2


def test_slerp_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    q0, q1 = Rotation.random(20, rng), Rotation.random(20, rng)
    t = rng.random(20)
    t[:2] = 0.0, 1.0
    ours = slerp(q0.as_quat()[:, [3, 0, 1, 2]], q1.as_quat()[:, [3, 0, 1, 2]], t)
    theirs = [Slerp([0, 1], Rotation.concatenate([q0[k], q1[k]]))(t[k]) for k in range(20)]
    mine = Rotation.from_quat(ours[:, [1, 2, 3, 0]])
    assert max((mine[k] * theirs[k].inv()).magnitude() for k in range(20)) < 1e-9


def test_same_seed_same_views_other_seed_other_views(
    tiny_train: tuple[list[Frame], np.ndarray],
) -> None:
    frames, points = tiny_train
    limits = Limits()
    free = FreeSpace(frames, points, limits)
    one, two = (place_views(frames, free, limits, 100, 7) for _ in range(2))
    for name in ("centre", "cam_from_world", "source", "origin", "partner"):
        assert np.array_equal(getattr(one, name), getattr(two, name))
    other = place_views(frames, free, limits, 100, 8)
    assert not np.allclose(one.centre, other.centre)


def test_a_wall_blocks_the_path() -> None:
    # A wall x = 0 of points 5 cm apart; a few far points give the scene its extent.
    y, z = np.meshgrid(np.arange(-2, 2.001, 0.05), np.arange(-2, 2.001, 0.05))
    wall = np.column_stack([np.zeros(y.size), y.ravel(), z.ravel()])
    corners = np.array([[-3.0, -3, -3], [3, 3, 3]])
    frames = [
        Frame("a.png", Path("a"), np.array([-0.5, 0, 0]), np.array([1.0, 0, 0, 0]), "s1", "train"),
        Frame("b.png", Path("b"), np.array([0.6, 0, 0]), np.array([1.0, 0, 0, 0]), "s2", "train"),
    ]
    free = FreeSpace(frames, np.vstack([wall, corners]), Limits(clearance_m=0.25))
    target = np.array([[0.5, 0.1, 0.0], [-0.4, 0.3, 0.0], [0.5, 0.1, 0.0]])
    source = np.array([[-0.5, 0, 0], [-0.5, 0, 0], [0.6, 0, 0]])
    # Both ends are 0.4 m or more from every point: only the path through the wall fails.
    assert free.distance(target).min() >= 0.4
    assert free.check(target, source).tolist() == [BLOCKED, FREE, FREE]
    assert free.free(target, source).tolist() == [False, True, True]


def test_too_small_free_space_is_a_clear_error(
    tiny_train: tuple[list[Frame], np.ndarray],
) -> None:
    frames, points = tiny_train
    limits = Limits(clearance_m=5.0)  # more than half the room
    with pytest.raises(ValueError, match=r"free space is too small.*Lower clearance_m"):
        sample_views(frames, FreeSpace(frames, points, limits), limits, 20, 0)
    lonely = Limits(max_gap_m=0.01)
    with pytest.raises(ValueError, match=r"no partner.*Raise max_gap_m"):
        sample_views(frames, FreeSpace(frames, points, lonely), lonely, 20, 0)
    one = [f for f in frames if f.sequence == frames[0].sequence]
    with pytest.raises(ValueError, match=r"one sequence.*between=0"):
        sample_views(one, FreeSpace(one, points, Limits()), Limits(), 20, 0)
    with pytest.raises(ValueError, match="another clearance_m"):
        sample_views(frames, FreeSpace(frames, points, Limits()), limits, 20, 0)
    with pytest.raises(ValueError, match="3D points"):
        FreeSpace(frames, np.zeros((0, 3)), Limits())
    assert sample_views(frames, FreeSpace(frames, points, limits), limits, 0, 0) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_shift_m", -0.1),
        ("max_angle_deg", 200.0),
        ("max_roll_deg", -1.0),
        ("between", 1.5),
        ("max_gap_m", math.nan),
        ("max_gap_deg", -5.0),
        ("between_jitter", 2.0),
        ("clearance_m", math.inf),
        ("rotation_only", 1),
    ],
)
def test_bad_limits_name_the_field(field: str, value: float) -> None:
    bad: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=f"Limits.{field} "):
        Limits(**bad)
