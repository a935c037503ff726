"""Per-image uncertainty: the aleatoric head's bounds and expected errors, MC dropout (mean pose
against scipy's Rotation.mean, spread by hand, zero without dropout), calibration scales."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from geoposenet.calibration import calibration_scale
from geoposenet.config import LOG_SCALE_BOUND
from geoposenet.errors import InputError
from geoposenet.models import ModelConfig, PoseNet, current_calibration, predict
from geoposenet.uncertainty import calibrated, expected_errors, mc_dropout_summary

CONFIG = ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64))


def model(dropout: float = 0.0, aleatoric: bool = False) -> PoseNet:
    torch.manual_seed(0)
    config = ModelConfig(**{**CONFIG.to_dict(), "dropout": dropout, "aleatoric": aleatoric})
    return PoseNet(config).eval()


def images(count: int = 3) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 48, 64), generator=torch.Generator().manual_seed(1))


def wxyz(rotation: Rotation) -> np.ndarray:
    return np.roll(rotation.as_quat(), 1, axis=-1)


def test_expected_errors_by_hand() -> None:
    """exp(s_x) metres; a rotation by theta is the quaternion chord 2 sin(theta / 4)."""
    chord = 2 * math.sin(math.radians(10.0) / 4)
    log_scales = torch.tensor([[math.log(2.0), math.log(chord)], [0.0, math.log(50.0)]])
    np.testing.assert_allclose(expected_errors(log_scales).numpy(), [[2.0, 10.0], [1.0, 360.0]],
                               rtol=1e-6)  # fmt: skip


def test_aleatoric_head_starts_at_the_given_s_and_stays_bounded() -> None:
    net = model(aleatoric=True)
    assert net.head.out_features == 9 and model().head.out_features == 7
    net.init_log_scales(0.5, -3.0)
    with torch.no_grad():
        s = net.regress(torch.zeros(2, 576)).log_scales
        assert s is not None
        np.testing.assert_allclose(s.numpy(), [[0.5, -3.0]] * 2, rtol=1e-6)
        net.head.bias[7:9] = torch.tensor([1e6, -1e6])
        s = net.regress(torch.zeros(1, 576)).log_scales
    assert s is not None and s.abs().max().item() <= LOG_SCALE_BOUND
    assert model().regress(torch.zeros(1, 576)).log_scales is None


def test_mc_dropout_summary_by_hand_and_against_scipy() -> None:
    positions = np.array([[[0.0, 0.0, 0.0]], [[2.0, 0.0, 0.0]]])  # T = 2 samples of 1 image
    turns = Rotation.from_euler("z", [[10.0], [-10.0]], degrees=True)
    quaternions = wxyz(turns).reshape(2, 1, 4)
    mean_position, mean_q, spread = mc_dropout_summary(positions, quaternions)
    np.testing.assert_allclose(mean_position, [[1.0, 0.0, 0.0]])
    np.testing.assert_allclose(mean_q, [[1.0, 0.0, 0.0, 0.0]], atol=1e-12)
    # sample standard deviations: distances 1, 1 and angles 10, 10 deg over T - 1 = 1
    np.testing.assert_allclose(spread, [[math.sqrt(2.0), math.sqrt(200.0)]], rtol=1e-9)
    rng = np.random.default_rng(3)  # 16 samples of 5 images, either sign: scipy's mean
    centres = Rotation.random(5, random_state=3)
    samples = [c * Rotation.from_rotvec(rng.normal(scale=0.2, size=(16, 3))) for c in centres]
    q = np.stack([wxyz(s) * rng.choice([-1.0, 1.0], size=(16, 1)) for s in samples], axis=1)
    _, mean_q, _ = mc_dropout_summary(np.zeros((16, 5, 3)), q)
    for i, sample in enumerate(samples):
        ours = Rotation.from_quat(np.roll(mean_q[i], -1))
        assert (ours.inv() * sample.mean()).magnitude() < 1e-6


def test_mc_dropout_without_dropout_gives_zero_spread_and_warns() -> None:
    net = model(dropout=0.0)
    with pytest.warns(UserWarning, match="zero spread"):
        poses = predict(net, images(), uncertainty="mc-dropout")
    assert poses.uncertainty is not None and poses.uncertainty.kind == "mc-dropout"
    assert (poses.uncertainty.position == 0).all() and (poses.uncertainty.rotation == 0).all()
    plain = predict(net, images(), uncertainty="none")
    np.testing.assert_array_equal(poses.positions, plain.positions)
    assert plain.uncertainty is None


def test_mc_dropout_spreads_reproducibly_and_leaves_the_global_rng_alone() -> None:
    net = model(dropout=0.3)
    state = torch.get_rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning with dropout
        first = predict(net, images(), batch_size=2, uncertainty="mc-dropout", samples=8)
    assert torch.equal(state, torch.get_rng_state())
    again = predict(net, images(), batch_size=2, uncertainty="mc-dropout", samples=8)
    assert first.uncertainty is not None and again.uncertainty is not None
    assert (first.uncertainty.position > 0).all() and (first.uncertainty.rotation > 0).all()
    np.testing.assert_array_equal(first.uncertainty.position, again.uncertainty.position)
    assert not net.training


def test_mc_samples_are_the_head_on_masked_features() -> None:
    """One head pass over T x B rows equals T passes, each with its own dropout mask."""
    net = model(dropout=0.5)
    features = torch.rand(3, 576)
    with torch.no_grad():
        drawn = net.sample_poses(features, 4, torch.Generator().manual_seed(5))
        masks = torch.rand((4, 3, 576), generator=torch.Generator().manual_seed(5)) < 0.5
        for t in range(4):
            one = net.head(features * masks[t] / 0.5)
            torch.testing.assert_close(drawn.position[t], one[:, :3])
    assert drawn.quaternion.shape == (4, 3, 4)


def test_uncertainty_kinds_and_refusals() -> None:
    assert predict(model(), images(1)).uncertainty is None  # auto: no aleatoric head
    auto = predict(model(aleatoric=True), images(1))
    assert auto.uncertainty is not None and auto.uncertainty.kind == "aleatoric"
    assert not auto.uncertainty.calibrated
    with pytest.raises(InputError, match="--uncertainty aleatoric: this model has no"):
        predict(model(), images(1), uncertainty="aleatoric")
    with pytest.raises(InputError, match="--mc-samples must be at least 1"):
        predict(model(0.2), images(1), uncertainty="mc-dropout", samples=0)


def test_calibration_scale_is_the_median_ratio_over_usable_frames() -> None:
    # ratios 1, 2, 1.5; the frame with no raw uncertainty is left out
    assert calibration_scale(np.array([1.0, 2.0, 3.0, 9.0]), np.array([1.0, 1.0, 2.0, 0.0])) == 1.5
    assert calibration_scale(np.array([1.0]), np.array([0.0])) is None
    scales = {"aleatoric": {"position": 2.0, "rotation": 0.5}}
    values = calibrated(np.array([[1.0, 10.0]]), "aleatoric", scales)
    assert values.calibrated and (values.position[0], values.rotation[0]) == (2.0, 5.0)
    assert not calibrated(np.array([[1.0, 10.0]]), "mc-dropout", scales).calibrated


def test_a_checkpoint_calibration_applies_only_to_its_own_epoch() -> None:
    scales = {"epoch": 3, "aleatoric": {"position": 2.0, "rotation": 0.5, "frames": 4}}
    assert current_calibration({"epoch": 3, "calibration": scales})["aleatoric"]["position"] == 2
    assert current_calibration({"epoch": 4, "calibration": scales}) == {}
    assert current_calibration({"epoch": 3}) == {}
