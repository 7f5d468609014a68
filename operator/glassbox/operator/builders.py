"""Pure builders: an ExplainedModel in, the desired KServe objects out.

No I/O, clock or randomness: the same spec always gives the same objects, so
applying them again is a no-op and a changed spec converges. Names derive from
the parent's name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from glassbox.contract.api import (
    API_VERSION,
    DETECTOR_ROUTES,
    KIND,
    Autoscaling,
    ComputeResources,
    ExplainedModelSpec,
    PredictorSpec,
    Protocol,
    RecordsSpec,
    Route,
    Toleration,
    uses_glassbox_predictor,
)
from glassbox.contract.server_args import DetectorServerArgs, ExplainerServerArgs, PredictorServerArgs
from glassbox.contract.wire import (
    CALLER_HEADER,
    DETECTOR_FIT_ENV,
    DETECTOR_GATE_PATH,
    DETECTOR_OBSERVE_PATH,
    DRIFT_EVENTS_PATH,
    EXPLAINER_SPEC_ENV,
    FLAGGED_FIELD,
    MODEL_DIR,
    RECORDS_POSTGRES_ENV,
    ROUTE_FIELD,
    STORAGE_URI_ENV,
    UNKNOWN_ROUTE_PATH,
)
from glassbox.operator.capacity import Scaling, scaling_of
from glassbox.operator.kserve_addressing import PROTOCOL_ENV, PredictTarget, address_url, explain_path, may_scale_to_zero

KSERVE_GROUP = "serving.kserve.io"
ISVC_API_VERSION = f"{KSERVE_GROUP}/v1beta1"
GRAPH_API_VERSION = f"{KSERVE_GROUP}/v1alpha1"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "glassbox"
PARENT_LABEL = "glassbox.dev/explained-model"
COMPONENT_LABEL = "app.kubernetes.io/component"
SPEC_HASH_ANNOTATION = "glassbox.dev/spec-hash"
# The generation of the ExplainedModel's spec the explainer was last changed by (its records name it).
EXPLAINER_GENERATION_ANNOTATION = "glassbox.dev/explainer-generation"
GPU_RESOURCE = "nvidia.com/gpu"


# The explainer answers its own 504 at explainer.timeoutSeconds; KServe's component
# timeout and the graph's router wait this much longer, so that answer always arrives.
TIMEOUT_MARGIN_SECONDS = 30
# The graph's router waits this much longer than the explainer's component timeout (see build_inference_graph).
ROUTER_MARGIN_SECONDS = 10
# KServe's annotation choosing how an InferenceService runs, and the values meaning plain Deployments
# (kserve pkg/constants/constants.go: DeploymentMode, Standard, LegacyRawDeployment).
DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
RAW_DEPLOYMENT_MODES = frozenset({"standard", "rawdeployment"})
# A plain Deployment's pod waits this long past explainer.timeoutSeconds after SIGTERM: the explainer
# drains for timeoutSeconds plus 5 s, and needs a few more to exit. (Under Knative the pod's grace is
# the component's timeout, timeoutSeconds + TIMEOUT_MARGIN_SECONDS; Knative refuses the field itself.)
TERMINATION_MARGIN_SECONDS = 15
# KServe's visibility labels: its own (Standard/RawDeployment and Gateway API ingress) and Knative's
# (Serverless ingress; an InferenceGraph's labels reach its Knative Service). kserve pkg/constants/constants.go
# NetworkVisibility and VisibilityLabel; reconcilers/ingress/ingress_reconciler.go, kube_ingress_reconciler.go,
# httproute_reconciler.go; v1alpha1/inferencegraph/knative_reconciler.go copies the graph's labels.
VISIBILITY_LABELS = ("networking.kserve.io/visibility", "networking.knative.dev/visibility")
CLUSTER_LOCAL = "cluster-local"
# Pod Security's "restricted" profile, per container (Knative refuses a pod-level securityContext unless a
# feature flag allows it). The root filesystem stays writable: torch, alibi and numba write caches and
# temporary files, and a writable emptyDir needs Knative's kubernetes.podspec-emptydir flag.
RESTRICTED_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
# The user Glassbox's images run as (their Dockerfiles' USER).
GLASSBOX_IMAGE_USER = 65532
# Longest one call from the explainer to the predictor may take.
PREDICTOR_CALL_TIMEOUT_SECONDS = 30
# Where the explainer's SQLite records live in its pod: a volume (emptyDir, or the spec's claim).
RECORDS_VOLUME = "glassbox-records"
RECORDS_MOUNT_PATH = "/var/lib/glassbox/records"
RECORDS_FILE = "records.sqlite"
SERVING_PORT = 8080
# The explainer's readiness follows its predictor's (glassbox.explainers.serving.readiness answers 503 while the predictor does not).
READY_PATH = "/v2/health/ready"
# The detector's gate (wire.DETECTOR_GATE_PATH) answers the request narrowed to its outliers, with their
# indices in `flagged` (glassbox.explainers.detector.server); the graph explains only when `flagged.0` exists.
FLAGGED_CONDITION = f"{FLAGGED_FIELD}.0"
# The detector lives in the explainer's image.
DETECTOR_COMMAND = ["python", "-m", "glassbox.explainers.detector"]


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator knows beyond the spec: the images it deploys and what the administrator lets a spec choose."""

    explainer_image: str = "ghcr.io/glassbox-dev/glassbox-explainer:0.1.0"
    predictor_image: str = "ghcr.io/glassbox-dev/glassbox-predictor:0.1.0"
    # Whether a spec may name the ServiceAccount its pods run as (the administrator's choice: a
    # ServiceAccount carries credentials, and a tenant could name one that is not meant for them).
    allow_service_account_names: bool = False


