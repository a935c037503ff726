"""Reference rows: mean pose, oracle nearest training pose, nearest-feature retrieval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from geoposenet.baselines import (
    mean_pose,
    mean_quaternion,
    nearest_feature_pose,
    nearest_training_pose,
    split_features,
)
from geoposenet.models import ModelConfig, PoseNet
from geoposenet.readers import load_scene


def wxyz(rotation: Rotation) -> np.ndarray:
    return np.roll(rotation.as_quat(), 1, axis=-1)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 40), st.floats(0.05, 1.0))
def test_mean_quaternion_equals_scipy_rotation_mean(seed: int, count: int, spread: float) -> None:
    """scipy's Rotation.mean minimises the same chordal distance; signs of inputs are free."""
    rng = np.random.default_rng(seed)
    centre = Rotation.random(random_state=seed)
    rotations = centre * Rotation.from_rotvec(rng.normal(scale=spread, size=(count, 3)))
    quaternions = wxyz(rotations) * rng.choice([-1.0, 1.0], size=(count, 1))
    ours = Rotation.from_quat(np.roll(mean_quaternion(quaternions), -1))
    assert (ours.inv() * rotations.mean()).magnitude() < 1e-6


def test_mean_pose_repeats_the_mean_centre() -> None:
    centres = np.array([[0.0, 0.0, 0.0], [2.0, 4.0, -6.0]])
    quaternions = np.array([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    centre, quaternion = mean_pose(centres, quaternions, 3)
    np.testing.assert_allclose(centre, [[1.0, 2.0, -3.0]] * 3)
    np.testing.assert_allclose(quaternion, [[1.0, 0.0, 0.0, 0.0]] * 3)


def test_oracle_picks_the_training_pose_nearest_in_position_and_angle() -> None:
    identity = [1.0, 0.0, 0.0, 0.0]
    turned = wxyz(Rotation.from_euler("y", 90, degrees=True))
    train_centres = np.array([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [5.0, 0.0, 0.0]])
    train_quats = np.array([turned, identity, identity])
    # the query sits on training frame 0 but looks like frame 1: 90 deg outweighs 0.3 m
    centre, quaternion, index = nearest_training_pose(
        train_centres, train_quats, np.array([[0.0, 0.0, 0.0]]), np.array([identity])
    )
    assert index.tolist() == [1]
    np.testing.assert_allclose(centre, [[0.3, 0.0, 0.0]])
    np.testing.assert_allclose(quaternion, [identity])


def test_feature_retrieval_finds_each_training_frame_itself(tiny_scene_dir: Path) -> None:
    """Queried with the training frames, retrieval must return each frame's own pose."""
    torch.manual_seed(0)
    scene = load_scene(tiny_scene_dir)
    model = PoseNet(ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64)))
    centres, quaternions, index = nearest_feature_pose(model, scene, query="train")
    train = scene.split("train")
    assert index.tolist() == list(range(len(train)))
    np.testing.assert_array_equal(centres, np.stack([f.centre for f in train]))
    np.testing.assert_array_equal(quaternions, np.stack([f.quaternion for f in train]))
    test_centres, _, test_index = nearest_feature_pose(model, scene)
    assert test_centres.shape == (len(scene.split("test")), 3)
    assert test_index.min() >= 0 and test_index.max() < len(train)


def test_split_features_are_unit_rows_of_the_head_input(tiny_scene_dir: Path) -> None:
    scene = load_scene(tiny_scene_dir)
    model = PoseNet(ModelConfig("mobilenet_v3_small", "none", resize=48, crop=(48, 64))).eval()
    features = split_features(model, scene, "test", batch_size=3)
    assert features.shape == (len(scene.split("test")), 576)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-9)
    images = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    with torch.no_grad():
        prediction = model(images)
        out = model.head(model.features(images))
    torch.testing.assert_close(prediction.position, out[:, :3])
