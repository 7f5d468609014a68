"""Drift on ground truth: windows drawn like the reference data raise false alarms at no more than the stated
rate (within a binomial bound over many windows), and each kind of change is found and named: a mean shift
of half a standard deviation in one feature, a correlation that changed while every marginal stayed, a
category twice as frequent."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import stats

from glassbox.explainers.detector.drift import DriftTest, RecentWindow, benjamini_hochberg
from glassbox_testing.drift_data import CATEGORICAL, NAMES, REGION_DOUBLED, credit_book

RATE = 0.05


def draw(rows: int, rng: np.random.Generator, **change: Any) -> np.ndarray:
    return credit_book(rows, rng, **change)


@pytest.fixture(scope="module")
def drift() -> DriftTest:
    reference = draw(2000, np.random.default_rng(0))
    return DriftTest(reference, NAMES, CATEGORICAL, RATE, permutations=200, mmd_reference_rows=400, seed=0)


def test_windows_like_the_reference_raise_false_alarms_at_no_more_than_the_stated_rate(drift: DriftTest) -> None:
    rng = np.random.default_rng(1)
    windows = 200
    alarms = sum(drift.test(draw(100, rng)).drifted for _ in range(windows))
    # At the stated rate, more alarms than this happen in fewer than 1 run in 1,000.
    bound = int(stats.binom.isf(0.001, windows, RATE))
    assert alarms <= bound, f"{alarms} false alarms in {windows} windows at a stated rate of {RATE}"


def found(drift: DriftTest, windows: list[np.ndarray]) -> list[list[str]]:
    """For each window that drifted, its features most drifted first."""
    reports = [drift.test(window) for window in windows]
    return [[f.name for f in report.features] for report in reports if report.drifted]


def test_a_mean_shift_of_half_a_standard_deviation_is_found_and_named(drift: DriftTest) -> None:
    rng = np.random.default_rng(2)
    detected = found(drift, [draw(200, rng, shift=0.5) for _ in range(20)])
    assert len(detected) >= 18 and all(names[0] == "tenure" for names in detected), detected


def test_a_correlation_that_changed_while_every_feature_kept_its_range_is_found(drift: DriftTest) -> None:
    rng = np.random.default_rng(3)
    windows = [draw(200, rng, correlation=0.0) for _ in range(20)]
    reports = [drift.test(window) for window in windows]
    assert sum(r.drifted for r in reports) >= 18, [round(r.mmd_p_value, 3) for r in reports]
    # The marginals did not move: the per-feature tests rarely reject; the multivariate test found it.
    assert sum(bool(r.drifted_features) for r in reports) <= 3
    assert all(r.mmd_p_value <= RATE / 2 for r in reports if r.drifted)


def test_a_category_twice_as_frequent_is_found_and_named(drift: DriftTest) -> None:
    rng = np.random.default_rng(4)
    detected = found(drift, [draw(200, rng, region_probabilities=REGION_DOUBLED) for _ in range(20)])
    assert len(detected) >= 18 and all(names[0] == "region" for names in detected), detected


def test_a_report_ranks_every_feature_with_its_distance_and_p_values(drift: DriftTest) -> None:
    report = drift.test(draw(200, np.random.default_rng(5), shift=2.0))
    assert report.drifted and report.window_rows == 200 and report.drifted_features == ["tenure"]
    assert sorted(f.name for f in report.features) == sorted(NAMES)
    kinds = {f.name: f.kind for f in report.features}
    assert kinds["region"] == "categorical" and kinds["income"] == "numeric"
    assert all(0 <= f.distance <= 1 and f.adjusted_p_value >= f.p_value for f in report.features)
    assert drift.test(draw(200, np.random.default_rng(5), shift=2.0)) == report, "the same window, the same report"


def test_benjamini_hochberg_matches_its_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    # Sorted 0.01, 0.03, 0.04, 0.5 scaled by 4/rank: 0.04, 0.06, 0.0533, 0.5, then the running minimum from the top.
    assert np.allclose(benjamini_hochberg(p), [0.04, 0.05333333, 0.05333333, 0.5])


def test_the_window_keeps_the_most_recent_rows_within_its_time_span() -> None:
    window = RecentWindow(rows=3, seconds=60)
    window.add(np.array([[1.0], [2.0]]), now=0)
    window.add(np.array([[3.0], [4.0]]), now=30)
    assert window.current(now=30).ravel().tolist() == [2.0, 3.0, 4.0]
    assert window.current(now=70).ravel().tolist() == [3.0, 4.0], "the row from t=0 is older than 60 s"
    assert window.current(now=200).shape == (0, 0)


@pytest.mark.parametrize(("window", "words"), [(np.zeros((5, 3)), "rows of 8 features"), (np.zeros((1, 8)), "at least 2 rows")])
def test_a_window_of_the_wrong_shape_is_named(drift: DriftTest, window: np.ndarray, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        drift.test(window)
