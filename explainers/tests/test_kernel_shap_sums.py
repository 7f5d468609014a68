"""Glassbox's KernelSHAP against alibi's own: the same SHAP values to the bit."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from alibi.explainers import KernelShap
from sklearn.linear_model import LogisticRegression

from glassbox.explainers.methods.kernel_shap_sums import SameSumsKernelExplainer, use_same_sums


@pytest.fixture(scope="module")
def three_classes() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 7)) * [1, 10, 0.1, 1, 1, 100, 1]
    y = np.digitize(X[:, 0] + X[:, 1] / 10 - X[:, 5] / 100, [-0.5, 0.5])
    return LogisticRegression(max_iter=2000).fit(X, y), X


@pytest.mark.parametrize(
    ("nsamples", "l1_reg", "link", "instances"),
    [("auto", "auto", "identity", 1), (300, False, "identity", 3), (500, "num_features(3)", "logit", 2)],
)
def test_same_shap_values_as_alibis(
    three_classes: tuple[LogisticRegression, np.ndarray], nsamples: object, l1_reg: object, link: str, instances: int
) -> None:
    model, X = three_classes
    alibis = KernelShap(lambda rows: np.asarray(model.predict_proba(rows)), link=link, seed=0)
    np.random.seed(0)
    alibis.fit(X[:300], summarise_background=True, n_background_samples=40)
    mine = copy.deepcopy(alibis)
    use_same_sums(mine)
    assert type(mine._explainer) is SameSumsKernelExplainer
    rows = X[300 : 300 + instances]
    np.random.seed(0)
    expected = alibis.explain(rows, nsamples=nsamples, l1_reg=l1_reg, silent=True)
    np.random.seed(0)
    got = mine.explain(rows, nsamples=nsamples, l1_reg=l1_reg, silent=True)
    assert len(got.shap_values) == 3
    for values, alibis_values in zip(got.shap_values, expected.shap_values, strict=True):
        assert np.array_equal(values, alibis_values)  # to the bit, not within a tolerance
    assert np.array_equal(got.expected_value, expected.expected_value)
    assert np.array_equal(got.data["raw"]["raw_prediction"], expected.data["raw"]["raw_prediction"])


def test_only_alibis_own_explainer_is_changed(three_classes: tuple[LogisticRegression, np.ndarray]) -> None:
    model, X = three_classes
    explainer = KernelShap(lambda rows: np.asarray(model.predict_proba(rows)), seed=0)
    explainer.fit(X[:50])
    use_same_sums(explainer)
    with pytest.raises(TypeError, match="expected alibi's KernelExplainerWrapper, got SameSumsKernelExplainer"):
        use_same_sums(explainer)
