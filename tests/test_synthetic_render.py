"""Parts of the synthetic scene: ray casting against a brute-force reference, texture lookup,
trajectory limits and the difficulty measure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from geoposenet.geometry import matrix_to_quaternion_np
from geoposenet.synthetic.core import PRESETS, difficulty, sequence_poses
from geoposenet.synthetic.render import Camera, Caster
from geoposenet.synthetic.room import ROOM, Room, build_room, pack
from geoposenet.synthetic.trajectory import BOX_MARGIN, look_rotation


@pytest.fixture(scope="module")
def room() -> Room:
    return build_room(0, PRESETS["tiny"].texel)


def _brute_force_depth(room: Room, centre: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Nearest positive hit (ray parameter) of world rays (N, 3) against every face rectangle."""
    faces = room.faces
    best = np.full(len(dirs), np.inf)
    for lo, hi, normal in zip(faces.lo, faces.hi, faces.normal, strict=True):
        axis = int(np.flatnonzero(normal)[0])
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (lo[axis] - centre[axis]) / dirs[:, axis]
        hit = centre + t[:, None] * dirs
        inside = np.all((hit >= lo - 1e-6) & (hit <= hi + 1e-6), axis=1) & (t > 0)
        best = np.where(inside & (t < best), t, best)
    return best


def test_cast_matches_brute_force(room: Room) -> None:
    camera = Camera(64, 48, 50.0)
    caster = Caster(room.faces, camera)
    rng = np.random.default_rng(1)
    for _ in range(5):
        centre = rng.uniform(ROOM[0] + 0.3, ROOM[1] - 0.3)
        if np.any([(b[0] <= centre).all() and (centre <= b[1]).all() for b in room.boxes]):
            continue
        rotation = look_rotation(*(rng.uniform(-np.pi, np.pi, (3, 1)) * [[1], [0.4], [0.2]]))[0]
        depth, face, points = caster.cast(centre, rotation)
        rays = camera.rays().double().numpy().reshape(-1, 3)
        expected = _brute_force_depth(room, centre, rays @ rotation)
        np.testing.assert_allclose(depth.numpy().reshape(-1), expected, rtol=1e-4, atol=1e-4)
        # Every hit point lies on the face the caster reports.
        lo, hi = room.faces.lo[face.reshape(-1)], room.faces.hi[face.reshape(-1)]
        p = points.numpy().reshape(-1, 3)
        assert np.all((p >= lo - 1e-3) & (p <= hi + 1e-3))


def test_albedo_reproduces_texels_and_never_bleeds(room: Room) -> None:
    faces = room.faces
    floor = 4  # 2 * axis(z) + side(low)
    texel = room.texel
    # The centre of texel (row 3, col 5) of the floor texture.
    point = np.zeros(3, np.float32)
    point[faces.col_axis[floor]] = faces.col_origin[floor] + faces.col_sign[floor] * 5.5 * texel
    point[faces.row_axis[floor]] = faces.row_origin[floor] + faces.row_sign[floor] * 3.5 * texel
    x, y = faces.atlas_x[floor], faces.atlas_y[floor]
    texel_colour = room.atlas[0, :, y + 3, x + 5]
    room_no_detail = Room(room.boxes, faces, room.atlas, texel, room.detail, room.detail_texel, 0.0)
    got = room_no_detail.albedo(torch.tensor([floor]), torch.from_numpy(point[None]))[0]
    torch.testing.assert_close(got, texel_colour, atol=1e-5, rtol=0)


def test_pack_places_textures_without_overlap() -> None:
    rng = np.random.default_rng(0)
    textures = [
        rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 90)), 3)) for _ in range(30)
    ]
    atlas, corners = pack(textures, width=100)
    covered = np.zeros(atlas.shape[:2], int)
    for (x, y), tex in zip(corners, textures, strict=True):
        h, w = tex.shape[:2]
        np.testing.assert_array_equal(atlas[y : y + h, x : x + w], tex.astype(np.float32))
        covered[y : y + h, x : x + w] += 1
    assert covered.max() == 1


def test_trajectories_are_handheld_and_clear_of_furniture(room: Room) -> None:
    preset = PRESETS["room"]
    for split, centres, rotations in sequence_poses(preset, room, seed=0):
        assert split in ("train", "test")
        assert centres[:, 2].min() >= 1.2 and centres[:, 2].max() <= 1.8
        forward = rotations[:, 2]  # camera z axis in world coordinates
        pitch = np.degrees(np.arcsin(forward[:, 2]))
        assert np.abs(pitch).max() <= 20.0 + 1e-6
        roll = np.degrees(np.arcsin(np.abs(rotations[:, 0, 2])))  # tilt of the camera's x axis
        assert roll.max() < 12
        assert np.linalg.norm(np.diff(centres, axis=0), axis=1).max() < 0.5
        for lo, hi in room.boxes[:, :, :2]:
            gap = np.maximum(np.maximum(lo - centres[:, :2], centres[:, :2] - hi), 0)
            assert np.hypot(gap[:, 0], gap[:, 1]).min() > BOX_MARGIN - 0.16


def test_difficulty_picks_the_nearest_combined_pose() -> None:
    yaw = np.radians([0.0, 90.0, 10.0])
    q = matrix_to_quaternion_np(look_rotation(yaw, np.zeros(3), np.zeros(3)))
    train_c = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    # The test pose sits on the second training centre but looks like the first: 0.1 m + 10 deg
    # (0.5 in combined units) beats 0 m + 80 deg (3.2).
    result = difficulty(train_c, q[[0, 1]], np.array([[0.1, 0, 0]]), q[[2]])
    assert result["median_position_m"] == pytest.approx(0.1)
    assert result["median_rotation_deg"] == pytest.approx(10.0, abs=1e-3)
    assert result["median_nearest_position_only_m"] == pytest.approx(0.0)
