"""Status as an API: conditions, URLs and children, computed from what the cluster reports.

Everything here is pure: the live KServe objects, the spec's problems and the
current time go in; the status to write comes out. A condition keeps its
lastTransitionTime while its status does not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from glassbox.contract.api import Autoscaling, ExplainedModelSpec, ExplainerSpec, ScaleMetric
from glassbox.contract.wire import DRIFT_PATH, RECORDS_PATH
from glassbox.operator.builders import (
    DEPLOYMENT_MODE_ANNOTATION,
    detector_name,
    drift_name,
    explainer_name,
    graph_name,
    predictor_name,
)
from glassbox.operator.capacity import metric_of
from glassbox.operator.kserve_addressing import PredictTarget, explain_path
from glassbox.operator.validation import SpecProblem

READY = "Ready"
PREDICTOR_READY = "PredictorReady"
EXPLAINER_READY = "ExplainerReady"
GRAPH_READY = "GraphReady"
DETECTOR_READY = "DetectorReady"
SPEC_VALID = "SpecValid"
SCALING_AS_SPECIFIED = "ScalingAsSpecified"
CONDITION_TYPES = (READY, PREDICTOR_READY, EXPLAINER_READY, DETECTOR_READY, GRAPH_READY, SPEC_VALID, SCALING_AS_SPECIFIED)
# KServe's names (old and v0.20) for its mode without Knative: an HPA on cpu or memory, at least one replica.
RAW_DEPLOYMENT_MODES = frozenset({"RawDeployment", "Standard"})
# How many problems one condition message lists before it says how many more.
MAX_PROBLEMS_SHOWN = 3


@dataclass(frozen=True)
class ConditionState:
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class ChildReport:
    """What the operator learned about one child in this reconcile."""

    kind: str
    name: str
    live: dict[str, Any] | None = None
    # Set when the child could not be written or read: (reason, message).
    failure: tuple[str, str] | None = None
    # Set when the child cannot be built yet (an address KServe has not reported): (reason, message).
    waiting: tuple[str, str] | None = None


@dataclass(frozen=True)
class Observation:
    """Everything status is computed from."""

    generation: int | None
    spec: ExplainedModelSpec | None
    problems: list[SpecProblem] = field(default_factory=list)
    predictor: ChildReport | None = None
    explainer: ChildReport | None = None
    graph: ChildReport | None = None
    graph_enabled: bool = True
    # Set when something blocks the whole reconcile (KServe not installed): (reason, message).
    blocked: tuple[str, str] | None = None
    # Where the predictor answers, as KServe reports it (None until it does).
    predictor_target: PredictTarget | None = None
    # The PodDisruptionBudgets of the children with more than one replica.
    budgets: tuple[ChildReport, ...] = ()
    # The outlier detector, when the spec has one, and what it fitted once it is ready.
    detector: ChildReport | None = None
    detector_fitted: dict[str, Any] | None = None
    # The drift monitor, when spec.detector.drift asks for one, and its latest report as read now (None: not read).
    drift: ChildReport | None = None
    drift_report: dict[str, Any] | None = None


def records_summary(explainer: ExplainerSpec) -> str:
    """Where the explainer keeps its records, and what that means for them, in a sentence."""
    records = explainer.records
    if not explainer.keeps_records:
        if records.enabled is False:
            return "off (spec.explainer.records.enabled is false)"
        return (
            f"off: the explainer may run {explainer.autoscaling.max_replicas} replicas and a SQLite file is one pod's; "
            "name a PostgreSQL Secret in spec.explainer.records.postgres to keep them"
        )
    if records.postgres is not None:
        return f"PostgreSQL (Secret {records.postgres.secret_name}, key {records.postgres.key}), shared by every replica"
    if records.persistent_volume_claim is not None:
        return f"SQLite on PersistentVolumeClaim {records.persistent_volume_claim}"
    return "SQLite on an emptyDir, lost with the pod: name a persistentVolumeClaim or postgres to keep them longer"


def describe_problems(problems: list[SpecProblem]) -> str:
    shown = "; ".join(str(problem) for problem in problems[:MAX_PROBLEMS_SHOWN])
    hidden = len(problems) - MAX_PROBLEMS_SHOWN
    return shown + (f"; and {hidden} more" if hidden > 0 else "")


def kserve_readiness(report: ChildReport) -> ConditionState:
    """Readiness of a KServe object, in KServe's own words."""
    if report.failure is not None:
        return ConditionState("False", *report.failure)
    if report.live is None:
        if report.waiting is not None:
            return ConditionState("False", *report.waiting)
        return ConditionState("False", "NotFound", f"{report.kind} '{report.name}' does not exist")
    conditions = (report.live.get("status") or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return ConditionState("Unknown", "Pending", f"waiting for KServe to report on {report.kind} '{report.name}'")
    if ready.get("status") == "True":
        return ConditionState("True", "Ready", f"{report.kind} '{report.name}' is ready")
    detail = ready.get("message") or ready.get("reason") or "not ready"
    return ConditionState(
        "False" if ready.get("status") == "False" else "Unknown",
        ready.get("reason") or "NotReady",
        f"{report.kind} '{report.name}': {detail}",
    )


def _url_of(report: ChildReport | None) -> str | None:
    if report is None or report.live is None:
        return None
    url = (report.live.get("status") or {}).get("url")
    return url.rstrip("/") if isinstance(url, str) and url else None


def _scaling_problems(path: str, autoscaling: Autoscaling, placed: bool, report: ChildReport | None) -> list[str]:
    """What KServe, in the mode it reports for this child, cannot do of what the spec asks."""
    live = (report.live if report else None) or {}
    status = live.get("status") or {}
    mode = status.get("deploymentMode")
    problems = []
    # What the child was given: Glassbox writes a CPU metric itself where the ExplainedModel says RawDeployment.
    written = str(
        ((live.get("spec") or {}).get("predictor") or {}).get("scaleMetric") or metric_of(autoscaling, raw_deployment=False).value
    )
    if mode in RAW_DEPLOYMENT_MODES:
        if written in (ScaleMetric.concurrency.value, ScaleMetric.rps.value):
            chosen = autoscaling.scale_metric is not None
            problems.append(
                f"{path}.scaleMetric: {written} needs KServe's Serverless mode (Knative's autoscaler); "
                f"'{report.name if report else ''}' runs in {mode} mode, whose HPA scales on cpu or memory only: use cpu or memory"
                + (
                    ""
                    if chosen
                    else f", or annotate the ExplainedModel {DEPLOYMENT_MODE_ANNOTATION}: {mode} and Glassbox derives a CPU target"
                )
            )
        if autoscaling.min_replicas == 0:
            problems.append(
                f"{path}.minReplicas: 0 needs KServe's Serverless mode; in {mode} mode KServe keeps at least 1 replica"
            )
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    message = str(ready.get("message") or "")
    if (
        placed
        and ready.get("status") == "False"
        and "must not set the field" in message
        and ("nodeSelector" in message or "tolerations" in message)
    ):
        problems.append(
            f"{path.rsplit('.', 1)[0]}.nodeSelector/tolerations: Knative refuses them unless its "
            "kubernetes.podspec-nodeselector and kubernetes.podspec-tolerations features are enabled (config-features in knative-serving)"
        )
    return problems


def scaling_state(observation: Observation) -> ConditionState:
    """Whether the cluster honours the replicas, metric and placement the spec asks for, as far as KServe reports it."""
    spec = observation.spec
    if spec is None:
        return ConditionState("Unknown", "NotReconciled", "the spec is invalid")
    problems: list[str] = []
    if spec.predictor.deploys_model:
        placed = bool(spec.predictor.node_selector or spec.predictor.tolerations)
        problems += _scaling_problems("spec.predictor.autoscaling", spec.predictor.autoscaling, placed, observation.predictor)
    placed = bool(spec.explainer.node_selector or spec.explainer.tolerations)
    problems += _scaling_problems("spec.explainer.autoscaling", spec.explainer.autoscaling, placed, observation.explainer)
    if problems:
        return ConditionState("False", "NotSupportedByCluster", "; ".join(problems))
    return ConditionState("True", "AsSpecified", "nothing in the spec is ignored by the cluster, as far as KServe reports")


def desired_conditions(observation: Observation) -> dict[str, ConditionState]:
    """The state of every condition type, before transition times."""
    states: dict[str, ConditionState] = {}
    if observation.problems:
        states[SPEC_VALID] = ConditionState("False", "InvalidSpec", describe_problems(observation.problems))
    else:
        states[SPEC_VALID] = ConditionState("True", "Valid", "the spec is valid")

    def child_state(report: ChildReport | None, what: str) -> ConditionState:
        if observation.blocked is not None:
            return ConditionState("Unknown", *observation.blocked)
        if report is None:
            return ConditionState("Unknown", "NotReconciled", f"the {what} is not reconciled while the spec is invalid")
        return kserve_readiness(report)

    states[SCALING_AS_SPECIFIED] = scaling_state(observation)
    states[PREDICTOR_READY] = child_state(observation.predictor, "predictor")
    states[EXPLAINER_READY] = child_state(observation.explainer, "explainer")
    if observation.spec is not None and observation.spec.detector is None:
        states[DETECTOR_READY] = ConditionState("True", "NoDetector", "the spec has no detector")
    else:
        states[DETECTOR_READY] = child_state(observation.detector, "detector")
        if observation.drift is not None and states[DETECTOR_READY].status == "True":
            # The drift monitor is the detector's too (spec.detector.drift): ready when both are.
            drift = child_state(observation.drift, "drift monitor")
            if drift.status != "True":
                states[DETECTOR_READY] = ConditionState(drift.status, drift.reason, f"the drift monitor: {drift.message}")
    if not observation.graph_enabled:
        states[GRAPH_READY] = ConditionState("True", "GraphDisabled", "spec.graph.enabled is false: no InferenceGraph")
    else:
        states[GRAPH_READY] = child_state(observation.graph, "graph")

    if observation.blocked is not None:
        states[READY] = ConditionState("False", *observation.blocked)
    elif observation.problems:
        states[READY] = ConditionState("False", "InvalidSpec", states[SPEC_VALID].message)
    else:
        waiting = [
            f"{kind}: {states[kind].message}"
            for kind in (PREDICTOR_READY, EXPLAINER_READY, DETECTOR_READY, GRAPH_READY)
            if states[kind].status != "True"
        ]
        if waiting:
            states[READY] = ConditionState("False", "ChildrenNotReady", "; ".join(waiting))
        else:
            has_detector = observation.spec is not None and observation.spec.detector is not None
            states[READY] = ConditionState(
                "True", "Ready", f"predictor, explainer{', detector' if has_detector else ''} and graph are ready"
            )
    return states


def merge_conditions(
    previous: list[dict[str, Any]], states: dict[str, ConditionState], generation: int | None, now: str
) -> list[dict[str, Any]]:
    """Conditions in a fixed order, keeping lastTransitionTime where the status did not change."""
    before = {c.get("type"): c for c in previous}
    merged = []
    for kind in CONDITION_TYPES:
        state = states[kind]
        old = before.get(kind)
        unchanged = old is not None and old.get("status") == state.status and old.get("lastTransitionTime")
        merged.append(
            {
                "type": kind,
                "status": state.status,
                "reason": state.reason,
                "message": state.message,
                "lastTransitionTime": old["lastTransitionTime"] if unchanged and old else now,
                "observedGeneration": generation,
            }
        )
    return merged


def compute_status(
    observation: Observation, previous_status: dict[str, Any] | None, parent_name: str, now: str
) -> dict[str, Any]:
    """The whole status subresource to write."""
    previous_status = previous_status or {}
    states = desired_conditions(observation)
    conditions = merge_conditions(previous_status.get("conditions") or [], states, observation.generation, now)
    status: dict[str, Any] = {
        "observedGeneration": observation.generation,
        "conditions": conditions,
        "urls": {},
        "children": {},
    }
    spec = observation.spec
    if spec is not None:
        model = predictor_name(parent_name, spec)
        status["children"] = {
            "predictor": model,
            "explainer": explainer_name(parent_name),
            "graph": graph_name(parent_name) if observation.graph_enabled else None,
            "detector": detector_name(parent_name) if spec.detector is not None else None,
            "drift": drift_name(parent_name) if spec.detector is not None and spec.detector.drift is not None else None,
        }
        status["methods"] = ",".join(method.effective_name for method in spec.explainer.methods)
        status["records"] = records_summary(spec.explainer)
        if observation.detector_fitted is not None:
            status["detector"] = observation.detector_fitted
        if spec.detector is not None and spec.detector.drift is not None:
            # A report not read this time (the monitor restarting, unreachable) leaves the last one shown.
            drift = observation.drift_report or previous_status.get("drift")
            if drift:
                status["drift"] = drift
        target = observation.predictor_target
        predictor_url = _url_of(observation.predictor)
        explainer_url = _url_of(observation.explainer)
        detector_url = _url_of(observation.detector)
        drift_url = _url_of(observation.drift)
        # status.url is where users call from outside; the path is KServe's for the model and protocol.
        status["urls"] = {
            "predict": predictor_url + target.path if predictor_url and target else None,
            "explain": explainer_url + explain_path(target.model_name) if explainer_url and target else None,
            "graph": _url_of(observation.graph),
            "detect": detector_url + f"/v1/models/{detector_name(parent_name)}:predict" if detector_url else None,
            "drift": drift_url + DRIFT_PATH.format(model=drift_name(parent_name)) if drift_url else None,
            "records": explainer_url + RECORDS_PATH.format(model=target.model_name)
            if explainer_url and target and spec.explainer.keeps_records
            else None,
        }
    else:
        # Keep what the last valid spec produced: the children still exist.
        status["children"] = previous_status.get("children") or {}
        status["urls"] = previous_status.get("urls") or {}
        if previous_status.get("methods"):
            status["methods"] = previous_status["methods"]
        for kept in ("detector", "records"):
            if previous_status.get(kept):
                status[kept] = previous_status[kept]
    status["urls"] = {k: v for k, v in status["urls"].items() if v}
    status["children"] = {k: v for k, v in status["children"].items() if v}
    return status


def drift_changes(previous: dict[str, Any], status: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(type, reason, message) of the Event to post when drift began or ended since the previous status."""
    before, now = (previous.get("drift") or {}).get("drifted"), (status.get("drift") or {}).get("drifted")
    if now is None or bool(before) == now:
        return []
    drift = status["drift"]
    if now:
        named = ", ".join(drift["driftedFeatures"]) or "the rows as a whole (correlations)"
        return [
            (
                "Warning",
                "DriftBegan",
                f"the last {drift['windowRows']} inputs drifted from the reference data (p = {drift['pValue']:.3g}, "
                f"false-alarm rate {drift['falseAlarmRate']:g}); most drifted: {named}",
            )
        ]
    return [("Normal", "DriftEnded", f"the last {drift['windowRows']} inputs look like the reference data again")]


def awaits_an_address(observation: Observation) -> bool:
    """Whether this observation is between two steps that KServe's reports drive: a child waits for the address
    KServe reports for the one before it, and nothing else needs anyone (no invalid spec, nothing blocked, no
    child that failed). Such a status is likely replaced within moments, once KServe reports."""
    reports = [
        observation.predictor,
        observation.explainer,
        observation.detector,
        observation.drift,
        observation.graph,
        *observation.budgets,
    ]
    if observation.problems or observation.blocked is not None or any(r is not None and r.failure for r in reports):
        return False
    return any(r is not None and r.waiting is not None for r in reports)


def status_changed(previous: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Whether writing `new` would change anything a reader sees."""
    return {k: v for k, v in (previous or {}).items() if k in new} != new


def status_patch(previous: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch that turns `previous` into `new`, removing keys that are gone (null deletes)."""
    patch: dict[str, Any] = dict(new)
    for key, old_value in (previous or {}).items():
        if key not in new:
            patch[key] = None
        elif isinstance(old_value, dict) and isinstance(new.get(key), dict):
            patch[key] = {**{k: None for k in old_value if k not in new[key]}, **new[key]}
    return patch