@dataclass(frozen=True)
class Parent:
    """The identity of the ExplainedModel that owns the children."""

    name: str
    namespace: str
    uid: str
    # KServe's serving.kserve.io/deploymentMode annotation on the ExplainedModel, copied to its children.
    deployment_mode: str | None = None
    # The mode KServe reports running the predictor Glassbox deployed in (its status.deploymentMode): the
    # cluster's default, which the explainer and detector get too when the object names none.
    reported_mode: str | None = None
    # metadata.generation of the ExplainedModel's spec being reconciled.
    generation: int | None = None

    @property
    def raw_deployment(self) -> bool:
        """Whether KServe runs the children as plain Deployments: as the object says, else as KServe reports."""
        return (self.deployment_mode or self.reported_mode or "").lower() in RAW_DEPLOYMENT_MODES


# ------------------------------------------------------------------ names


def predictor_name(parent_name: str, spec: ExplainedModelSpec) -> str:
    """The predictor InferenceService: the existing one, or one named after the parent."""
    return spec.predictor.inference_service_name or parent_name


def explainer_name(parent_name: str) -> str:
    return f"{parent_name}-explainer"


def graph_name(parent_name: str) -> str:
    return f"{parent_name}-graph"


def detector_name(parent_name: str) -> str:
    """The detector's InferenceService, and the model name it serves."""
    return f"{parent_name}-detector"


def drift_name(parent_name: str) -> str:
    """The drift monitor's InferenceService, and the model name it serves."""
    return f"{parent_name}-drift"


# ------------------------------------------------------------------ shared pieces


def _labels(parent: Parent, component: str) -> dict[str, str]:
    return {
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "glassbox",
        COMPONENT_LABEL: component,
        PARENT_LABEL: parent.name,
    }


def owner_reference(parent: Parent) -> dict[str, Any]:
    """Makes the child garbage when the parent is deleted."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": parent.name,
        "uid": parent.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def spec_hash(body: dict[str, Any]) -> str:
    """A digest of what the operator wants a child to be, stored on the child.

    Comparing it with the live child's annotation tells whether the desired
    state changed since the last apply, including fields that were removed.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _with_identity(
    parent: Parent,
    component: str,
    api_version: str,
    kind: str,
    name: str,
    spec: dict[str, Any],
    cluster_local: bool,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": parent.namespace,
            "labels": _labels(parent, component),
            "ownerReferences": [owner_reference(parent)],
        },
        "spec": spec,
    }
    if cluster_local:  # an endpoint KServe would otherwise publish on the ingress domain
        body["metadata"]["labels"].update({label: CLUSTER_LOCAL for label in VISIBILITY_LABELS})
    if parent.deployment_mode:  # KServe reads it on InferenceServices and InferenceGraphs alike
        body["metadata"]["annotations"] = {DEPLOYMENT_MODE_ANNOTATION: parent.deployment_mode}
    if annotations:
        body["metadata"]["annotations"] = {**body["metadata"].get("annotations", {}), **annotations}
    body["metadata"]["annotations"] = {**body["metadata"].get("annotations", {}), SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


def _glassbox_container(image: str, args: list[str], env: list[dict[str, Any]], resources: dict[str, Any]) -> dict[str, Any]:
    """A container running one of Glassbox's own servers: restricted, as its image's user, with probes on kserve's health paths."""

    def probe(path: str, period: int, failures: int) -> dict[str, Any]:
        return {
            "httpGet": {"path": path, "port": SERVING_PORT},
            "periodSeconds": period,
            "timeoutSeconds": 5,
            "failureThreshold": failures,
        }

    return {
        "name": "kserve-container",
        "image": image,
        "args": args,
        "env": env,
        "ports": [{"containerPort": SERVING_PORT, "protocol": "TCP"}],
        "resources": resources,
        "securityContext": {**RESTRICTED_SECURITY_CONTEXT, "runAsUser": GLASSBOX_IMAGE_USER, "runAsGroup": GLASSBOX_IMAGE_USER},
        # No liveness probe: a server does not listen until its model is loaded and its methods are fitted,
        # which may take minutes, and Knative refuses a startupProbe in many versions.
        "readinessProbe": probe(READY_PATH, 5, 3),
    }


def _quantity(value: int | str) -> str:
    return str(value)


def build_resources(resources: ComputeResources, gpus: int) -> dict[str, Any]:
    """Explicit requests and limits: what the scheduler and the cluster autoscaler plan with."""
    limits: dict[str, str] = {
        "cpu": _quantity(resources.cpu_limit if resources.cpu_limit is not None else resources.cpu_request),
        "memory": _quantity(resources.memory_limit if resources.memory_limit is not None else resources.memory_request),
    }
    if gpus:
        limits[GPU_RESOURCE] = str(gpus)
    return {
        "requests": {"cpu": _quantity(resources.cpu_request), "memory": _quantity(resources.memory_request)},
        "limits": limits,
    }


def _component_scaling(scaling: Scaling, autoscaling: Autoscaling) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "scaleMetric": scaling.metric.value,
    }
    if scaling.target is not None:
        fields["scaleTarget"] = scaling.target
    if scaling.container_concurrency is not None:
        fields["containerConcurrency"] = scaling.container_concurrency
    return fields


