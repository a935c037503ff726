"""The uncertainty's own evaluation against hand computations and scipy.stats.spearmanr."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from geoposenet.uncertaintymetrics import (
    calibration_bins,
    median_of_most_certain,
    quality,
    sparsification,
    spearman,
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(0, 10)), min_size=3, max_size=40))
def test_spearman_equals_scipy_with_ties(pairs: list[tuple[int, float]]) -> None:
    a, b = np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about constant input (then nan)
        expected = spearmanr(a, b).statistic
    ours = spearman(a, b)
    if np.isnan(expected):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(expected, abs=1e-12)


def test_sparsification_by_hand() -> None:
    """Errors 4, 1, 3, 2 with uncertainties 0.1, 0.4, 0.3, 0.2, in 4 steps (remove 0..3 frames).
    By uncertainty the removal order is frames 1, 2, 3: medians 2.5, median(4, 3, 2) = 3,
    median(4, 2) = 3, 4. The oracle removes errors 4, 3, 2: 2.5, 2, 1.5, 1.
    AUSE = mean(0, 1, 1.5, 3) = 1.375."""
    result = sparsification(np.array([4.0, 1.0, 3.0, 2.0]), np.array([0.1, 0.4, 0.3, 0.2]), 4)
    assert result["removed"] == [0.0, 0.25, 0.5, 0.75]
    assert result["curve"] == [2.5, 3.0, 3.0, 4.0]
    assert result["oracle"] == [2.5, 2.0, 1.5, 1.0]
    assert result["ause"] == pytest.approx(1.375)


def test_median_of_the_80_percent_most_certain_by_hand() -> None:
    error = np.arange(1.0, 11.0)  # 1 .. 10
    uncertainty = np.array([0.9, 0.8, 0.3, 0.4, 0.5, 0.6, 0.7, 0.2, 0.05, 0.06])
    # the two most uncertain are frames 0 and 1 (errors 1, 2): median of 3 .. 10 = 6.5
    assert median_of_most_certain(error, uncertainty) == 6.5
    assert median_of_most_certain(error, error) == 4.5  # the oracle keeps errors 1 .. 8


def test_calibration_bins_by_hand() -> None:
    predicted = np.array([4.0, 1.0, 3.0, 2.0, 6.0, 5.0])
    observed = np.array([40.0, 10.0, 30.0, 20.0, 60.0, 50.0])
    assert calibration_bins(predicted, observed, bins=3) == [
        {"predicted": 1.5, "observed": 15.0, "frames": 2},
        {"predicted": 3.5, "observed": 35.0, "frames": 2},
        {"predicted": 5.5, "observed": 55.0, "frames": 2},
    ]


def test_quality_of_a_perfect_and_a_useless_uncertainty() -> None:
    error = np.arange(1.0, 11.0)
    perfect = quality(error, 3 * error)
    assert perfect["spearman"] == pytest.approx(1.0)
    assert perfect["sparsification"]["ause"] == 0.0
    assert perfect["median_error_most_certain_80"] == 4.5  # errors 1 .. 8
    assert perfect["reduction_most_certain_80"] == pytest.approx(1 - 4.5 / 5.5)
    constant = quality(error, np.ones(10))
    assert constant["spearman"] is None  # undefined for a constant uncertainty
