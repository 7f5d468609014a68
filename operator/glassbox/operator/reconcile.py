"""One level-based reconcile for a new or changed ExplainedModel, the operator's start-up, the periodic check and child events.

It reads the ExplainedModel, builds the desired children with the pure
builders, applies those that differ from the live ones, deletes children it no
longer wants, and writes a status computed from what KServe reports. Running it
twice in a row changes nothing the second time.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glassbox.contract.api import API_VERSION, GROUP, KIND, ExplainedModelSpec
from glassbox.operator.builders import (
    DEPLOYMENT_MODE_ANNOTATION,
    GRAPH_API_VERSION,
    ISVC_API_VERSION,
    PARENT_LABEL,
    PDB_API_VERSIONS,
    SPEC_HASH_ANNOTATION,
    OperatorConfig,
    Parent,
    build_detector_isvc,
    build_disruption_budgets,
    build_drift_isvc,
    build_explainer_isvc,
    build_inference_graph,
    build_predictor_isvc,
    detector_name,
    drift_name,
    explainer_generation,
    explainer_name,
    graph_name,
    graph_needs_detector,
    predictor_name,
    predictor_target_of_own,
)
from glassbox.operator.detector_fitted import read_detector_fitted, read_drift_report
from glassbox.operator.kserve_addressing import PredictTarget, address_url, predict_target, runtime_name
from glassbox.operator.kube import FIELD_MANAGER, KubeApi, KubeError, Rejected, ResourceTypeMissing
from glassbox.operator.status import (
    SPEC_VALID,
    ChildReport,
    Observation,
    awaits_an_address,
    compute_status,
    drift_changes,
    kserve_readiness,
    status_changed,
    status_patch,
)
from glassbox.operator.validation import SpecProblem, find_spec_problems, policy_problems
from glassbox.operator.watch_cache import WatchCache

log = logging.getLogger(__name__)

# A child's name is taken by an object Glassbox did not create (condition reason and Event reason).
NAME_CONFLICT = "NameConflict"
CHILD_KINDS = ((ISVC_API_VERSION, "InferenceService"), (GRAPH_API_VERSION, "InferenceGraph"))
RUNTIME_API_VERSION = "serving.kserve.io/v1alpha1"
# The operator holds back a status that only says a child waits for KServe's report on the one before, this long
# at most: reports that come within it (as in a cluster where KServe answers at once) make one status write, not
# one per step. Longer waits (Knative scaling a predictor up) show each step, this much later.
STATUS_HOLD_SECONDS = 2.0
# ...and this long while the operator is behind (names wait for a worker): a burst of new objects then spends the
# API server on the children, and each object's progress reaches its status at most this much later.
STATUS_HOLD_BEHIND_SECONDS = 10.0


@dataclass(frozen=True)
class Outcome:
    """What a reconcile concluded, for the work queue to act on (handlers.reconcile_queued)."""

    ready: bool
    problems: list[SpecProblem]
    # Set when the reconcile should be retried later (KServe missing, API errors).
    retry_reason: str | None = None
    # Set when a status was held back (see `status_hold_seconds`): reconcile again after this many seconds.
    requeue_after: float | None = None


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


def with_revision(body: dict[str, Any], live: dict[str, Any]) -> dict[str, Any]:
    """`body` to be applied only onto `live` as it was seen: its resourceVersion, a precondition server-side apply
    honours (409 when the object changed since, or was replaced by another of the same name)."""
    return {**body, "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}


def ownership_conflict(live: dict[str, Any] | None, parent: Parent) -> tuple[str, str] | None:
    """Why the operator must not write `live`, as (reason, message); None when it is absent or this parent's child.

    A child is ours only when it names this very ExplainedModel (its uid) as its controller: an object
    someone else made, or another owner's, is never overwritten, adopted or deleted."""
    if live is None:
        return None
    meta = live.get("metadata") or {}
    refs = meta.get("ownerReferences") or []
    if any(ref.get("uid") == parent.uid and ref.get("controller") for ref in refs):
        return None
    what = f"{live.get('kind', 'object')} '{meta.get('name')}'"
    earlier = [
        ref
        for ref in refs
        if ref.get("kind") == KIND and ref.get("name") == parent.name and str(ref.get("apiVersion", "")).startswith(f"{GROUP}/")
    ]
    if earlier:
        return (
            "PreviousOwnerBeingDeleted",
            f"{what} belongs to an earlier ExplainedModel '{parent.name}' that was deleted; it is created anew "
            "once Kubernetes' garbage collector has removed it",
        )
    controller = next((ref for ref in refs if ref.get("controller")), None)
    holder = (
        f"is controlled by {controller.get('kind')} '{controller.get('name')}'" if controller else "was not created by Glassbox"
    )
    return (
        NAME_CONFLICT,
        f"{what} already exists in namespace '{parent.namespace}' and {holder}; Glassbox never writes an object it did "
        f"not create: delete or rename that object, or give this ExplainedModel another name",
    )


