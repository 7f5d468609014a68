"""Glassbox's anchor search against alibi's own: the same draws, the same state, the same answer, in far
fewer predictor calls."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from alibi.explainers import AnchorTabular
from alibi.explainers.anchors.anchor_base import AnchorBaseBeam
from alibi.explainers.anchors.anchor_tabular import TabularSampler
from sklearn.linear_model import LogisticRegression

from glassbox.explainers.methods.anchor_search import (
    LeanBeam,
    SameDrawsTabularSampler,
    round_batched_search,
    use_same_draws_sampler,
)

NAMES = [f"x{i}" for i in range(8)]
# Features 1 and 4 are categorical. Category 3 of feature 1 is named but never occurs in the data, so an
# instance holding it asks the sampler for a value no training row has.
CATEGORIES = {1: ["a", "b", "c", "never seen"], 4: ["p", "q", "r"]}


@pytest.fixture(scope="module")
def model_and_data() -> tuple[LogisticRegression, np.ndarray]:
    # The label needs three features, so anchors take several rounds to find.
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, size=(600, 8))
    y = (X[:, 0] + X[:, 1] + X[:, 2] > 1.5).astype(int)
    return LogisticRegression(C=100).fit(X, y), X


@pytest.fixture(scope="module")
def mixed_model_and_data() -> tuple[LogisticRegression, np.ndarray]:
    """Numerical and categorical features, few rows: many anchors hold fewer training rows than a batch."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, size=(160, 8))
    X[:, 1] = rng.integers(0, 3, size=160)
    X[:, 4] = rng.integers(0, 3, size=160)
    y = (X[:, 0] + 0.4 * X[:, 1] + X[:, 2] - 0.3 * X[:, 4] > 1.3).astype(int)
    return LogisticRegression(C=100).fit(X, y), X


def fitted(model: LogisticRegression, X: np.ndarray, categorical: bool = False) -> AnchorTabular:
    explainer = AnchorTabular(
        lambda rows: np.asarray(model.predict_proba(rows)),
        feature_names=NAMES,
        categorical_names=CATEGORIES if categorical else None,
        seed=0,
    )
    explainer.fit(X, disc_perc=(25, 50, 75))
    return explainer


def same(mine: Any, alibis: Any) -> bool:
    if isinstance(alibis, np.ndarray):
        return isinstance(mine, np.ndarray) and mine.dtype == alibis.dtype and np.array_equal(mine, alibis)
    if isinstance(alibis, list | tuple):
        return len(mine) == len(alibis) and all(same(m, a) for m, a in zip(mine, alibis, strict=True))
    if isinstance(alibis, dict):
        return mine.keys() == alibis.keys() and all(same(mine[k], alibis[k]) for k in alibis)
    return bool(mine == alibis)


@pytest.mark.parametrize(
    "instance",
    [
        [0.6, 2.0, 0.5, 0.2, 1.0, 0.1, 0.4, 0.97],  # feature 7 in its top bin
        [0.3, 3.0, 0.55, 0.8, 0.0, 0.5, 0.5, 0.5],  # feature 1 holds the category no row has
    ],
)
def test_the_sampler_draws_what_alibis_draws(
    mixed_model_and_data: tuple[LogisticRegression, np.ndarray], instance: list[float]
) -> None:
    model, X = mixed_model_and_data
    alibis = fitted(model, X, categorical=True).samplers[0]
    mine = copy.deepcopy(alibis)
    mine.__class__ = SameDrawsTabularSampler
    row = np.asarray(instance, dtype=np.float32)
    for sampler in (alibis, mine):
        sampler.build_lookups(row)
        sampler.set_instance_label(row)
        sampler.set_n_covered(10)
    encoded = sorted(alibis.enc2feat_idx)
    # Every one-feature anchor, a spread of longer ones (some with two bins of one feature), the empty one;
    # each asked twice, as a search asks for the same candidates again.
    anchors = [
        (),
        *[(i,) for i in encoded],
        *zip(encoded, encoded[3:], strict=False),
        *zip(encoded, encoded[1:], encoded[5:], strict=False),
    ]
    anchors += anchors
    for seed, anchor in enumerate(anchors):
        for compute_labels in (True, False):
            np.random.seed(seed)
            expected = alibis((4, anchor), 100, compute_labels=compute_labels)
            after_alibis = np.random.get_state()[1].copy()
            np.random.seed(seed)
            got = mine((4, anchor), 100, compute_labels=compute_labels)
            assert same(got, expected), (anchor, compute_labels)
            assert np.array_equal(np.random.get_state()[1], after_alibis), f"{anchor}: a different number of draws"


