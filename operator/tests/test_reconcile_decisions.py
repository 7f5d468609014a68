"""The pure decisions inside reconcile: when to apply a child."""

from __future__ import annotations

import copy
from typing import Any

from glassbox.operator.api import ExplainedModelSpec, Protocol
from glassbox.operator.builders import OperatorConfig, Parent, build_explainer_isvc
from glassbox.operator.kserve_addressing import PredictTarget
from glassbox.operator.reconcile import is_subset, needs_apply

from sample_manifests import load_sample


def desired_explainer() -> dict[str, Any]:
    manifest = load_sample("tabular-pytorch-gpu")
    target = PredictTarget("http://credit-risk.ml.svc.cluster.local", "credit-risk", Protocol.v2)
    return build_explainer_isvc(Parent("credit-risk", "ml", "u"), ExplainedModelSpec.model_validate(manifest["spec"]), target, OperatorConfig())


def as_stored(desired: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus its own (uid, defaults, status)."""
    live = copy.deepcopy(desired)
    live["metadata"].update(uid="x", resourceVersion="7", generation=1)
    live["spec"]["predictor"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["status"] = {"conditions": []}
    return live


def test_subset_tolerates_server_defaults_but_not_changes() -> None:
    assert is_subset({"a": 1, "b": [{"c": 2}]}, {"a": 1, "b": [{"c": 2, "d": 3}], "e": 4})
    assert not is_subset({"a": 1}, {"a": 2})
    assert not is_subset({"b": [1, 2]}, {"b": [1]})


def test_no_apply_when_the_live_child_is_what_we_want() -> None:
    desired = desired_explainer()
    assert not needs_apply(desired, as_stored(desired))


def test_apply_when_missing_edited_by_hand_or_desired_changed() -> None:
    desired = desired_explainer()
    assert needs_apply(desired, None)

    edited = as_stored(desired)
    edited["spec"]["predictor"]["maxReplicas"] = 99
    assert needs_apply(desired, edited)

    # A field we no longer want is only visible through the hash.
    previous = as_stored(desired)
    previous["spec"]["predictor"]["nodeSelector"] = {"pool": "old"}
    previous["metadata"]["annotations"]["glassbox.dev/spec-hash"] = "0000"
    assert needs_apply(desired, previous)
