"""The counterfactual search's steps, each on a model whose answer is known: class 1 exactly when
x0 + 2 x1 > 1, scored as two probabilities (a logistic model, steep enough that the margin is clear)."""

from __future__ import annotations

import numpy as np
import pytest

from glassbox.explainers.methods.counterfactual_search import (
    MIN_MARGIN,
    ClassNeighbourhoods,
    Features,
    Goal,
    Scorer,
    flip,
    into_distribution,
    revert,
    search,
    shrink,
)


def predict(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    p = 1 / (1 + np.exp(-20 * (rows[:, 0] + 2 * rows[:, 1] - 1)))
    return np.stack([1 - p, p], axis=1)


def reference(rows: int = 600, seed: int = 0) -> tuple[np.ndarray, ClassNeighbourhoods]:
    X = np.random.default_rng(seed).uniform(0, 1, size=(rows, 4))
    return X, ClassNeighbourhoods(X, predict(X).argmax(axis=1), X.std(axis=0))


EVERY_FEATURE = Features(mutable=np.ones(4, dtype=bool), continuous=np.ones(4, dtype=bool))


def test_flip_changes_the_feature_that_moves_the_margin_most() -> None:
    x = np.array([0.1, 0.1, 0.5, 0.5])
    values = np.array([[0.1, 0.9, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0]])
    found = flip(x, Goal(1), values, EVERY_FEATURE, Scorer(predict), max_changes=4)
    assert found is not None
    assert np.flatnonzero(found != x).tolist() == [1]  # x1 counts twice as much as x0
    assert predict(found[None])[0].argmax() == 1


def test_flip_gives_up_when_nothing_offered_flips_the_class_and_never_touches_an_immutable_feature() -> None:
    x = np.array([0.1, 0.1, 0.5, 0.5])
    values = np.array([[0.1, 0.9, 0.0, 0.0]])
    x1_immutable = Features(mutable=np.array([True, False, True, True]), continuous=np.ones(4, dtype=bool))
    sent: list[np.ndarray] = []

    def recording(rows: np.ndarray) -> np.ndarray:
        sent.append(np.asarray(rows))
        return predict(rows)

    # Without x1, the values offer x2 = 0 and x3 = 0 (x0 already is 0.1): neither reaches x0 + 2 x1 > 1.
    assert flip(x, Goal(1), values, x1_immutable, Scorer(recording), max_changes=4) is None
    assert len(sent) == 2  # x2 or x3 first, then the other; then nothing is left to try
    assert all(np.all(rows[:, 1] == 0.1) for rows in sent)


def test_revert_puts_back_what_the_class_does_not_need() -> None:
    x = np.array([0.1, 0.1, 0.5, 0.5])
    everything_moved = np.array([0.9, 0.9, 0.0, 0.0])
    reverted = revert(x, everything_moved, Goal(1), Scorer(predict))
    assert reverted is not None
    assert np.flatnonzero(reverted != x).tolist() == [1]  # x1 = 0.9 alone: 0.1 + 1.8 > 1
    assert revert(x, x.copy(), Goal(1), Scorer(predict)) is None  # the instance does not reach class 1


def test_shrink_moves_a_change_back_as_far_as_the_class_allows() -> None:
    x = np.array([0.1, 0.1, 0.5, 0.5])
    far = np.array([0.1, 0.9, 0.5, 0.5])
    shrunk = shrink(x, far, Goal(1), EVERY_FEATURE, Scorer(predict))
    # x1 tried at 0.1, 0.3, 0.5 and 0.7 (0, 1/4, 1/2, 3/4 of the way): 0.5 is the nearest that keeps class 1.
    assert shrunk[1] == pytest.approx(0.5)
    assert np.array_equal(np.delete(shrunk, 1), np.delete(x, 1))
    assert Goal(1).margins(predict(shrunk[None]))[0] > MIN_MARGIN


def test_into_distribution_brings_a_far_counterfactual_nearer_the_class() -> None:
    X, neighbourhoods = reference()
    x = np.array([0.5, 0.9, 0.5, 3.0])  # x3 far outside the reference data's [0, 1]
    before = neighbourhoods.distance_ratio(x, 1)[0]
    moved = into_distribution(x, Goal(1), EVERY_FEATURE, Scorer(predict), neighbourhoods, steps=6)
    assert before > 1 >= neighbourhoods.distance_ratio(moved, 1)[0]
    assert predict(moved[None])[0].argmax() == 1
    # The stated trade-off: no steps, the sparsest answer as it was; one step, at most one more feature.
    assert np.array_equal(into_distribution(x, Goal(1), EVERY_FEATURE, Scorer(predict), neighbourhoods, steps=0), x)
    one = into_distribution(x, Goal(1), EVERY_FEATURE, Scorer(predict), neighbourhoods, steps=1)
    assert (one != x).sum() == 1 and neighbourhoods.distance_ratio(one, 1)[0] < before


def test_leaving_a_class_is_reached_where_the_target_is_tied_with_another() -> None:
    """Three classes, 1 and 2 scored alike everywhere: neither can win by MIN_MARGIN, but class 0 can be left."""

    def tied(rows: np.ndarray) -> np.ndarray:
        two = predict(rows)
        return np.stack([two[:, 0], two[:, 1] / 2, two[:, 1] / 2], axis=1)

    X, _ = reference()
    neighbourhoods = ClassNeighbourhoods(X, np.where(predict(X).argmax(axis=1) == 1, 1, 0), X.std(axis=0))
    x = np.array([0.1, 0.1, 0.5, 0.5])
    assert search(x, Goal(1), EVERY_FEATURE, Scorer(tied), neighbourhoods, 10, 4, 6) is None
    left = search(x, Goal(1, leave=0), EVERY_FEATURE, Scorer(tied), neighbourhoods, 10, 4, 6)
    assert left is not None and tied(left[None])[0].argmax() != 0