def spec_changed_since_status(previous_status: dict[str, Any], generation: int | None) -> bool:
    """Whether children may exist that the spec no longer wants: only a spec that changed since the status
    was last written (observedGeneration) can drop one. A new object has no status and no children yet;
    a prune that failed left the status unwritten, so the next reconcile prunes again."""
    observed = previous_status.get("observedGeneration")
    return observed is not None and observed != generation


def reconcile_lane(event_type: str | None, before: dict[str, Any] | None, body: dict[str, Any]) -> str | None:
    """Which lane of the work queue an ExplainedModel's watch event puts it in: "now", "backlog", or None (no
    reconcile). `before` is the copy the watches held until this event, None if they held none.

    Its generation against the status's observedGeneration says whether the operator has reconciled this spec:
    a new object (no status yet) or a changed spec goes "now". An object a listing finds (event type None: the
    operator's start-up, a watch that restarted) already reconciled at its generation is checked from the
    "backlog", behind anything someone is waiting for. A change of labels or annotations (the deployment-mode
    annotation among them) goes "now"; the operator's own status writes ask for nothing."""
    meta = body.get("metadata") or {}
    if event_type == "DELETED" or meta.get("deletionTimestamp"):
        return None
    if event_type == "ADDED" or (body.get("status") or {}).get("observedGeneration") != meta.get("generation"):
        return "now"
    if event_type is None:
        return "backlog"
    before_meta = (before or {}).get("metadata") or {}
    if before is not None and (
        before_meta.get("annotations") != meta.get("annotations") or before_meta.get("labels") != meta.get("labels")
    ):
        return "now"
    return None


