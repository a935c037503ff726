"""benchmarks/view_synthesis.py: its run plan, each budget's epochs, and the least-turn measure of
its --coverage study (against scipy's Rotation)."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation


@pytest.fixture(scope="module")
def bench(benchmark_script: Callable[[str], ModuleType]) -> ModuleType:
    return benchmark_script("view_synthesis")


def wxyz(rotation: Rotation) -> np.ndarray:
    """scipy's world -> camera rotations as wxyz quaternions."""
    return np.roll(rotation.as_quat(), 1, axis=-1)


def test_budget_epochs_keep_their_rule(bench: ModuleType) -> None:
    # the room: 1000 training frames, 30 epochs of batch 32 (32 steps an epoch)
    assert bench.budget_epochs("exact", 3000, "steps", 1000, 30, 32) == 8
    assert bench.budget_epochs("exact", 1000, "steps", 1000, 30, 32) == 15
    assert bench.budget_epochs("exact", 3000, "epochs", 1000, 30, 32) == 30
    assert bench.budget_epochs("original", 3000, "epochs", 1000, 30, 32) == 117  # 125 * 30 / 32
    assert bench.budget_epochs("rotation", 1000, "continue", 1000, 30, 32) == 4


def test_plan_puts_each_control_before_its_rows(bench: ModuleType) -> None:
    plan = bench.plan_runs(["exact"], [1000, 3000], ["epochs"], [0])
    assert plan == [
        ("original", 0, "-", 0),
        ("original", 3000, "epochs", 0),
        ("exact", 1000, "epochs", 0),
        ("exact", 3000, "epochs", 0),
    ]
    assert bench.run_name(*plan[1]) == "original-3000-epochs-s0"


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_least_turn_is_the_smallest_angle_to_a_near_camera(bench: ModuleType, seed: int) -> None:
    rng = np.random.default_rng(seed)
    train_centres = rng.uniform(-1, 1, (30, 3))
    query_centres = rng.uniform(-1, 1, (8, 3))
    train_rot = Rotation.random(30, random_state=rng)
    query_rot = Rotation.random(8, random_state=rng)
    turn = bench.least_turn_deg(
        train_centres, wxyz(train_rot), query_centres, wxyz(query_rot), radius_m=0.6
    )
    for i in range(8):
        near = np.linalg.norm(train_centres - query_centres[i], axis=1) <= 0.6
        if not near.any():
            assert turn[i] == np.inf
            continue
        angles = (train_rot[near] * query_rot[i].inv()).magnitude()
        assert turn[i] == pytest.approx(np.degrees(angles.min()), abs=1e-4)