def test_the_sampler_is_only_set_on_alibis_own(model_and_data: tuple[LogisticRegression, np.ndarray]) -> None:
    model, X = model_and_data
    explainer = fitted(model, X)
    use_same_draws_sampler(explainer)
    assert type(explainer.samplers[0]) is SameDrawsTabularSampler
    with pytest.raises(TypeError, match="expected alibi's TabularSampler, got SameDrawsTabularSampler"):
        use_same_draws_sampler(explainer)
    assert issubclass(SameDrawsTabularSampler, TabularSampler)


def test_the_precision_bounds_are_alibis_to_the_bit() -> None:
    rng = np.random.default_rng(2)
    # Precisions on alibi's clipping edges (0, 1) and between; levels from wide to tight.
    means = np.concatenate([[0.0, 1.0, 1e-9, 1 - 1e-17], rng.uniform(0, 1, 60), rng.integers(0, 101, 30) / 100])
    n_samples = rng.integers(1, 5000, len(means)).astype(float)
    for beta in (0.5, 3.0, 12.0):
        level = beta / n_samples
        assert np.array_equal(LeanBeam.dup_bernoulli(means, level), AnchorBaseBeam.dup_bernoulli(means, level))
        assert np.array_equal(LeanBeam.dlow_bernoulli(means, level), AnchorBaseBeam.dlow_bernoulli(means, level))
    for t, top_n in ((1, 1), (7, 2), (40, 5)):
        bounds: list[tuple[Any, np.ndarray, np.ndarray]] = []
        for beam in (LeanBeam, AnchorBaseBeam):
            ub, lb = np.zeros(len(means)), np.zeros(len(means))
            arms = beam.select_critical_arms(beam.__new__(beam), means, ub, lb, n_samples, 0.1, top_n, t)
            bounds.append((tuple(arms), ub, lb))
        assert same(bounds[0], bounds[1])


@pytest.mark.parametrize(
    ("row", "categorical"),
    [
        ([0.6, 0.55, 0.5, 0.2, 0.9, 0.1, 0.4, 0.7], False),
        ([0.3, 0.5, 0.55, 0.8, 0.1, 0.5, 0.5, 0.5], False),
        ([0.9, 0.7, 0.1, 0.5, 0.5, 0.2, 0.3, 0.9], False),
        ([0.6, 2.0, 0.5, 0.2, 1.0, 0.1, 0.4, 0.97], True),
        ([0.8, 1.0, 0.45, 0.8, 2.0, 0.5, 0.5, 0.5], True),
    ],
)
def test_same_explanation_in_fewer_calls(
    model_and_data: tuple[LogisticRegression, np.ndarray],
    mixed_model_and_data: tuple[LogisticRegression, np.ndarray],
    row: list[float],
    categorical: bool,
) -> None:
    model, X = mixed_model_and_data if categorical else model_and_data
    calls: list[int] = []

    def predict(samples: np.ndarray) -> np.ndarray:
        calls.append(len(samples))
        return np.asarray(model.predict_proba(samples))

    alibis_explainer = AnchorTabular(predict, feature_names=NAMES, categorical_names=CATEGORIES if categorical else None, seed=0)
    alibis_explainer.fit(X, disc_perc=(25, 50, 75))
    mine_explainer = copy.deepcopy(alibis_explainer)
    use_same_draws_sampler(mine_explainer)

    np.random.seed(0)
    calls.clear()
    alibis = alibis_explainer.explain(np.asarray(row), threshold=0.98)
    sequential_calls, sequential_rows = len(calls), sum(calls)

    np.random.seed(0)
    calls.clear()
    with round_batched_search():
        mine = mine_explainer.explain(np.asarray(row), threshold=0.98)

    assert len(alibis.anchor) >= 2
    # The whole explanation: anchor, precision, coverage, and for every step the examples alibi kept.
    assert same(mine.data, alibis.data), (mine.anchor, alibis.anchor)
    assert sum(calls) == sequential_rows  # the same rows are scored...
    # ...in one round trip per search round. alibi's KL-LUCB rounds mostly score two candidates, one call
    # apiece; the instance's label and single-candidate draws cannot be shared.
    assert len(calls) <= sequential_calls / 2 + 2, (len(calls), sequential_calls)
