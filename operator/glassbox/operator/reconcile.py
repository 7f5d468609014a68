"""One level-based reconcile for create, update, resume, timer and child events.

It reads the ExplainedModel, builds the desired children with the pure
builders, applies those that differ from the live ones, deletes children it no
longer wants, and writes a status computed from what KServe reports. Running it
twice in a row changes nothing the second time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glassbox.operator.api import API_VERSION, KIND, ExplainedModelSpec
from glassbox.operator.builders import (
    GRAPH_API_VERSION,
    ISVC_API_VERSION,
    PARENT_LABEL,
    SPEC_HASH_ANNOTATION,
    DesiredChildren,
    OperatorConfig,
    Parent,
    build_children,
    predictor_name,
)
from glassbox.operator.kube import KubeApi, KubeError, Rejected, ResourceTypeMissing
from glassbox.operator.status import (
    SPEC_VALID,
    ChildReport,
    Observation,
    compute_status,
    status_changed,
    status_patch,
)
from glassbox.operator.validation import SpecProblem, find_spec_problems

log = logging.getLogger(__name__)

CHILD_KINDS = ((ISVC_API_VERSION, "InferenceService"), (GRAPH_API_VERSION, "InferenceGraph"))


@dataclass(frozen=True)
class Outcome:
    """What a reconcile concluded, for the handler to turn into kopf's terms."""

    ready: bool
    problems: list[SpecProblem]
    # Set when the reconcile should be retried later (KServe missing, API errors).
    retry_reason: str | None = None


EventSink = Callable[[dict[str, Any], str, str], None]  # (body, reason, message) -> None


def is_subset(desired: Any, live: Any) -> bool:
    """Whether every field of `desired` has the same value in `live` (server defaults may add more)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and is_subset(v, live[k]) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(map(is_subset, desired, live))
    return bool(desired == live)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Apply when the child is missing, our desired state changed, or someone edited what we own."""
    if live is None:
        return True
    live_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if live_hash != desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return True
    live_meta = live.get("metadata") or {}
    return not (
        is_subset(desired["spec"], live.get("spec"))
        and is_subset(desired["metadata"]["labels"], live_meta.get("labels"))
        and is_subset(desired["metadata"]["ownerReferences"], live_meta.get("ownerReferences"))
    )


