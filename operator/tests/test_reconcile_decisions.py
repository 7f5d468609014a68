"""The pure decisions inside reconcile: when to apply a child."""

from __future__ import annotations

import copy
from typing import Any

from glassbox.contract.api import ExplainedModelSpec, Protocol
from glassbox.operator.builders import OperatorConfig, Parent, build_explainer_isvc
from glassbox.operator.kserve_addressing import PredictTarget
from glassbox.operator.reconcile import (
    is_subset,
    needs_apply,
    ownership_conflict,
    reconcile_lane,
    spec_changed_since_status,
    warnings_to_post,
)
from glassbox_testing.samples import load_sample


def desired_explainer() -> dict[str, Any]:
    manifest = load_sample("tabular-pytorch-gpu")
    target = PredictTarget("http://credit-risk.ml.svc.cluster.local", "credit-risk", Protocol.v2)
    return build_explainer_isvc(
        Parent("credit-risk", "ml", "u"), ExplainedModelSpec.model_validate(manifest["spec"]), target, OperatorConfig()
    )


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


PARENT = Parent("churn", "ml", "uid-of-this-one")


def test_a_child_is_ours_only_when_this_very_object_controls_it() -> None:
    ours = as_stored(desired_explainer())
    ours["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "glassbox.dev/v1alpha1",
            "kind": "ExplainedModel",
            "name": "churn",
            "uid": "uid-of-this-one",
            "controller": True,
        }
    ]
    assert ownership_conflict(None, PARENT) is None
    assert ownership_conflict(ours, PARENT) is None

    hand_made = {"kind": "InferenceService", "metadata": {"name": "churn", "namespace": "ml"}}
    reason, message = ownership_conflict(hand_made, PARENT) or ("", "")
    assert reason == "NameConflict"
    assert "InferenceService 'churn'" in message and "was not created by Glassbox" in message

    # Our owner reference without controller: true (added by someone else) does not make it ours.
    borrowed = copy.deepcopy(ours)
    borrowed["metadata"]["ownerReferences"][0]["controller"] = False
    assert ownership_conflict(borrowed, PARENT) is not None

    others = copy.deepcopy(ours)
    others["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "u2", "controller": True}
    ]
    reason, message = ownership_conflict(others, PARENT) or ("", "")
    assert reason == "NameConflict" and "controlled by Deployment 'web'" in message

    # The child of an ExplainedModel of the same name that was deleted: the garbage collector's to remove.
    earlier = copy.deepcopy(ours)
    earlier["metadata"]["ownerReferences"][0]["uid"] = "uid-of-a-deleted-one"
    reason, _ = ownership_conflict(earlier, PARENT) or ("", "")
    assert reason == "PreviousOwnerBeingDeleted"


def _status(*conditions: tuple[str, str, str, str]) -> dict[str, Any]:
    return {"conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions]}


def test_a_warning_is_posted_once_per_problem_a_person_must_solve() -> None:
    conflict = ("PredictorReady", "False", "NameConflict", "InferenceService 'churn' already exists")
    invalid = ("SpecValid", "False", "InvalidSpec", "spec.predictor: set storageUri")
    pending = ("ExplainerReady", "Unknown", "Pending", "waiting for KServe")
    assert warnings_to_post({}, _status(conflict, pending)) == [("NameConflict", conflict[3])]
    assert warnings_to_post(_status(conflict), _status(conflict, pending)) == []
    assert warnings_to_post(_status(conflict), _status(invalid)) == [("InvalidSpec", invalid[3])]
    # A transient state (waiting, KServe not ready) is not a warning.
    assert warnings_to_post({}, _status(pending)) == []


def test_only_a_spec_changed_since_the_last_status_can_leave_children_to_prune() -> None:
    assert not spec_changed_since_status({}, 1)  # new: no children yet
    assert not spec_changed_since_status({"observedGeneration": 3}, 3)
    assert spec_changed_since_status({"observedGeneration": 3}, 4)


def _em(generation: int, observed: int | None, **metadata: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"metadata": {"name": "a", "namespace": "ml", "generation": generation, **metadata}}
    if observed is not None:
        body["status"] = {"observedGeneration": observed}
    return body


def test_an_explained_models_event_queues_it_now_only_when_someone_waits_for_the_reconcile() -> None:
    assert reconcile_lane("ADDED", None, _em(1, None)) == "now"  # created
    assert reconcile_lane("MODIFIED", _em(1, 1), _em(2, 1)) == "now"  # spec changed
    assert reconcile_lane(None, None, _em(3, 2)) == "now"  # changed while the operator was stopped
    assert reconcile_lane(None, None, _em(1, None)) == "now"  # created while it was stopped
    assert reconcile_lane(None, None, _em(2, 2)) == "backlog"  # a restart's listing: reconciled before, checked later
    assert reconcile_lane("MODIFIED", _em(2, 1), _em(2, 2)) is None  # the operator's own status write
    relabelled = _em(2, 2, annotations={"serving.kserve.io/deploymentMode": "RawDeployment"})
    assert reconcile_lane("MODIFIED", _em(2, 2), relabelled) == "now"  # metadata the children are built from
    assert reconcile_lane("MODIFIED", None, _em(2, 2)) is None  # nothing to compare with: the periodic check covers it
    assert reconcile_lane("MODIFIED", _em(2, 1), _em(2, 1, deletionTimestamp="2026-12-07T00:00:00Z")) is None
    assert reconcile_lane("DELETED", _em(2, 2), _em(2, 2)) is None
