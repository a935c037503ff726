"""geometry.py against scipy.spatial.transform.Rotation (which orders quaternions x, y, z, w)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.transform import Rotation

from geoposenet import geometry as g

finite = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)
quaternion_arrays = arrays(np.float64, (4,), elements=finite).filter(
    lambda q: np.linalg.norm(q) > 1e-3
)


def wxyz(rotation: Rotation) -> np.ndarray:
    """scipy's x, y, z, w -> our w, x, y, z."""
    return np.roll(rotation.as_quat(), 1, axis=-1)


def t(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(array, dtype=torch.float64)


@given(quaternion_arrays)
def test_quaternion_to_matrix_matches_scipy(q: np.ndarray) -> None:
    expected = Rotation.from_quat(np.roll(q, -1)).as_matrix()
    np.testing.assert_allclose(g.quaternion_to_matrix(t(q)).numpy(), expected, atol=1e-12)


def test_matrix_round_trip_many_rotations_and_batch_dims() -> None:
    rotations = Rotation.random(500, random_state=1)
    matrices = t(rotations.as_matrix()).reshape(5, 100, 3, 3)
    q = g.matrix_to_quaternion(matrices)
    assert q.shape == (5, 100, 4)
    assert (q[..., 0] >= 0).all()
    expected = wxyz(rotations).reshape(5, 100, 4)
    expected = expected * np.sign(expected[..., :1])
    np.testing.assert_allclose(q.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(g.quaternion_to_matrix(q).numpy(), matrices.numpy(), atol=1e-12)


@pytest.mark.parametrize("degrees", [0.0, 1e-7, 90.0, 179.9999, 180.0])
@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
def test_matrix_to_quaternion_at_edge_angles(degrees: float, axis: tuple[int, ...]) -> None:
    rotvec = np.array(axis, dtype=np.float64) / np.linalg.norm(axis) * np.deg2rad(degrees)
    rotation = Rotation.from_rotvec(rotvec)
    q = g.matrix_to_quaternion(t(rotation.as_matrix()))
    np.testing.assert_allclose(g.quaternion_to_matrix(q).numpy(), rotation.as_matrix(), atol=1e-12)
    assert g.rotation_angle_deg(q, t(wxyz(rotation))).item() == pytest.approx(0.0, abs=1e-5)


@given(quaternion_arrays, quaternion_arrays)
def test_multiply_matches_scipy_composition(a: np.ndarray, b: np.ndarray) -> None:
    ra, rb = Rotation.from_quat(np.roll(a, -1)), Rotation.from_quat(np.roll(b, -1))
    product = g.quaternion_multiply(g.normalize_quaternion(t(a)), g.normalize_quaternion(t(b)))
    np.testing.assert_allclose(
        g.quaternion_to_matrix(product).numpy(), (ra * rb).as_matrix(), atol=1e-10
    )


@given(quaternion_arrays)
def test_inverse_and_conjugate(q: np.ndarray) -> None:
    identity = g.quaternion_multiply(t(q), g.quaternion_inverse(t(q)))
    np.testing.assert_allclose(identity.numpy(), [1, 0, 0, 0], atol=1e-10)
    unit = g.normalize_quaternion(t(q))
    np.testing.assert_allclose(
        g.quaternion_conjugate(unit).numpy(), g.quaternion_inverse(unit).numpy(), atol=1e-12
    )


@given(quaternion_arrays, quaternion_arrays)
def test_rotation_angle_matches_scipy_and_ignores_sign(a: np.ndarray, b: np.ndarray) -> None:
    ra, rb = Rotation.from_quat(np.roll(a, -1)), Rotation.from_quat(np.roll(b, -1))
    expected = np.rad2deg((ra.inv() * rb).magnitude())
    for sa, sb in [(1, 1), (-1, 1), (1, -1), (-1, -1)]:
        angle = g.rotation_angle_deg(sa * t(a), sb * t(b)).item()
        assert angle == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("degrees", [1e-6, 1e-3, 0.5, 90.0, 179.5, 179.999, 180.0])
def test_rotation_angle_is_precise_near_0_and_180(degrees: float) -> None:
    base = Rotation.random(random_state=3)
    other = base * Rotation.from_rotvec([0.0, 0.0, np.deg2rad(degrees)])
    angle = g.rotation_angle_deg(t(wxyz(base)), t(wxyz(other))).item()
    assert angle == pytest.approx(degrees, rel=1e-7, abs=1e-9)


def test_canonical_hemisphere_and_tie_break() -> None:
    q = t(np.array([[-0.5, 0.5, 0.5, 0.5], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -2.0, 0.0]]))
    c = g.canonical_quaternion(q)
    np.testing.assert_allclose(c.numpy(), [[0.5, -0.5, -0.5, -0.5], [0, 1, 0, 0], [0, 0, 1, 0]])
    np.testing.assert_allclose(g.canonical_quaternion(-c).numpy(), c.numpy())


def test_centre_translation_round_trip_matches_definition() -> None:
    rotation = Rotation.random(10, random_state=4)
    centre = np.random.default_rng(0).normal(size=(10, 3)) * 5
    q = t(wxyz(rotation))
    translation = g.translation_from_centre(q, t(centre))
    np.testing.assert_allclose(
        translation.numpy(), -np.einsum("nij,nj->ni", rotation.as_matrix(), centre), atol=1e-12
    )
    back = g.centre_from_translation(q, translation)
    np.testing.assert_allclose(back.numpy(), centre, atol=1e-12)


def test_projection_by_hand() -> None:
    # Camera at (1, 2, 3) looking along world +z (identity rotation): point (2, 4, 7) sits at
    # camera coordinates (1, 2, 4): normalised (0.25, 0.5); with fx=100, cx=50: (75, 100).
    centre, q = t(np.array([1.0, 2.0, 3.0])), t(np.array([1.0, 0.0, 0.0, 0.0]))
    points = t(np.array([[2.0, 4.0, 7.0]]))
    uv, depth = g.project(points, centre, q)
    np.testing.assert_allclose(uv.numpy(), [[0.25, 0.5]])
    np.testing.assert_allclose(depth.numpy(), [4.0])
    k = t(np.array([[100.0, 0, 50], [0, 100.0, 50], [0, 0, 1]]))
    uv, _ = g.project(points, centre, q, k)
    np.testing.assert_allclose(uv.numpy(), [[75.0, 100.0]])


def test_projection_matches_scipy_rotation_with_batch_dims() -> None:
    rng = np.random.default_rng(5)
    rotation = Rotation.random(6, random_state=5)
    centre, points = rng.normal(size=(6, 3)), rng.normal(size=(6, 20, 3)) * 3
    cam = np.einsum("nij,npj->npi", rotation.as_matrix(), points - centre[:, None])
    uv, depth = g.project(t(points), t(centre), t(wxyz(rotation)))
    np.testing.assert_allclose(depth.numpy(), cam[..., 2], atol=1e-12)
    np.testing.assert_allclose(uv.numpy(), cam[..., :2] / cam[..., 2:], atol=1e-9)


def test_projection_min_depth_keeps_points_behind_camera_finite() -> None:
    points = t(np.array([[0.0, 1.0, 0.0], [1.0, 1.0, -2.0]]))
    uv, _ = g.project(points, t(np.zeros(3)), t(np.array([1.0, 0, 0, 0])), min_depth=0.1)
    assert torch.isfinite(uv).all()
    np.testing.assert_allclose(uv.numpy(), [[0.0, 10.0], [10.0, 10.0]])


def test_position_error() -> None:
    assert g.position_error(t(np.zeros(3)), t(np.array([3.0, 4.0, 0.0]))).item() == 5.0


@settings(deadline=None, max_examples=10)
@given(st.integers(0, 10_000))
def test_gradcheck_float64(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q = t(rng.normal(size=(2, 4))).requires_grad_()
    centre = t(rng.normal(size=(2, 3))).requires_grad_()
    points = t(rng.normal(size=(2, 5, 3)) + np.array([0.0, 0.0, 10.0]))
    assert torch.autograd.gradcheck(g.quaternion_to_matrix, (q,))
    assert torch.autograd.gradcheck(lambda c, r: g.project(points, c, r)[0], (centre, q))
    other = t(rng.normal(size=(2, 4)))
    assert torch.autograd.gradcheck(lambda r: g.rotation_angle_deg(r, other), (q,))


def test_numpy_helpers() -> None:
    rotation = Rotation.random(random_state=7)
    q = g.matrix_to_quaternion_np(rotation.as_matrix())
    np.testing.assert_allclose(g.quaternion_to_matrix_np(q), rotation.as_matrix(), atol=1e-12)
    np.testing.assert_allclose(g.canonical_quaternion_np(-2 * q), q, atol=1e-12)