def _placement(
    node_selector: dict[str, str] | None, tolerations: list[Toleration] | None, service_account: str | None
) -> dict[str, Any]:
    placement: dict[str, Any] = {}
    if service_account:
        placement["serviceAccountName"] = service_account
    if node_selector:
        placement["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        placement["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in tolerations]
    return placement


# ------------------------------------------------------------------ the children


def build_predictor_isvc(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any] | None:
    """The predictor InferenceService, or None when the spec names an existing one."""
    predictor = spec.predictor
    if not predictor.deploys_model:
        return None
    name = predictor_name(parent.name, spec)
    resources = build_resources(predictor.resources, predictor.gpus)
    scaling = scaling_of(predictor.autoscaling, None, predictor.resources, parent.raw_deployment)
    component: dict[str, Any] = {
        **_component_scaling(scaling, predictor.autoscaling),
        **_placement(predictor.node_selector, predictor.tolerations, predictor.service_account_name),
    }
    protocol = predictor.protocol_to_deploy
    if uses_glassbox_predictor(predictor):
        batching: dict[str, Any] = {}
        if predictor.batching is not None:
            batching = {
                "max_batch_size": predictor.batching.max_batch_size,
                "max_batch_latency_ms": predictor.batching.max_latency_ms,
            }
        args = PredictorServerArgs.of(
            model_name=name,
            model_dir=MODEL_DIR,
            device="cuda" if predictor.gpus else "cpu",
            **batching,
            max_body_bytes=predictor.max_body_bytes,
            model_sha256=predictor.storage_sha256,
        ).to_args()
        env = [{"name": STORAGE_URI_ENV, "value": str(predictor.storage_uri)}, {"name": PROTOCOL_ENV, "value": protocol.value}]
        component["containers"] = [_glassbox_container(config.predictor_image, args, env, resources)]
    else:
        model: dict[str, Any] = {
            "modelFormat": {"name": predictor.model_format},
            "storageUri": predictor.storage_uri,
            "protocolVersion": protocol.value,
            "resources": resources,
            # KServe merges this into the runtime's container; a runtime image that runs as root is refused
            # by the kubelet with a message saying so, as a restricted namespace would refuse it.
            "securityContext": RESTRICTED_SECURITY_CONTEXT,
        }
        if predictor.runtime:
            model["runtime"] = predictor.runtime
        component["model"] = model
        if predictor.batching is not None:
            component["batcher"] = {
                "maxBatchSize": predictor.batching.max_batch_size,
                # KServe's batcher agent has no "run when free" mode: 1 ms is its closest.
                "maxLatency": max(1, predictor.batching.max_latency_ms),
            }
    if spec.detector is not None and spec.detector.drift is not None:
        # KServe's request logger copies every prediction request to the detector's drift monitor.
        # The explainer's perturbed inputs say so in a header the logger passes on: the monitor leaves them out.
        component["logger"] = {"mode": "request", "url": drift_events_url(parent), "metadataHeaders": [CALLER_HEADER]}
    return _with_identity(
        parent, "predictor", ISVC_API_VERSION, "InferenceService", name, {"predictor": component}, not spec.is_external
    )


def drift_events_url(parent: Parent) -> str:
    """Where KServe's logger posts requests for the drift monitor: its predictor Service, which KServe names
    `<name>-predictor` in Serverless and RawDeployment modes alike (pkg/constants/constants.go,
    PredictorServiceName), so the URL is known before KServe reports the monitor's address."""
    monitor = drift_name(parent.name)
    return f"http://{monitor}-predictor.{parent.namespace}.svc.cluster.local" + DRIFT_EVENTS_PATH.format(model=monitor)