def _needs_action(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """condition type -> (reason, message), for the conditions that only a person can resolve."""
    return {
        str(c.get("type")): (str(c.get("reason")), str(c.get("message")))
        for c in status.get("conditions") or []
        if c.get("status") == "False" and ((c.get("type") == SPEC_VALID) or (c.get("reason") == NAME_CONFLICT))
    }


def warnings_to_post(previous: dict[str, Any], status: dict[str, Any]) -> list[tuple[str, str]]:
    """(reason, message) of each problem that is new since the previous status: an invalid spec or a name conflict."""
    before = _needs_action(previous)
    return [found for kind, found in _needs_action(status).items() if before.get(kind) != found]


def in_reported_mode(parent: Parent, live: dict[str, Any] | None) -> Parent:
    """The parent, with the mode KServe reports running the predictor in (the cluster's default where the
    object names none): under RawDeployment the autoscaler is an HPA, and the children are built for it."""
    reported = ((live or {}).get("status") or {}).get("deploymentMode")
    return dataclasses.replace(parent, reported_mode=reported if isinstance(reported, str) else None)


class Reconciler:
    """Holds the API wrapper and the operator's configuration; reconciles one ExplainedModel at a time per object."""

    def __init__(
        self,
        api: KubeApi,
        config: OperatorConfig,
        now: Callable[[], str],
        emit_warning: EventSink,
        emit_normal: EventSink | None = None,
        cache: WatchCache | None = None,
        parents: WatchCache | None = None,
        status_hold_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        behind: Callable[[], bool] = lambda: False,
        status_hold_behind_seconds: float = STATUS_HOLD_BEHIND_SECONDS,
    ):
        self.api = api
        # A status that only says a child waits for the address KServe reports for the one before is held back up to
        # this long (0: never), so that the next step's status replaces it unwritten (`awaits_an_address`).
        self.status_hold_seconds = status_hold_seconds
        # While `behind()` says other objects wait for a worker, up to this long instead.
        self._behind = behind
        self.status_hold_behind_seconds = status_hold_behind_seconds
        self._clock = clock
        self._held_since: dict[tuple[str, str], float] = {}
        # What the watches last said of the children (InferenceServices and InferenceGraphs); none: every read asks.
        self.cache = cache
        # What they last said of the ExplainedModels (and the answers to the status patches); none: each is read.
        self.parents = parents
        self.config = config
        self.now = now
        self.emit_warning = emit_warning
        # Events that need no action (drift ended); none are posted without a sink.
        self.emit_normal = emit_normal
        self._pdb_api_version: str | None = None
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock_for(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._locks_guard:
            self._locks.pop((namespace, name), None)
            self._held_since.pop((namespace, name), None)

    def reconcile_named(self, namespace: str, name: str) -> Outcome | None:
        """Reconcile the ExplainedModel with this name, if it still exists: as the watches last saw it, or as read."""
        known, body = self.parents.get(API_VERSION, KIND, namespace, name) if self.parents is not None else (False, None)
        if not known:
            body = self.api.get(API_VERSION, KIND, namespace, name)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        return self.reconcile(body)

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        with self._lock_for(meta["namespace"], meta["name"]):
            return self._reconcile(body)

    def _reconcile(self, body: dict[str, Any]) -> Outcome:
        meta = body["metadata"]
        parent = Parent(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            deployment_mode=(meta.get("annotations") or {}).get(DEPLOYMENT_MODE_ANNOTATION),
            generation=meta.get("generation"),
        )
        generation = meta.get("generation")
        previous_status = body.get("status") or {}
        spec, problems = find_spec_problems(parent.name, body.get("spec") or {})
        if spec is not None:
            problems = policy_problems(spec, self.config.allow_service_account_names)
            spec = spec if not problems else None

        if spec is None:
            observation = Observation(
                generation=generation,
                spec=None,
                problems=problems,
                graph_enabled=bool(((body.get("spec") or {}).get("graph") or {}).get("enabled", True)),
            )
            status, _ = self._write_status(parent, previous_status, observation)
            self._warn_if_new(body, previous_status, status)
            return Outcome(ready=False, problems=problems)

        try:
            observation = self._converge_children(parent, spec, generation, previous_status)
            if spec_changed_since_status(previous_status, generation):
                self._prune(parent, self._wanted(parent, spec))
        except ResourceTypeMissing as missing:
            observation = Observation(
                generation=generation,
                spec=spec,
                graph_enabled=spec.graph.enabled,
                blocked=("KServeNotInstalled", str(missing)),
            )
            self._write_status(parent, previous_status, observation)
            return Outcome(ready=False, problems=[], retry_reason=str(missing))
        status, held_for = self._write_status(parent, previous_status, observation, may_hold=True)
        self._warn_if_new(body, previous_status, status)
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
        # Only API failures are worth a retry; a missing existing InferenceService is
        # noticed by its watch when it appears.
        failures = [
            r.failure[1]
            for r in (observation.predictor, observation.explainer, observation.detector, observation.graph, *observation.budgets)
            if r and r.failure and r.failure[0] == "ApiError"
        ]
        return Outcome(ready=ready, problems=[], retry_reason="; ".join(failures) or None, requeue_after=held_for)

    def _converge_children(
        self, parent: Parent, spec: ExplainedModelSpec, generation: int | None, previous_status: dict[str, Any]
    ) -> Observation:
        """Predictor, then explainer, then graph: each needs the address KServe reports for the one before."""
        predictor, target, parent = self._converge_predictor(parent, spec)
        explainer = self._converge_explainer(parent, spec, predictor, target)
        detector_body = build_detector_isvc(parent, spec, self.config)
        detector = self._converge(parent, detector_body) if detector_body is not None else None
        drift_body = build_drift_isvc(parent, spec, self.config)
        drift = self._converge(parent, drift_body) if drift_body is not None else None
        drift_report = self._drift_report(parent, drift) if drift is not None else None
        detector_fitted = self._detector_fitted(parent, detector, previous_status) if detector is not None else None
        graph = self._converge_graph(parent, spec, target, explainer, detector) if spec.graph.enabled else None
        budgets = tuple(self._converge(parent, body) for body in build_disruption_budgets(parent, spec, self.pdb_api_version()))
        return Observation(
            generation=generation,
            spec=spec,
            predictor=predictor,
            explainer=explainer,
            graph=graph,
            graph_enabled=spec.graph.enabled,
            predictor_target=target,
            budgets=budgets,
            detector=detector,
            drift=drift,
            drift_report=drift_report,
            detector_fitted=detector_fitted,
        )

    def _live(self, api_version: str, kind: str, namespace: str, name: str, cached_only_if_present: bool) -> Any:
        """The live child or None. A child the watches hold is taken from the cache. A name they do not hold is
        taken as free where the cache holds every object of that kind in the namespace (`WatchCache.complete`),
        else read. With `cached_only_if_present`, a name they hold as deleted is read too unless the cache is
        complete (something may be written to it next, and an object someone else made may sit there)."""
        if self.cache is not None:
            known, cached = self.cache.get(api_version, kind, namespace, name)
            if cached is not None or self.cache.complete(api_version, kind, namespace):
                return cached
            if known and not cached_only_if_present:
                return None
        return self.api.get(api_version, kind, namespace, name)

    def _converge(
        self, parent: Parent, body: dict[str, Any], rebuilt: Callable[[dict[str, Any] | None], dict[str, Any]] | None = None
    ) -> ChildReport:
        """Apply `body` where the live child differs; `rebuilt(live)`, when given, is the body once the live child is read.
        The live child comes from the watches' cache where they hold it, else it is read (the name may be taken by
        an object that is not ours, even right after a create). What is written is written onto the child as it was
        judged: an existing one with its resourceVersion as a precondition, an absent one without taking over any
        field another manager set meanwhile. Where that is refused (the child changed, or someone else's object took
        the name since), it is read and judged again, once."""
        kind, name = body["kind"], body["metadata"]["name"]
        desired = body
        try:
            for first_pass in (True, False):
                if first_pass:
                    live = self._live(body["apiVersion"], kind, parent.namespace, name, cached_only_if_present=True)
                else:
                    live = self.api.get(body["apiVersion"], kind, parent.namespace, name)
                conflict = ownership_conflict(live, parent)
                if conflict is not None:
                    return ChildReport(kind=kind, name=name, failure=conflict)
                body = rebuilt(live) if rebuilt is not None else desired
                if not needs_apply(body, live):
                    return ChildReport(kind=kind, name=name, live=live)
                log.info("applying %s %s/%s", kind, parent.namespace, name)
                try:
                    if live is None:
                        live = self._create(body)
                        if live is None:  # someone else's object took the name meanwhile: it is read and reported
                            continue
                    else:
                        live = self.api.apply(with_revision(body, live))
                except (ResourceTypeMissing, Rejected):
                    raise
                except KubeError as error:
                    if not first_pass:
                        raise
                    log.info("%s %s/%s changed since it was seen (%s); reading it", kind, parent.namespace, name, error)
                    continue
                if self.cache is not None:
                    self.cache.written(live)
                return ChildReport(kind=kind, name=name, live=live)
            raise AssertionError("the second pass returns or raises")  # pragma: no cover
        except ResourceTypeMissing:
            raise
        except Rejected as rejected:
            return ChildReport(kind=kind, name=name, failure=("Rejected", str(rejected)))
        except KubeError as error:
            return ChildReport(kind=kind, name=name, failure=("ApiError", str(error)))

    def _create(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """Server-side apply of a child read as absent; None if someone else's object took its name since the read.

        Server-side apply has no create-only form (a resourceVersion or uid precondition refuses a create too), and a
        plain create would leave its fields owned by an `Update` entry that later applies could never remove. So the
        apply does not force: a field of theirs set to another value is a conflict (409, raised). Where theirs has
        no field in common with ours, the apply merges, and the answer shows another manager: the operator's
        fields are withdrawn again at once (an apply of nothing by the same manager removes what only it set)."""
        written = self.api.apply(body, force=False)
        others = {entry.get("manager") for entry in (written.get("metadata") or {}).get("managedFields") or []} - {FIELD_MANAGER}
        if not others:
            return written
        meta = body["metadata"]
        log.warning(
            "%s %s/%s was created by %s just before the operator's create; withdrawing",
            body["kind"],
            meta["namespace"],
            meta["name"],
            sorted(map(str, others)),
        )
        self.api.apply(
            {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            },
            force=False,
        )
        return None

    def _waiting(self, parent: Parent, api_version: str, kind: str, name: str, reason: str, message: str) -> ChildReport:
        """A child that cannot be built yet: it is left as it is, and its status says what it waits for. Nothing is
        written, so what the watches say of its name will do, and a name they do not know counts as free: an
        object someone else made there is reported once the watches show it, or when the name is read before
        the child is created, whichever comes first (without the watches' cache, the name is read each time)."""
        try:
            if self.cache is not None:
                live = self.cache.get(api_version, kind, parent.namespace, name)[1]
            else:
                live = self.api.get(api_version, kind, parent.namespace, name)
        except ResourceTypeMissing:
            raise
        except KubeError as error:
            return ChildReport(kind=kind, name=name, failure=("ApiError", str(error)))
        conflict = ownership_conflict(live, parent)
        if conflict is not None:
            return ChildReport(kind=kind, name=name, failure=conflict)
        return ChildReport(kind=kind, name=name, live=live, waiting=(reason, message))

    def _converge_predictor(self, parent: Parent, spec: ExplainedModelSpec) -> tuple[ChildReport, PredictTarget | None, Parent]:
        """The predictor Glassbox deploys (built in the mode KServe reports for it once read), or the existing one;
        where it answers; and the parent as its siblings are built: in the predictor's mode, same annotation, same default."""
        predictor_body = build_predictor_isvc(parent, spec, self.config)
        if predictor_body is None:
            predictor, target = self._existing_predictor(parent, spec)
            return predictor, target, parent

        def predictor_as_reported(live: dict[str, Any] | None) -> dict[str, Any]:
            body = build_predictor_isvc(in_reported_mode(parent, live), spec, self.config)
            assert body is not None
            return body

        predictor = self._converge(parent, predictor_body, predictor_as_reported)
        return predictor, predictor_target_of_own(parent, spec, predictor.live), in_reported_mode(parent, predictor.live)

    def _converge_explainer(
        self, parent: Parent, spec: ExplainedModelSpec, predictor: ChildReport, target: PredictTarget | None
    ) -> ChildReport:
        """The explainer, once the predictor's address is known; until then, what it waits for."""
        if target is not None:

            def build(generation: int | None) -> dict[str, Any]:
                return build_explainer_isvc(parent, spec, target, self.config, generation)

            return self._converge(
                parent, build(parent.generation), lambda live: build(explainer_generation(live, build, parent.generation))
            )
        if predictor.failure is not None and predictor.failure[0] == NAME_CONFLICT:
            reason, message = "WaitingForPredictor", f"the predictor cannot be deployed: {predictor.failure[1]}"
        else:
            reason = "WaitingForPredictorAddress"
            message = (
                f"waiting for KServe to report the address of InferenceService '{predictor_name(parent.name, spec)}' "
                "(status.address.url): the explainer calls the predictor there"
            )
        return self._waiting(parent, ISVC_API_VERSION, "InferenceService", explainer_name(parent.name), reason, message)

    def _converge_graph(
        self,
        parent: Parent,
        spec: ExplainedModelSpec,
        target: PredictTarget | None,
        explainer: ChildReport,
        detector: ChildReport | None,
    ) -> ChildReport:
        """The InferenceGraph, once KServe reports the address of every InferenceService its steps call."""
        explainer_base = address_url(explainer.live)
        detector_base = address_url(detector.live) if detector is not None else None
        if target is None or explainer_base is None or (graph_needs_detector(spec) and detector_base is None):
            called = [predictor_name(parent.name, spec), explainer_name(parent.name)] + (
                [detector_name(parent.name)] if graph_needs_detector(spec) else []
            )
            return self._waiting(
                parent,
                GRAPH_API_VERSION,
                "InferenceGraph",
                graph_name(parent.name),
                "WaitingForAddresses",
                f"waiting for KServe to report the addresses of InferenceServices {', '.join(repr(n) for n in called)} "
                "(status.address.url): the graph's steps call them there",
            )
        body = build_inference_graph(parent, spec, target, explainer_base, detector_base)
        assert body is not None
        return self._converge(parent, body)

    def _detector_fitted(self, parent: Parent, detector: ChildReport, previous_status: dict[str, Any]) -> dict[str, Any] | None:
        """What the ready detector fitted: read once per detector spec (its spec hash), then carried in the status."""
        live = detector.live
        if live is None or kserve_readiness(detector).status != "True":
            return None
        spec_hash = ((live.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
        known = previous_status.get("detector")
        if isinstance(known, dict) and known.get("specHash") == spec_hash:
            return known
        base = address_url(live)
        fitted = read_detector_fitted(base, detector_name(parent.name)) if base else None
        return {**fitted, "specHash": spec_hash} if fitted is not None else None

    def _drift_report(self, parent: Parent, drift: ChildReport) -> dict[str, Any] | None:
        """The ready drift monitor's latest report, read each reconcile (the periodic check follows it)."""
        base = address_url(drift.live)
        if drift.live is None or base is None or kserve_readiness(drift).status != "True":
            return None
        return read_drift_report(base, drift_name(parent.name))

    def pdb_api_version(self) -> str:
        """policy/v1 where served (Kubernetes 1.21+), else policy/v1beta1; asked once."""
        if self._pdb_api_version is None:
            self._pdb_api_version = self.api.first_served(PDB_API_VERSIONS) or PDB_API_VERSIONS[-1]
        return self._pdb_api_version

    def _existing_predictor(self, parent: Parent, spec: ExplainedModelSpec) -> tuple[ChildReport, PredictTarget | None]:
        """The InferenceService the spec names, never written: how KServe's graph would call it."""
        existing = predictor_name(parent.name, spec)
        try:
            live = self._live(ISVC_API_VERSION, "InferenceService", parent.namespace, existing, cached_only_if_present=False)
            if live is None:
                return ChildReport(
                    kind="InferenceService",
                    name=existing,
                    failure=(
                        "InferenceServiceNotFound",
                        f"spec.predictor.inferenceServiceName: no InferenceService '{existing}' in namespace "
                        f"'{parent.namespace}'; create it or name one that exists",
                    ),
                ), None
            runtime = runtime_name(live)
            protocols = self._runtime_protocols(parent.namespace, runtime) if runtime else None
        except ResourceTypeMissing:
            raise
        except KubeError as error:
            return ChildReport(kind="InferenceService", name=existing, failure=("ApiError", str(error))), None
        target = predict_target(live, runtime_protocols=protocols, protocol_override=spec.predictor.protocol)
        if target is None and address_url(live) is not None:
            return ChildReport(
                kind="InferenceService",
                name=existing,
                live=live,
                failure=(
                    "UnsupportedProtocol",
                    f"spec.predictor.inferenceServiceName: the ServingRuntime '{runtime}' of InferenceService '{existing}' "
                    f"lists protocols {protocols}, neither v1 nor v2; KServe's graph and the explainer call v1 or v2 only",
                ),
            ), None
        return ChildReport(kind="InferenceService", name=existing, live=live), target

    def _runtime_protocols(self, namespace: str, runtime: str) -> list[str] | None:
        """The protocolVersions of the named ServingRuntime, or ClusterServingRuntime (KServe looks in that order)."""
        found = self.api.get(RUNTIME_API_VERSION, "ServingRuntime", namespace, runtime)
        if found is None:
            found = self.api.get_cluster_scoped(RUNTIME_API_VERSION, "ClusterServingRuntime", runtime)
        if found is None:
            return None
        return [str(p) for p in (found.get("spec") or {}).get("protocolVersions") or []]

    def _wanted(self, parent: Parent, spec: ExplainedModelSpec) -> set[tuple[str, str]]:
        wanted = {("InferenceService", explainer_name(parent.name))}
        wanted |= {
            ("PodDisruptionBudget", b["metadata"]["name"]) for b in build_disruption_budgets(parent, spec, self.pdb_api_version())
        }
        if spec.predictor.deploys_model:
            wanted.add(("InferenceService", predictor_name(parent.name, spec)))
        if spec.graph.enabled:
            wanted.add(("InferenceGraph", graph_name(parent.name)))
        if spec.detector is not None:
            wanted.add(("InferenceService", detector_name(parent.name)))
            if spec.detector.drift is not None:
                wanted.add(("InferenceService", drift_name(parent.name)))
        return wanted

    def _prune(self, parent: Parent, wanted: set[tuple[str, str]]) -> None:
        """Delete children this ExplainedModel owns but no longer wants (for example after switching to an existing predictor)."""
        for api_version, kind in (*CHILD_KINDS, (self.pdb_api_version(), "PodDisruptionBudget")):
            for live in self._labelled_children(api_version, kind, parent):
                meta = live["metadata"]
                owned = any(ref.get("uid") == parent.uid for ref in meta.get("ownerReferences") or [])
                if owned and (kind, meta["name"]) not in wanted:
                    log.info("deleting %s %s/%s that the spec no longer wants", kind, parent.namespace, meta["name"])
                    self.api.delete(api_version, kind, parent.namespace, meta["name"], meta["uid"])

    def _labelled_children(self, api_version: str, kind: str, parent: Parent) -> list[dict[str, Any]]:
        """The objects of a kind in the parent's namespace that carry its parent label: from the watches' cache where
        it holds every object of that kind there, else listed. (A listing by label makes the API server read every
        object of the kind in the namespace: for a spec change to 50 objects at once, the API server's time for
        seconds; the cache knows the operator's own creates at once, and a delete names the uid it saw.)"""
        if self.cache is not None and self.cache.complete(api_version, kind, parent.namespace):
            return [
                body
                for body in self.cache.present(api_version, kind, parent.namespace).values()
                if ((body.get("metadata") or {}).get("labels") or {}).get(PARENT_LABEL) == parent.name
            ]
        return self.api.list(api_version, kind, parent.namespace, f"{PARENT_LABEL}={parent.name}")

    def _held_for(self, key: tuple[str, str], observation: Observation) -> float | None:
        """Seconds left to hold a changed status back, or None to write it now. Held while it only says a child waits
        for KServe's report on the one before, for `status_hold_seconds` from the first such status at most
        (`status_hold_behind_seconds` while the operator is behind)."""
        if not (self.status_hold_seconds > 0 and awaits_an_address(observation)):
            return None
        hold = max(self.status_hold_seconds, self.status_hold_behind_seconds) if self._behind() else self.status_hold_seconds
        now = self._clock()
        left = self._held_since.setdefault(key, now) + hold - now
        return left if left > 0 else None

    def _write_status(
        self, parent: Parent, previous: dict[str, Any], observation: Observation, may_hold: bool = False
    ) -> tuple[dict[str, Any], float | None]:
        """The status this observation gives, written where it changed; with `may_hold`, a status `_held_for` holds
        back is not written yet: (status, seconds until it should be reconciled again, or None)."""
        status = compute_status(observation, previous, parent.name, self.now())
        key = (parent.namespace, parent.name)
        if status_changed(previous, status):
            held_for = self._held_for(key, observation) if may_hold else None
            if held_for is not None:
                return status, held_for
            written = self.api.patch_status(parent.namespace, parent.name, status_patch(previous, status))
            if written is not None and self.parents is not None:
                self.parents.written(written)  # the next reconcile starts from this status, not the one before
        self._held_since.pop(key, None)
        return status, None

    def _warn_if_new(self, body: dict[str, Any], previous: dict[str, Any], status: dict[str, Any]) -> None:
        """One Event per distinct problem a user must act on, not one per reconcile; one when drift begins or ends."""
        for reason, message in warnings_to_post(previous, status):
            self.emit_warning(body, reason, message)
        for kind, reason, message in drift_changes(previous, status):
            sink = self.emit_warning if kind == "Warning" else self.emit_normal
            if sink is not None:
                sink(body, reason, message)