class Reconciler:
    """Holds the API wrapper and the operator's configuration; reconciles one ExplainedModel at a time per object."""

    def __init__(self, api: KubeApi, config: OperatorConfig, now: Callable[[], str], emit_warning: EventSink):
        self.api = api
        self.config = config
        self.now = now
        self.emit_warning = emit_warning
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._locks_guard:
            self._locks.pop((namespace, name), None)

    def reconcile_named(self, namespace: str, name: str) -> Outcome | None:
        """Reconcile the ExplainedModel with this name, if it still exists."""
        body = self.api.get(API_VERSION, KIND, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return self.reconcile(body)

    def reconcile(self, body: dict[str, Any], created: bool = False) -> Outcome:
        """`created`: the object was just created, so it has no children yet to read or prune
        (applying is idempotent, so a child that does exist is still right afterwards)."""
        meta = body["metadata"]
        with self._lock_for(meta["namespace"], meta["name"]):
            return self._reconcile(body, created)

    def _reconcile(self, body: dict[str, Any], created: bool = False) -> Outcome:
        meta = body["metadata"]
        parent = Parent(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"])
        generation = meta.get("generation")
        previous_status = body.get("status") or {}
        spec, problems = find_spec_problems(parent.name, body.get("spec") or {})

        if spec is None:
            observation = Observation(
                generation=generation,
                spec=None,
                problems=problems,
                graph_enabled=bool(((body.get("spec") or {}).get("graph") or {}).get("enabled", True)),
            )
            status = self._write_status(parent, previous_status, observation)
            self._warn_if_new(body, previous_status, status)
            return Outcome(ready=False, problems=problems)

        desired = build_children(parent, spec, self.config)
        try:
            observation = self._converge_children(parent, spec, desired, generation, created)
            if not created:
                self._prune(parent, desired)
        except ResourceTypeMissing as missing:
            observation = Observation(
                generation=generation, spec=spec, graph_enabled=spec.graph.enabled,
                blocked=("KServeNotInstalled", str(missing)),
            )
            self._write_status(parent, previous_status, observation)
            return Outcome(ready=False, problems=[], retry_reason=str(missing))
        status = self._write_status(parent, previous_status, observation)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        # Only API failures are worth a retry; a missing existing InferenceService is
        # noticed by its watch when it appears.
        failures = [
            r.failure[1] for r in (observation.predictor, observation.explainer, observation.graph)
            if r and r.failure and r.failure[0] == "ApiError"
        ]
        return Outcome(ready=ready, problems=[], retry_reason="; ".join(failures) or None)

    def _converge_children(
        self, parent: Parent, spec: ExplainedModelSpec, desired: DesiredChildren, generation: int | None, created: bool = False
    ) -> Observation:
        def converge(body: dict[str, Any]) -> ChildReport:
            kind, name = body["kind"], body["metadata"]["name"]
            try:
                live = None if created else self.api.get(body["apiVersion"], kind, parent.namespace, name)
                if needs_apply(body, live):
                    log.info("applying %s %s/%s", kind, parent.namespace, name)
                    live = self.api.apply(body)
                return ChildReport(kind=kind, name=name, live=live)
            except ResourceTypeMissing:
                raise
            except Rejected as rejected:
                return ChildReport(kind=kind, name=name, failure=("Rejected", str(rejected)))
            except KubeError as error:
                return ChildReport(kind=kind, name=name, failure=("ApiError", str(error)))

        if desired.predictor is not None:
            predictor = converge(desired.predictor)
        else:
            existing = predictor_name(parent.name, spec)
            failure: tuple[str, str] | None
            try:
                live = self.api.get(ISVC_API_VERSION, "InferenceService", parent.namespace, existing)
            except ResourceTypeMissing:
                raise
            except KubeError as error:
                live, failure = None, ("ApiError", str(error))
            else:
                failure = None if live is not None else (
                    "InferenceServiceNotFound",
                    f"spec.predictor.inferenceServiceName: no InferenceService '{existing}' in namespace "
                    f"'{parent.namespace}'; create it or name one that exists",
                )
            predictor = ChildReport(kind="InferenceService", name=existing, live=live, failure=failure)
        explainer = converge(desired.explainer)
        graph = converge(desired.graph) if desired.graph is not None else None
        return Observation(
            generation=generation, spec=spec, predictor=predictor, explainer=explainer, graph=graph,
            graph_enabled=spec.graph.enabled,
        )

    def _prune(self, parent: Parent, desired: DesiredChildren) -> None:
        """Delete children this ExplainedModel owns but no longer wants (for example after switching to an existing predictor)."""
        wanted = {(body["kind"], body["metadata"]["name"]) for body in desired.objects()}
        for api_version, kind in CHILD_KINDS:
            for live in self.api.list(api_version, kind, parent.namespace, f"{PARENT_LABEL}={parent.name}"):
                meta = live["metadata"]
                owned = any(ref.get("uid") == parent.uid for ref in meta.get("ownerReferences") or [])
                if owned and (kind, meta["name"]) not in wanted:
                    log.info("deleting %s %s/%s that the spec no longer wants", kind, parent.namespace, meta["name"])
                    self.api.delete(api_version, kind, parent.namespace, meta["name"], meta["uid"])

    def _write_status(self, parent: Parent, previous: dict[str, Any], observation: Observation) -> dict[str, Any]:
        status = compute_status(observation, previous, parent.name, self.now())
        if status_changed(previous, status):
            self.api.patch_status(parent.namespace, parent.name, status_patch(previous, status))
        return status

    def _warn_if_new(self, body: dict[str, Any], previous: dict[str, Any], status: dict[str, Any]) -> None:
        """One Event per distinct problem, not one per reconcile."""
        def spec_message(s: dict[str, Any]) -> str | None:
            for condition in s.get("conditions") or []:
                if condition.get("type") == SPEC_VALID and condition.get("status") == "False":
                    return str(condition.get("message"))
            return None

        message = spec_message(status)
        if message and message != spec_message(previous):
            self.emit_warning(body, "InvalidSpec", message)