def predictor_target_of_own(
    parent: Parent, spec: ExplainedModelSpec, live_predictor: dict[str, Any] | None
) -> PredictTarget | None:
    """Where the predictor Glassbox deploys answers, once KServe reports its address."""
    base = address_url(live_predictor)
    if base is None:
        return None
    return PredictTarget(
        base,
        predictor_name(parent.name, spec),
        spec.predictor.protocol_to_deploy,
        answers_both_protocols=uses_glassbox_predictor(spec.predictor),
        may_scale_to_zero=may_scale_to_zero(live_predictor),
        model_version=deployed_model_version(spec.predictor),
    )


def deployed_model_version(predictor: PredictorSpec) -> str | None:
    """What identifies the version of the model Glassbox deploys: its pinned SHA-256, else its storage URI."""
    if predictor.storage_sha256:
        return f"sha256:{predictor.storage_sha256}"
    return predictor.storage_uri


def _records_flags(records: RecordsSpec, target: PredictTarget) -> dict[str, Any]:
    """The explainer's records: where they are kept and what they keep, and its jobs."""
    flags: dict[str, Any] = {
        "records_store_inputs": records.store_inputs or None,
        "records_strict": records.strict or None,
        "records_retention_days": records.retention_days,
        "job_slots": records.job_slots,
        "job_timeout_seconds": records.job_timeout_seconds,
        "model_digest": target.model_version,
    }
    if records.postgres is not None:
        flags["records_postgres"] = True
    else:
        flags["records_path"] = f"{RECORDS_MOUNT_PATH}/{RECORDS_FILE}"
    return flags


