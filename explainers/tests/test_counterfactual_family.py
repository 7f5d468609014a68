"""Counterfactuals that are minimal and plausible on models the project was not built around: the demo's
breast cancer model (30 features) and a generated family (2 to 5 classes, 1 to 3 hidden layers, feature
scales up to 1e4 apart, two classes all but tied).

Each model is a real TorchScript model, reached only through a predict function (black-box, as over the
predictor's API); 20 held-out rows per model. What is checked on every model:
- valid: at least 95% of counterfactuals are scored as another class than the instance's;
- minimal: a median of at most 5 features changed by more than 0.05 standard deviations;
- in distribution: a counterfactual is in the target class's distribution when its nearest reference row of
  that class is no farther than 95% of that class's rows are from their own nearest neighbour (the answer's
  `distribution_ratio` at most 1). Real rows are not always in by this measure either, so the share of
  counterfactuals in may fall short of the share of held-out rows in their own class's by at most 0.1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glassbox.contract.api import CounterfactualParameters, MethodSpec, MethodType
from glassbox.explainers.data.reference_data import ReferenceTable
from glassbox.explainers.methods.base import MethodContext
from glassbox.explainers.methods.counterfactual import CounterfactualMethod
from glassbox.explainers.serving.errors import InputError
from glassbox_testing.measure import in_process_predictor
from glassbox_testing.model_family import FAMILY, Trained, breast_cancer, generated

MEMBERS = ["breast-cancer", *FAMILY]


def trained_member(member: str, folder: Path) -> Trained:
    return breast_cancer(folder) if member == "breast-cancer" else generated(folder, member)


def fitted(trained: Trained, parameters: CounterfactualParameters) -> CounterfactualMethod:
    predict, _ = in_process_predictor(trained.model)
    names = trained.feature_names
    method = CounterfactualMethod(
        MethodSpec(name="counterfactual", type=MethodType.Counterfactual, counterfactual=parameters),
        MethodContext(predict=predict, reference=ReferenceTable(trained.train, names)),
    )
    method.fit()
    return method


@pytest.mark.parametrize("member", MEMBERS)
def test_counterfactuals_are_valid_minimal_and_in_distribution(member: str, tmp_path: Path) -> None:
    trained = trained_member(member, tmp_path)
    method = fitted(trained, CounterfactualParameters(seed=0))
    answers = [method.explain(row[None, :]).data for row in trained.held_out]

    before = np.array([int(a["orig"]["class"][0][0]) for a in answers])
    after = np.array([int(a["cf"]["class"][0][0]) for a in answers])
    changed = np.array([len(a["changed_features"][0]) for a in answers])
    inside = np.array([float(a["distribution_ratio"][0]) <= 1 for a in answers])
    held_out_inside = np.mean(
        [method.neighbourhoods.distance_ratio(row, label)[0] <= 1 for row, label in zip(trained.held_out, before, strict=True)]
    )
    report = f"{member}: valid {np.mean(before != after):.2f}, changed {changed.tolist()}, in {inside.mean():.2f} (held-out rows {held_out_inside:.2f})"

    assert np.mean(before != after) >= 0.95, report
    assert np.median(changed) <= 5, report
    assert inside.mean() >= held_out_inside - 0.1, report
    # What the answer says changed is what changed.
    for answer, count in zip(answers, changed, strict=True):
        moved = np.abs(np.asarray(answer["cf"]["X"]) - np.asarray(answer["orig"]["X"]))[0] / method.scale
        assert count == int((moved > 0.05).sum())


def test_the_summary_says_how_many_features_changed_and_whether_it_is_in_distribution(tmp_path: Path) -> None:
    trained = trained_member("twenty-features", tmp_path)
    method = fitted(trained, CounterfactualParameters(seed=0))
    explanation = method.explain(trained.held_out[:2])
    lines = method.summarize(explanation, trained.held_out[:2])
    for line, changed, ratio in zip(
        lines, explanation.data["changed_features"], explanation.data["distribution_ratio"], strict=True
    ):
        assert f"by changing {len(changed)} of 20 features: " in line, line
        assert all(name in line for name in changed), line
        assert ("within" if ratio <= 1 else "outside") in line, line


def test_immutable_features_never_change(tmp_path: Path) -> None:
    trained = trained_member("twenty-features", tmp_path)
    plain = fitted(trained, CounterfactualParameters(seed=0))
    # The feature the search changes most often, made immutable.
    first = plain.explain(trained.held_out).data["changed_features"]
    most_changed = pd.Series([name for changed in first for name in changed]).value_counts().index[0]
    method = fitted(trained, CounterfactualParameters(seed=0, immutable_features=[most_changed]))
    data = method.explain(trained.held_out).data
    column = method.reference.feature_names.index(most_changed)
    assert np.array_equal(np.asarray(data["cf"]["X"])[:, column], trained.held_out[:, column])
    assert np.mean(np.asarray(data["cf"]["class"]) != np.asarray(data["orig"]["class"])) >= 0.9


def test_a_named_target_class_is_the_one_reached(tmp_path: Path) -> None:
    """Five classes: the counterfactual goes to the class asked for, not the nearest other one."""
    trained = trained_member("deep-five-classes", tmp_path)
    method = fitted(trained, CounterfactualParameters(seed=0))
    rows = trained.held_out[:10]
    scores = method.context.predict(rows)
    least_likely = [int(c) for c in np.argmin(scores, axis=1)]  # never the default (the most likely other class)
    reachable = [
        c if c in method.neighbourhoods.classes else int(np.argsort(-s)[1]) for c, s in zip(least_likely, scores, strict=True)
    ]
    data = method.explain_towards(rows, reachable).data
    reached = [int(c[0]) for c in data["cf"]["class"]]
    assert [int(t[0]) for t in data["target"]] == reachable
    assert np.mean(np.array(reached) == np.array(reachable)) >= 0.9, (reached, reachable)
    assert np.median([len(c) for c in data["changed_features"]]) <= 5, data["changed_features"]
    predicted = int(np.argmax(scores[0]))
    same = method.explain_towards(rows[:1], [predicted])
    assert np.array_equal(same.data["cf"]["X"], rows[:1]) and same.data["changed_features"] == [[]]
    with pytest.raises(InputError, match="target 5 is not a class of this model: its classes are 0 to 4"):
        method.explain_towards(rows[:1], [5])
