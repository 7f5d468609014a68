"""Drift of images and text, tested in the detector's own representation of them (images pooled to its
grid, text as its hashed n-grams on the reference texts' leading directions), on ground truth: windows
drawn like the reference raise no more false alarms than the stated rate allows; brighter pictures, and
reviews that began to talk about something else, drift, and the cells or directions that moved are named."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from glassbox.explainers.data.reference_data import ReferenceTable
from glassbox.explainers.detector.drift import DriftTest
from glassbox.explainers.detector.drift_inputs import DriftInputs
from glassbox.explainers.detector.errors import DetectorFitError
from glassbox.explainers.serving.errors import InputError
from glassbox_testing.drift_data import BLAME, FILMS, PRAISE, pictures, reviews

RATE = 0.05
WINDOWS = 40


def false_alarms(test: DriftTest, inputs: DriftInputs, windows: list[object]) -> int:
    return sum(test.test(inputs.vectors(window)).drifted for window in windows)  # type: ignore[arg-type]


def bound(windows: int) -> int:
    """More false alarms than this, at the stated rate, happen in fewer than 1 run in 1,000."""
    return int(stats.binom.isf(0.001, windows, RATE))


@pytest.fixture(scope="module")
def images() -> tuple[DriftInputs, DriftTest]:
    inputs = DriftInputs.of_images(pictures(1500, np.random.default_rng(0)))
    return inputs, DriftTest(inputs.reference, inputs.names, inputs.categorical, RATE, permutations=200, seed=0)


def test_pictures_are_tested_cell_by_cell_on_the_detectors_grid(images: tuple[DriftInputs, DriftTest]) -> None:
    inputs, _ = images
    assert inputs.kind == "image" and inputs.reference.shape == (1500, 8 * 8 * 3)
    assert inputs.names[0] == "cell (0,0) channel 0" and inputs.names[-1] == "cell (7,7) channel 2"
    with pytest.raises(InputError, match=r"images are of shape \[8, 8, 3\]; the reference images are \[16, 16, 3\]"):
        inputs.vectors(np.zeros((2, 8, 8, 3)))
    with pytest.raises(InputError, match="holds text"):
        inputs.vectors(["a picture?"])


def test_pictures_like_the_reference_raise_few_false_alarms_and_brighter_ones_drift(
    images: tuple[DriftInputs, DriftTest],
) -> None:
    inputs, test = images
    rng = np.random.default_rng(1)
    alarms = false_alarms(test, inputs, [pictures(100, rng) for _ in range(WINDOWS)])
    assert alarms <= bound(WINDOWS), f"{alarms} false alarms in {WINDOWS} windows"
    report = test.test(inputs.vectors(pictures(100, rng, brightness=1.1)))
    assert report.drifted and report.p_value < 1e-3, report
    assert all(name.startswith("cell (") for name in report.drifted_features)


@pytest.fixture(scope="module")
def texts() -> tuple[DriftInputs, DriftTest]:
    inputs = DriftInputs.of_texts(reviews(1500, np.random.default_rng(0)), seed=0)
    return inputs, DriftTest(inputs.reference, inputs.names, inputs.categorical, RATE, permutations=200, seed=0)


def test_texts_are_tested_on_the_reference_texts_leading_directions_named_by_their_words(
    texts: tuple[DriftInputs, DriftTest],
) -> None:
    inputs, _ = texts
    assert inputs.kind == "text" and inputs.reference.shape == (1500, 16)
    named = " ".join(inputs.names)
    assert inputs.names[0].startswith("text direction 1 (") and any(word in named for word in FILMS + PRAISE + BLAME)
    again = DriftInputs.of_texts(reviews(1500, np.random.default_rng(0)), seed=0)
    assert again.names == inputs.names and np.array_equal(again.reference, inputs.reference), "seeded: the same every time"
    with pytest.raises(InputError, match="the request holds numbers"):
        inputs.vectors(np.zeros((2, 3)))
    with pytest.raises(DetectorFitError, match="too few"):
        DriftInputs.of_texts(["one review", "another"])


def test_reviews_like_the_reference_raise_few_false_alarms_and_a_new_subject_drifts(
    texts: tuple[DriftInputs, DriftTest],
) -> None:
    inputs, test = texts
    rng = np.random.default_rng(1)
    alarms = false_alarms(test, inputs, [reviews(100, rng) for _ in range(WINDOWS)])
    assert alarms <= bound(WINDOWS), f"{alarms} false alarms in {WINDOWS} windows"
    report = test.test(inputs.vectors(reviews(100, rng, shipping=0.3)))
    assert report.drifted and report.p_value < 1e-3, report
    assert report.drifted_features and all(name.startswith("text direction") for name in report.drifted_features)


def test_rows_keep_their_features_and_categories() -> None:
    table = ReferenceTable(np.arange(12.0).reshape(4, 3), ["a", "b", "c"], categorical_names={2: ["x", "y", "z"]})
    inputs = DriftInputs.of_table(table)
    assert inputs.kind == "tabular" and inputs.names == ["a", "b", "c"] and inputs.categorical == frozenset({2})
    with pytest.raises(InputError, match="rows have 2 features; the reference data has 3"):
        inputs.vectors(np.zeros((1, 2)))