def _records_storage(records: RecordsSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, volumeMounts) of the explainer's records: PostgreSQL's connection string from its Secret
    (never in the object's text), or a volume for the SQLite file (the root filesystem is not written)."""
    if records.postgres is not None:
        secret = {"name": records.postgres.secret_name, "key": records.postgres.key}
        return [{"name": RECORDS_POSTGRES_ENV, "valueFrom": {"secretKeyRef": secret}}], [], []
    if records.persistent_volume_claim is not None:
        volume: dict[str, Any] = {
            "name": RECORDS_VOLUME,
            "persistentVolumeClaim": {"claimName": records.persistent_volume_claim},
        }
    else:
        volume = {"name": RECORDS_VOLUME, "emptyDir": {}}
    return [], [volume], [{"name": RECORDS_VOLUME, "mountPath": RECORDS_MOUNT_PATH}]


def _explainer_flags(spec: ExplainedModelSpec, target: PredictTarget, max_waiting: int) -> dict[str, Any]:
    """The explainer's command line: where and how it calls the predictor, its deadline, and what it admits."""
    explainer = spec.explainer
    flags: dict[str, Any] = {
        "model_name": target.model_name,
        "predictor_host": target.host,
        "predictor_protocol": target.protocol.value,
        "explain_timeout_seconds": explainer.timeout_seconds,
        # One perturbation call should take seconds, not kserve's default of ten minutes. A call is also cut
        # at its explanation's deadline, so this is not timeoutSeconds: a job's deadline is far longer.
        "predictor_request_timeout_seconds": PREDICTOR_CALL_TIMEOUT_SECONDS,
        "max_body_bytes": explainer.max_body_bytes,
        # What the autoscaler is told this replica holds (containerConcurrency) is what it admits.
        "explain_workers": explainer.capacity.workers,
        "max_waiting_explanations": max_waiting,
    }
    if target.uses_tls:
        flags["predictor_use_ssl"] = True
    if target.may_scale_to_zero:
        flags["predictor_probe"] = "after_failure"
    if spec.predictor.batching is not None and not uses_glassbox_predictor(spec.predictor):
        # Another runtime's batcher may refuse more rows than a batch: send no more per call.
        # Glassbox's predictor splits a large request into forward passes itself.
        flags["predictor_max_request_rows"] = spec.predictor.batching.max_batch_size
    return flags


def build_explainer_isvc(
    parent: Parent, spec: ExplainedModelSpec, target: PredictTarget, config: OperatorConfig, generation: int | None = None
) -> dict[str, Any]:
    """The explainer: its own InferenceService, so it scales independently of the predictor.

    It serves the predictor's model name, so its paths mirror the predictor's, and
    calls the predictor where KServe says it answers (`target`). Its records name the ExplainedModel and
    `generation`, the generation of the spec it was deployed from (see `explainer_generation`)."""
    explainer = spec.explainer
    scaling = scaling_of(explainer.autoscaling, explainer.capacity, explainer.resources, parent.raw_deployment)
    flags = _explainer_flags(spec, target, scaling.max_waiting)
    env: list[dict[str, Any]] = [
        {"name": PROTOCOL_ENV, "value": "v1"},
        {
            "name": EXPLAINER_SPEC_ENV,
            # Only what the server fits from: a scaling or resources edit leaves the pod template as it was.
            "value": explainer.fit_settings().model_dump_json(by_alias=True, exclude_none=True),
        },
    ]
    model_uri = explainer.model_storage_uri or spec.predictor.storage_uri
    if model_uri and any(method.is_white_box for method in explainer.methods):
        env.append({"name": STORAGE_URI_ENV, "value": model_uri})
        flags["model_dir"] = MODEL_DIR
        flags["model_sha256"] = explainer.model_storage_sha256 if explainer.model_storage_uri else spec.predictor.storage_sha256
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if explainer.keeps_records:
        flags.update(_records_flags(explainer.records, target))
        flags.update(explained_model=f"{parent.namespace}/{parent.name}", explained_model_generation=generation)
        records_env, volumes, mounts = _records_storage(explainer.records)
        env.extend(records_env)
    args = ExplainerServerArgs.of(**flags).to_args()
    container = _glassbox_container(config.explainer_image, args, env, build_resources(explainer.resources, explainer.gpus))
    if mounts:
        container["volumeMounts"] = mounts
    component: dict[str, Any] = {
        **_component_scaling(scaling, explainer.autoscaling),
        **_placement(explainer.node_selector, explainer.tolerations, explainer.service_account_name),
        # KServe's request timeout for the component: past the explainer's own deadline, so its JSON 504 comes first.
        "timeout": explainer.timeout_seconds + TIMEOUT_MARGIN_SECONDS,
        "containers": [container],
    }
    if volumes:
        component["volumes"] = volumes
    if explainer.records.persistent_volume_claim is not None and explainer.keeps_records:
        # A claim's files belong to whoever made them: the pod's group may write them.
        component["securityContext"] = {"fsGroup": GLASSBOX_IMAGE_USER}
    if parent.raw_deployment:
        component["terminationGracePeriodSeconds"] = explainer.timeout_seconds + TERMINATION_MARGIN_SECONDS
    return _with_identity(
        parent,
        "explainer",
        ISVC_API_VERSION,
        "InferenceService",
        explainer_name(parent.name),
        {"predictor": component},
        not spec.is_external,
        {EXPLAINER_GENERATION_ANNOTATION: str(generation)} if generation and explainer.keeps_records else None,
    )


def explainer_generation(
    live: dict[str, Any] | None, build: Callable[[int | None], dict[str, Any]], current: int | None
) -> int | None:
    """The generation of the spec the explainer was deployed from: the live explainer's while nothing else of it
    would change (an edit elsewhere in the spec, such as the predictor's scaling, rolls no explainer pod), else
    `current`. `build(generation)` is the explainer's body for a generation."""
    annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
    try:
        kept = int(annotations[EXPLAINER_GENERATION_ANNOTATION])
    except (KeyError, ValueError):
        return current
    unchanged = build(kept)["metadata"]["annotations"].get(SPEC_HASH_ANNOTATION) == annotations.get(SPEC_HASH_ANNOTATION)
    return kept if unchanged else current


def build_detector_isvc(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any] | None:
    """The outlier detector: its own InferenceService in the explainer's image, light and scaled on its own.
    Its pod receives only what the fit needs (DetectorFit), so a scaling edit never refits it."""
    detector = spec.detector
    if detector is None:
        return None
    name = detector_name(parent.name)
    scaling = scaling_of(detector.autoscaling, detector.capacity, detector.resources, parent.raw_deployment)
    forwards = drift_fed_by_graph(spec)
    args = DetectorServerArgs.of(
        model_name=name,
        max_body_bytes=detector.max_body_bytes,
        detector_workers=detector.capacity.workers,
        drift_events_url=drift_events_url(parent) if forwards else None,
        observed_inference_service=predictor_name(parent.name, spec) if forwards else None,
    ).to_args()
    # Drift is the drift monitor's (build_drift_isvc): a drift edit leaves the detector's pods alone (but for
    # where it forwards the graph's requests, for an existing InferenceService).
    fit = detector.fit_settings(spec.explainer.reference_data).model_copy(update={"drift": None})
    env = [
        {"name": PROTOCOL_ENV, "value": "v2"},
        {"name": DETECTOR_FIT_ENV, "value": fit.model_dump_json(by_alias=True, exclude_none=True)},
    ]
    container = {
        **_glassbox_container(config.explainer_image, args, env, build_resources(detector.resources, 0)),
        "command": DETECTOR_COMMAND,
    }
    component: dict[str, Any] = {
        **_component_scaling(scaling, detector.autoscaling),
        **_placement(detector.node_selector, detector.tolerations, detector.service_account_name),
        "containers": [container],
    }
    return _with_identity(
        parent, "detector", ISVC_API_VERSION, "InferenceService", name, {"predictor": component}, not spec.is_external
    )


def build_drift_isvc(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any] | None:
    """The drift monitor (spec.detector.drift): the detector's server in the explainer's image, serving only the
    drift routes, as exactly one replica, because a window of recent inputs is one window: replicas would each
    see a share of the traffic and report on it apart. Its CPU and memory are the detector's."""
    detector = spec.detector
    if detector is None or detector.drift is None:
        return None
    name = drift_name(parent.name)
    args = DetectorServerArgs.of(model_name=name, drift_only=True, detector_workers=1).to_args()
    fit = detector.fit_settings(spec.explainer.reference_data)
    env: list[dict[str, Any]] = [
        {"name": PROTOCOL_ENV, "value": "v2"},
        {"name": DETECTOR_FIT_ENV, "value": fit.model_dump_json(by_alias=True, exclude_none=True)},
    ]
    container = {
        **_glassbox_container(config.explainer_image, args, env, build_resources(detector.resources, 0)),
        "command": DETECTOR_COMMAND,
    }
    component: dict[str, Any] = {
        "minReplicas": 1,
        "maxReplicas": 1,
        **_placement(detector.node_selector, detector.tolerations, detector.service_account_name),
        "containers": [container],
    }
    return _with_identity(
        parent, "drift", ISVC_API_VERSION, "InferenceService", name, {"predictor": component}, not spec.is_external
    )


def detector_target(detector_base_url: str, parent_name: str) -> PredictTarget:
    """Where the detector answers: both protocols, on its own model name."""
    return PredictTarget(detector_base_url, detector_name(parent_name), Protocol.v1, answers_both_protocols=True)


def _route_conditions(route: Route) -> list[tuple[str, str]]:
    """(step-name suffix, gjson condition): the route named at the top level, or in a v2 body's parameters."""
    return [
        ("", f'[@this].#({ROUTE_FIELD}=="{route.value}")'),
        ("-in-parameters", f'[@this].#(parameters.{ROUTE_FIELD}=="{route.value}")'),
    ]


NODE_OF_ROUTE = {
    Route.predict: "predict",
    Route.explain: "explain",
    Route.predict_and_explain: "predict-and-explain",
    Route.detect: "detect",
    Route.predict_and_explain_if_outlier: "predict-and-explain-if-outlier",
}


def _predict_node(target: PredictTarget, server: str = "predictor") -> dict[str, Any]:
    """A Switch on the body's shape: v2 `inputs` to the v2 path, v1 `instances` to the v1 path (KServe's
    router ignores the request's path and sends every step the same body). Another runtime is called in
    its own protocol only, and answers a body of the other shape with its own error."""
    steps: list[dict[str, Any]] = []
    if target.answers_both_protocols:
        steps += [
            {"name": "v2-body", "serviceUrl": target.predict_url(Protocol.v2), "condition": "inputs"},
            {"name": "v1-body", "serviceUrl": target.predict_url(Protocol.v1), "condition": "instances"},
        ]
    steps.append({"name": server, "serviceUrl": target.predict_url(), "condition": "@this"})
    for step in steps:
        step["dependency"] = "Hard"
    return {"routerType": "Switch", "steps": steps}


def drift_fed_by_graph(spec: ExplainedModelSpec) -> bool:
    """Whether the graph feeds the drift monitor: for an existing InferenceService, which Glassbox never
    modifies and so cannot give KServe's request logger, the graph's prediction routes pass each request by
    the detector, which forwards it to the monitor. (A predictor Glassbox deploys carries the logger.)"""
    predicts = {Route.predict, Route.predict_and_explain, Route.predict_and_explain_if_outlier}
    return (
        spec.detector is not None
        and spec.detector.drift is not None
        and not spec.predictor.deploys_model
        and spec.graph.enabled
        and bool(predicts & set(spec.graph.routes))
    )


def graph_needs_detector(spec: ExplainedModelSpec) -> bool:
    return spec.graph.enabled and (any(route in DETECTOR_ROUTES for route in spec.graph.routes) or drift_fed_by_graph(spec))


def build_inference_graph(
    parent: Parent,
    spec: ExplainedModelSpec,
    target: PredictTarget,
    explainer_base_url: str,
    detector_base_url: str | None = None,
) -> dict[str, Any] | None:
    """The InferenceGraph: a Switch on the request's `route` (or `parameters.route`); a request naming
    none takes the default route; one naming a route the graph does not offer gets the explainer's 400
    that lists the routes there are. Routes that call the detector need its address."""
    if not spec.graph.enabled:
        return None
    if graph_needs_detector(spec) and detector_base_url is None:
        raise ValueError("the graph's detect routes need the detector's address")
    routes = list(dict.fromkeys(spec.graph.routes))
    explain_url = explainer_base_url + explain_path(target.model_name)
    nodes: dict[str, Any] = {}
    if drift_fed_by_graph(spec):
        assert detector_base_url is not None
        nodes.update(
            _observed_predict_nodes(target, detector_base_url + DETECTOR_OBSERVE_PATH.format(model=detector_name(parent.name)))
        )
    elif {Route.predict, Route.predict_and_explain, Route.predict_and_explain_if_outlier} & set(routes):
        nodes["predict"] = _predict_node(target)
    if Route.explain in routes:
        nodes["explain"] = {
            "routerType": "Sequence",
            "steps": [{"name": "explainer", "serviceUrl": explain_url, "dependency": "Hard"}],
        }
    if Route.predict_and_explain in routes:
        # A failed prediction fails the request (Hard); a failed or slow explanation is answered in
        # its place as the explainer's JSON error (Soft), and the prediction still comes back.
        nodes["predict-and-explain"] = {
            "routerType": "Ensemble",
            "steps": [
                {"name": "prediction", "nodeName": "predict", "dependency": "Hard"},
                {"name": "explanation", "serviceUrl": explain_url, "dependency": "Soft"},
            ],
        }
    if detector_base_url is not None and any(route in DETECTOR_ROUTES for route in routes):
        detector = detector_target(detector_base_url, parent.name)
        # The detector answers v1 and v2 bodies, like Glassbox's predictor: the same Switch on the body's shape.
        nodes["detect"] = _predict_node(detector, "detector")
    if Route.predict_and_explain_if_outlier in routes:
        assert detector_base_url is not None
        nodes.update(_outlier_nodes(detector_base_url, detector_name(parent.name), explain_url))
    nodes["root"] = _root_switch(routes, spec.graph.effective_default_route, explainer_base_url)
    # KServe's router answers after 60 s by default. An explanation gets its timeoutSeconds once a worker
    # may take it; Knative's activator may hold it before that (containerConcurrency), but no longer than the
    # component's timeout in all (the revision's timeoutSeconds). The router waits past that, so the
    # explainer's own 504, or Knative's, arrives before the router gives up on a step or on the client.
    deadline = spec.explainer.timeout_seconds + TIMEOUT_MARGIN_SECONDS + ROUTER_MARGIN_SECONDS
    graph_spec: dict[str, Any] = {
        "nodes": dict(sorted(nodes.items())),
        "routerTimeouts": {"serverRead": 60, "serverWrite": deadline + TIMEOUT_MARGIN_SECONDS, "serviceClient": deadline},
    }
    if spec.graph.min_replicas is not None:
        graph_spec["minReplicas"] = spec.graph.min_replicas
    if spec.graph.max_replicas is not None:
        graph_spec["maxReplicas"] = spec.graph.max_replicas
    return _with_identity(
        parent, "graph", GRAPH_API_VERSION, "InferenceGraph", graph_name(parent.name), graph_spec, not spec.is_external
    )


def _observed_predict_nodes(target: PredictTarget, observe_url: str) -> dict[str, Any]:
    """`predict`, for an existing InferenceService whose requests the drift monitor must see: a Sequence that
    passes the request by the detector's observe path (it answers at once and forwards a copy to the monitor),
    then predicts. The second step gets the request, not the first's answer (the router's default without
    `data: $response`), and the Sequence answers with the last step's response: the prediction, unchanged.
    The first step is Soft: an error status from it does not stop the Sequence. A connection the router cannot
    make at all fails the request whatever the dependency (cmd/router/main.go, routeStep: `executeStep`'s
    error returns 500), which is why the step is the detector, scaled like any component, and not the
    monitor's single replica."""
    return {
        "predict": {
            "routerType": "Sequence",
            "steps": [
                {"name": "drift", "serviceUrl": observe_url, "dependency": "Soft"},
                {"name": "prediction", "nodeName": "predict-to-model", "dependency": "Hard"},
            ],
        },
        "predict-to-model": _predict_node(target),
    }


def _outlier_nodes(detector_base_url: str, detector: str, explain_url: str) -> dict[str, Any]:
    """The nodes of predictAndExplainIfOutlier: the gate and the explainer in sequence, beside the prediction."""
    gate_url = detector_base_url + DETECTOR_GATE_PATH.format(model=detector)
    # The gate answers the request narrowed to its outliers, naming them in `flagged`; only when one was
    # flagged (`flagged.0` exists) does the Sequence send that on to the explainer, so exactly the flagged
    # instances are explained. Otherwise the gate's own answer ({"flagged": [], "summary": ...}) stands.
    explain_if_outlier = {
        "routerType": "Sequence",
        "steps": [
            {"name": "gate", "serviceUrl": gate_url, "dependency": "Hard"},
            # `data: $response`: the gate's narrowed body, not the request (the router's default for a step).
            {
                "name": "explainer",
                "serviceUrl": explain_url,
                "condition": FLAGGED_CONDITION,
                "data": "$response",
                "dependency": "Hard",
            },
        ],
    }
    # The prediction decides the answer (Hard); the verdict and the explanation are Soft: a failed
    # or slow detector or explainer is answered in its place, and the prediction still comes back.
    predict_and_explain_if_outlier = {
        "routerType": "Ensemble",
        "steps": [
            {"name": "prediction", "nodeName": "predict", "dependency": "Hard"},
            {"name": "detection", "nodeName": "detect", "dependency": "Soft"},
            {"name": "explanation", "nodeName": "explain-if-outlier", "dependency": "Soft"},
        ],
    }
    return {"explain-if-outlier": explain_if_outlier, "predict-and-explain-if-outlier": predict_and_explain_if_outlier}


def _root_switch(routes: list[Route], default_route: Route, explainer_base_url: str) -> dict[str, Any]:
    """The root: a Switch on the body's route, then an unknown route to the explainer's 400, then the default."""
    switch_steps: list[dict[str, Any]] = []
    for route in routes:
        for suffix, condition in _route_conditions(route):
            switch_steps.append(
                {"name": f"{NODE_OF_ROUTE[route]}{suffix}", "nodeName": NODE_OF_ROUTE[route], "condition": condition}
            )
    unknown_url = f"{explainer_base_url}{UNKNOWN_ROUTE_PATH}?routes={','.join(r.value for r in routes)}"
    switch_steps += [
        # Switch takes the first step whose condition exists on the body: a `route` that matched none above is unknown.
        {"name": "unknown-route", "serviceUrl": unknown_url, "condition": ROUTE_FIELD, "dependency": "Hard"},
        {
            "name": "unknown-route-in-parameters",
            "serviceUrl": unknown_url,
            "condition": f"parameters.{ROUTE_FIELD}",
            "dependency": "Hard",
        },
    ]
    default = NODE_OF_ROUTE[default_route]
    switch_steps.append({"name": "default", "nodeName": default, "condition": "@this"})
    return {"routerType": "Switch", "steps": switch_steps}


# KServe's labels on every pod of an InferenceService's component (kserve pkg/constants/constants.go
# InferenceServicePodLabelKey, KServiceComponentLabel; set in components/predictor.go buildObjectMeta).
ISVC_POD_LABEL = f"{KSERVE_GROUP}/inferenceservice"
KSERVE_COMPONENT_LABEL = "component"
# PodDisruptionBudget: policy/v1 from Kubernetes 1.21, policy/v1beta1 before (the operator asks discovery).
PDB_API_VERSIONS = ("policy/v1", "policy/v1beta1")


def build_disruption_budgets(parent: Parent, spec: ExplainedModelSpec, api_version: str) -> list[dict[str, Any]]:
    """A PodDisruptionBudget for each InferenceService Glassbox deploys with more than one replica at least:
    a node drain then takes its pods one at a time, so the service keeps answering."""
    wanted: list[tuple[str, str, Autoscaling]] = []
    if spec.predictor.deploys_model:
        wanted.append(("predictor", predictor_name(parent.name, spec), spec.predictor.autoscaling))
    wanted.append(("explainer", explainer_name(parent.name), spec.explainer.autoscaling))
    if spec.detector is not None:
        wanted.append(("detector", detector_name(parent.name), spec.detector.autoscaling))
    budgets = []
    for component, isvc, autoscaling in wanted:
        if autoscaling.min_replicas > 1:
            selector = {"matchLabels": {ISVC_POD_LABEL: isvc, KSERVE_COMPONENT_LABEL: "predictor"}}
            budgets.append(
                _with_identity(
                    parent,
                    component,
                    api_version,
                    "PodDisruptionBudget",
                    isvc,
                    {"maxUnavailable": 1, "selector": selector},
                    cluster_local=False,  # not an endpoint
                )
            )
    return budgets


@dataclass(frozen=True)
class DesiredChildren:
    """Everything one ExplainedModel should own, by role; None where the role has no object (yet)."""

    predictor: dict[str, Any] | None
    explainer: dict[str, Any] | None
    graph: dict[str, Any] | None
    detector: dict[str, Any] | None = None
    drift: dict[str, Any] | None = None

    def objects(self) -> list[dict[str, Any]]:
        return [body for body in (self.predictor, self.explainer, self.detector, self.drift, self.graph) if body is not None]


def build_children(
    parent: Parent,
    spec: ExplainedModelSpec,
    config: OperatorConfig,
    predictor: PredictTarget | None = None,
    explainer_base_url: str | None = None,
    detector_base_url: str | None = None,
) -> DesiredChildren:
    """All children at once, given the addresses KServe reported (the explainer needs the predictor's,
    the graph all of them); the operator builds them one by one as the addresses appear."""
    explainer = build_explainer_isvc(parent, spec, predictor, config) if predictor is not None else None
    graph = None
    addresses_known = predictor is not None and explainer_base_url is not None
    if addresses_known and (detector_base_url is not None or not graph_needs_detector(spec)):
        assert predictor is not None and explainer_base_url is not None
        graph = build_inference_graph(parent, spec, predictor, explainer_base_url, detector_base_url)
    return DesiredChildren(
        predictor=build_predictor_isvc(parent, spec, config),
        explainer=explainer,
        graph=graph,
        detector=build_detector_isvc(parent, spec, config),
        drift=build_drift_isvc(parent, spec, config),
    )
