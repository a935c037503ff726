"""The paper's losses against hand-computed values, and their behaviour on hostile inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoposenet.errors import InputError
from geoposenet.losses import (
    AleatoricLoss,
    BetaLoss,
    LearnedWeightingLoss,
    ReprojectionLoss,
    make_loss,
)


def batch(**extra: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "position": torch.zeros(1, 3),
        "quaternion": torch.tensor([[0.6, 0.8, 0.0, 0.0]]),
        **extra,
    }


PREDICTED_POSITION = torch.tensor([[1.0, 2.0, 3.0]])
PREDICTED_QUATERNION = torch.tensor([[2.0, 0.0, 0.0, 0.0]])  # normalised to (1, 0, 0, 0)


@pytest.mark.parametrize(
    ("norm", "loss_x", "loss_q"),
    [("l1", 6.0, 1.2), ("l2", math.sqrt(14.0), math.sqrt(0.8))],
)
def test_beta_loss_by_hand(norm: str, loss_x: float, loss_q: float) -> None:
    loss, parts = make_loss("beta", norm=norm, beta=10.0)(
        PREDICTED_POSITION, PREDICTED_QUATERNION, batch()
    )
    assert parts["position"].item() == pytest.approx(loss_x)
    assert parts["orientation"].item() == pytest.approx(loss_q)
    assert loss.item() == pytest.approx(loss_x + 10.0 * loss_q)


def test_learned_weighting_by_hand_and_gradients_reach_s() -> None:
    criterion = LearnedWeightingLoss()
    assert (criterion.s_x.item(), criterion.s_q.item()) == (0.0, -3.0)
    loss, parts = criterion(PREDICTED_POSITION, PREDICTED_QUATERNION, batch())
    assert loss.item() == pytest.approx(6.0 + 1.2 * math.exp(3.0) - 3.0, rel=1e-6)
    assert (parts["s_x"].item(), parts["s_q"].item()) == (0.0, -3.0)
    loss.backward()
    assert criterion.s_x.grad is not None and criterion.s_q.grad is not None
    # d/ds (L e^-s + s) = 1 - L e^-s
    assert criterion.s_x.grad.item() == pytest.approx(1.0 - 6.0)
    assert criterion.s_q.grad.item() == pytest.approx(1.0 - 1.2 * math.exp(3.0), rel=1e-6)
    assert [name for name, _ in criterion.named_parameters()] == ["s_x", "s_q"]


def test_learned_weighting_can_go_negative() -> None:
    criterion = LearnedWeightingLoss(s_x=-2.0, s_q=-5.0)
    target = batch()
    loss, _ = criterion(target["position"], target["quaternion"], target)
    assert loss.item() == pytest.approx(-7.0)


def reprojection_batch() -> dict[str, torch.Tensor]:
    points = torch.tensor([[[0.0, 0.0, 2.0], [1.0, 1.0, 4.0], [1e6, -1e6, 1e-9]]])
    return {
        "position": torch.zeros(1, 3),
        "quaternion": torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        "points": points,
        "points_mask": torch.tensor([[True, True, False]]),
    }


def test_reprojection_by_hand_with_masked_point() -> None:
    # The prediction moves the camera 0.1 along x: (0, 0, 2) projects to (-0.05, 0) instead of
    # (0, 0), and (1, 1, 4) to (0.225, 0.25) instead of (0.25, 0.25): L1 errors 0.05 and 0.025.
    position = torch.tensor([[0.1, 0.0, 0.0]], requires_grad=True)
    quaternion = torch.tensor([[1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    loss, parts = ReprojectionLoss()(position, quaternion, reprojection_batch())
    assert loss.item() == pytest.approx((0.05 + 0.025) / 2)
    assert parts["reprojection"].item() == pytest.approx(loss.item())
    loss.backward()
    assert position.grad is not None and torch.isfinite(position.grad).all()
    # moving right shifts both points left: d loss / d x = (1/2 + 1/4) / 2
    assert position.grad[0, 0].item() == pytest.approx(0.375)


def test_reprojection_masked_points_contribute_nothing() -> None:
    base = reprojection_batch()
    changed = {**base, "points": base["points"].clone()}
    changed["points"][0, 2] = torch.tensor([5.0, -3.0, 0.5])
    position = torch.tensor([[0.1, 0.2, 0.0]])
    quaternion = torch.tensor([[0.9, 0.1, 0.0, 0.0]])
    a, _ = ReprojectionLoss()(position, quaternion, base)
    b, _ = ReprojectionLoss()(position, quaternion, changed)
    assert a.item() == b.item()


def test_reprojection_with_intrinsics_scales_pixels() -> None:
    k = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 40.0], [0.0, 0.0, 1.0]])
    position = torch.tensor([[0.1, 0.0, 0.0]])
    quaternion = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    loss, _ = ReprojectionLoss(intrinsics=k, max_error=1e6)(
        position, quaternion, reprojection_batch()
    )
    assert loss.item() == pytest.approx(100.0 * (0.05 + 0.025) / 2, rel=1e-5)


def test_reprojection_images_without_points() -> None:
    data = reprojection_batch()
    data["points_mask"] = torch.zeros_like(data["points_mask"])
    position = torch.tensor([[3.0, 0.0, 0.0]], requires_grad=True)
    loss, _ = ReprojectionLoss()(position, torch.tensor([[1.0, 0, 0, 0]]), data)
    assert loss.item() == 0.0
    loss.backward()
    assert position.grad is not None and (position.grad == 0).all()


def test_bad_names_and_values_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown loss"):
        make_loss("huber")
    with pytest.raises(InputError, match="unknown norm"):
        make_loss("beta", norm="l3")
    with pytest.raises(InputError, match="beta must be positive"):
        BetaLoss(beta=0.0)
    with pytest.raises(InputError, match="3D points"):
        ReprojectionLoss()(torch.zeros(1, 3), torch.ones(1, 4), batch())


hostile = st.floats(-1e8, 1e8, allow_nan=False, allow_infinity=False, width=32)


@settings(deadline=None, max_examples=60)
@given(
    position=arrays(np.float32, (2, 3), elements=hostile),
    quaternion=arrays(np.float32, (2, 4), elements=hostile),
    points=arrays(np.float32, (2, 4, 3), elements=hostile),
    mask=arrays(np.bool_, (2, 4)),
    norm=st.sampled_from(["l1", "l2"]),
    name=st.sampled_from(["beta", "learned", "reprojection"]),
)
def test_no_nan_or_inf_on_hostile_inputs(
    position: np.ndarray,
    quaternion: np.ndarray,
    points: np.ndarray,
    mask: np.ndarray,
    norm: str,
    name: str,
) -> None:
    """Wild predictions, zero quaternions, points at or behind either camera: finite loss and
    finite gradients. Targets are valid poses (unit quaternions) with the points in front of
    the true camera only some of the time, as in noisy data."""
    pred_position = torch.from_numpy(position).requires_grad_()
    pred_quaternion = torch.from_numpy(quaternion).requires_grad_()
    data = {
        "position": torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]]),
        "quaternion": torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, -0.5, 0.5]]),
        "points": torch.from_numpy(points),
        "points_mask": torch.from_numpy(mask),
    }
    criterion = make_loss(name, norm=norm, beta=500.0)
    loss, parts = criterion(pred_position, pred_quaternion, data)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in parts.values())
    assert pred_position.grad is not None and torch.isfinite(pred_position.grad).all()
    assert pred_quaternion.grad is not None and torch.isfinite(pred_quaternion.grad).all()


def test_aleatoric_loss_equals_eq4_when_per_image_s_are_the_scene_values() -> None:
    """Two images: position errors (1, 2, 3) and (0, 0, 0.5), L1 6 and 0.5; orientation errors
    1.2 and 0. With s_x(I) = 0.5 and s_q(I) = -2 for both, eq. 4 per image averages to
    (6 + 0.5) / 2 e^-0.5 + 0.5 + 1.2 / 2 e^2 - 2, which LearnedWeightingLoss gives too."""
    position = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.5]])
    quaternion = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.6, 0.8, 0.0, 0.0]])
    target = {"position": torch.zeros(2, 3), "quaternion": torch.tensor([[0.6, 0.8, 0, 0]] * 2)}
    log_scales = torch.tensor([[0.5, -2.0], [0.5, -2.0]], requires_grad=True)
    loss, parts = AleatoricLoss()(position, quaternion, target, log_scales)
    by_hand = 3.25 * math.exp(-0.5) + 0.5 + 0.6 * math.exp(2.0) - 2.0
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    scene, _ = LearnedWeightingLoss(s_x=0.5, s_q=-2.0)(position, quaternion, target)
    assert loss.item() == pytest.approx(scene.item(), rel=1e-6)
    assert parts["s_x"].item() == 0.5 and parts["s_q"].item() == -2.0
    loss.backward()
    # d/ds_x(I) of the mean over 2 images = (1 - L_x(I) e^-s) / 2
    assert log_scales.grad is not None
    expected = [(1 - 6.0 * math.exp(-0.5)) / 2, (1 - 0.5 * math.exp(-0.5)) / 2]
    np.testing.assert_allclose(log_scales.grad[:, 0].numpy(), expected, rtol=1e-6)


def test_aleatoric_loss_weighs_each_image_by_its_own_s() -> None:
    position = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.5]])
    target = {"position": torch.zeros(2, 3), "quaternion": torch.tensor([[1.0, 0, 0, 0]] * 2)}
    quaternion = torch.tensor([[1.0, 0, 0, 0]] * 2)
    log_scales = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    loss, _ = AleatoricLoss("l2")(position, quaternion, target, log_scales)
    by_hand = (math.sqrt(14.0) * math.exp(-1.0) + 1.0 + 0.5 * math.exp(1.0) - 1.0) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    with pytest.raises(InputError, match="per-image"):
        AleatoricLoss()(position, quaternion, target)
    assert isinstance(make_loss("learned", aleatoric=True), AleatoricLoss)
    assert list(make_loss("learned", aleatoric=True).parameters()) == []


@settings(deadline=None, max_examples=40)
@given(
    position=arrays(np.float32, (2, 3), elements=hostile),
    quaternion=arrays(np.float32, (2, 4), elements=hostile),
    raw=arrays(np.float32, (2, 2), elements=hostile),
    norm=st.sampled_from(["l1", "l2"]),
)
def test_aleatoric_loss_is_finite_on_hostile_inputs_within_the_bound(
    position: np.ndarray, quaternion: np.ndarray, raw: np.ndarray, norm: str
) -> None:
    """Wild predictions and any head output: the bounded s keep the loss and gradients finite."""
    from geoposenet.config import LOG_SCALE_BOUND

    raw_s = torch.from_numpy(raw).requires_grad_()
    log_scales = LOG_SCALE_BOUND * torch.tanh(raw_s / LOG_SCALE_BOUND)  # as the head bounds them
    pred_position = torch.from_numpy(position).requires_grad_()
    target = {"position": torch.zeros(2, 3), "quaternion": torch.tensor([[1.0, 0, 0, 0]] * 2)}
    loss, _ = AleatoricLoss(norm)(pred_position, torch.from_numpy(quaternion), target, log_scales)
    loss.backward()
    assert torch.isfinite(loss)
    assert raw_s.grad is not None and torch.isfinite(raw_s.grad).all()
    assert pred_position.grad is not None and torch.isfinite(pred_position.grad).all()
