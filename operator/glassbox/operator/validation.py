"""Rules between fields that a CRD schema cannot express.

`find_spec_problems` is pure: it takes the object's name and its raw spec and
returns every problem, each naming the field path a user must change and what
would be right. The operator reports the first problems in the `SpecValid`
condition and an Event, and does not retry until the spec changes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.alias_generators import to_camel as _camel

from glassbox.contract.api import (
    DETECTOR_ROUTES,
    DNS_1035_LABEL,
    METHODS_NEEDING_REFERENCE_DATA,
    PARAMETER_FIELD_OF,
    Autoscaling,
    Capacity,
    ComputeResources,
    DataFormat,
    DetectorSpec,
    ExplainedModelSpec,
    ExplainerSpec,
    MethodSpec,
    MethodType,
    PredictorSpec,
    Protocol,
    Route,
    ScaleMetric,
    storage_scheme_problem,
    uses_glassbox_predictor,
)
from glassbox.operator.builders import explainer_name
from glassbox.operator.capacity import metric_of

# The longest ExplainedModel name whose children's Service names still fit a
# 63-character DNS label: KServe names the explainer's Service
# `<name>-explainer-predictor` (20 characters after the name).
MAX_NAME_LENGTH = 43
_DNS_1035 = re.compile(DNS_1035_LABEL)
# Kubernetes' own quantity grammar (k8s.io/apimachinery resource.Quantity).
_QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?\d+))?$")


@dataclass(frozen=True)
class SpecProblem:
    """One invalid field: its path as a user writes it, and what would be right."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _path_of(loc: tuple[int | str, ...]) -> str:
    path = "spec"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def parse_spec(spec: dict[str, Any]) -> tuple[ExplainedModelSpec | None, list[SpecProblem]]:
    """Parse a raw spec into the API model; schema errors become problems with field paths."""
    try:
        return ExplainedModelSpec.model_validate(spec), []
    except ValidationError as error:
        problems = [SpecProblem(_path_of(tuple(e["loc"])), e["msg"]) for e in error.errors(include_url=False)]
        return None, problems


def find_spec_problems(name: str, spec: dict[str, Any]) -> tuple[ExplainedModelSpec | None, list[SpecProblem]]:
    """Every problem with this ExplainedModel, schema and cross-field alike."""
    problems: list[SpecProblem] = []
    if len(name) > MAX_NAME_LENGTH or not _DNS_1035.match(name):
        problems.append(
            SpecProblem(
                "metadata.name",
                f"'{name}' must be at most {MAX_NAME_LENGTH} characters, start with a lower-case letter and "
                "hold only lower-case letters, digits and '-', because KServe derives DNS names from it",
            )
        )
    parsed, schema_problems = parse_spec(spec)
    problems.extend(schema_problems)
    if parsed is not None:
        problems.extend(_cross_field_problems(parsed))
        if parsed.predictor.inference_service_name == explainer_name(name):
            problems.append(
                SpecProblem(
                    "spec.predictor.inferenceServiceName",
                    f"'{explainer_name(name)}' is the name of this ExplainedModel's own explainer; name the "
                    "InferenceService that serves the model",
                )
            )
    return (parsed if not problems else None), problems


def _cross_field_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    """The rules no single field can check, by part of the spec, in the order a user reads them."""
    return [
        *_predictor_source_problems(spec.predictor),
        *_artifact_pin_problems(spec),
        *_storage_scheme_problems(spec),
        *_autoscaling_problems("spec.predictor.autoscaling", spec.predictor.autoscaling),
        *_resource_problems("spec.predictor.resources", spec.predictor.resources),
        *_predictor_batching_problems(spec.predictor),
        *_explainer_problems(spec),
        *_records_problems(spec.explainer),
        *_detector_problems(spec),
        *_graph_problems(spec),
    ]


def _predictor_source_problems(predictor: PredictorSpec) -> list[SpecProblem]:
    """A model to deploy or an existing InferenceService to explain, and only the fields that one takes."""
    problems: list[SpecProblem] = []
    if predictor.inference_service_name and predictor.storage_uri:
        problems.append(
            SpecProblem(
                "spec.predictor.storageUri",
                f"set either storageUri (deploy a model) or inferenceServiceName (explain the existing "
                f"InferenceService '{predictor.inference_service_name}'), not both",
            )
        )
    elif not predictor.inference_service_name and not predictor.storage_uri:
        problems.append(
            SpecProblem(
                "spec.predictor",
                "set storageUri and modelFormat to deploy a model, or inferenceServiceName to explain an existing InferenceService",
            )
        )
    if predictor.inference_service_name:
        for attr in ("model_format", "runtime", "batching", "max_body_bytes"):
            if getattr(predictor, attr) is not None:
                problems.append(
                    SpecProblem(
                        f"spec.predictor.{_camel(attr)}",
                        f"only applies to a model Glassbox deploys; remove it when inferenceServiceName "
                        f"('{predictor.inference_service_name}') names an existing InferenceService",
                    )
                )
        if predictor.gpus:
            problems.append(
                SpecProblem(
                    "spec.predictor.gpus",
                    "only applies to a model Glassbox deploys; set GPUs on the existing InferenceService itself",
                )
            )
    elif predictor.storage_uri and not predictor.model_format:
        problems.append(
            SpecProblem(
                "spec.predictor.modelFormat",
                "is required with storageUri: 'pytorch' for Glassbox's GPU predictor, or a format a KServe ServingRuntime serves (sklearn, xgboost, onnx, ...)",
            )
        )
    elif predictor.max_body_bytes is not None and not uses_glassbox_predictor(predictor):
        problems.append(
            SpecProblem(
                "spec.predictor.maxBodyBytes",
                f"applies to Glassbox's predictor (modelFormat pytorch, no runtime); the runtime serving "
                f"'{predictor.model_format}' sets its own limit: remove maxBodyBytes",
            )
        )
    return problems


def _artifact_pin_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    """A sha256 only where Glassbox's own server loads the artifact it pins."""
    problems: list[SpecProblem] = []
    predictor = spec.predictor
    if predictor.storage_sha256 is not None and not (predictor.deploys_model and uses_glassbox_predictor(predictor)):
        problems.append(
            SpecProblem(
                "spec.predictor.storageSha256",
                "only Glassbox's predictor (modelFormat pytorch, no runtime) verifies the artifact it loads; for another "
                "runtime, pin the artifact in its storage (a versioned object, a digest in the path) and remove storageSha256",
            )
        )
    if spec.explainer.model_storage_sha256 is not None and spec.explainer.model_storage_uri is None:
        problems.append(
            SpecProblem(
                "spec.explainer.modelStorageSha256",
                "applies to modelStorageUri, which is not set; the predictor's artifact is pinned by spec.predictor.storageSha256",
            )
        )
    return problems


def _predictor_batching_problems(predictor: PredictorSpec) -> list[SpecProblem]:
    """KServe's batcher, for a runtime's predictor, only where it batches anything."""
    problems: list[SpecProblem] = []
    if predictor.batching is not None and predictor.deploys_model and not uses_glassbox_predictor(predictor):
        if predictor.protocol_to_deploy is not Protocol.v1:
            problems.append(
                SpecProblem(
                    "spec.predictor.batching",
                    "KServe's batcher batches only v1 ':predict' requests, so it would do nothing for a v2 predictor: "
                    "set protocol to v1, or remove batching (modelFormat 'pytorch' without a runtime batches v1 and v2 itself)",
                )
            )
    return problems


def _explainer_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    """The explainer's scaling and resources, each method, the default method, and what a GPU is for."""
    explainer = spec.explainer
    problems = [
        *_autoscaling_problems("spec.explainer.autoscaling", explainer.autoscaling, explainer.capacity),
        *_resource_problems("spec.explainer.resources", explainer.resources),
    ]
    seen_names: dict[str, int] = {}
    for index, method in enumerate(explainer.methods):
        path = f"spec.explainer.methods[{index}]"
        problems.extend(_method_problems(path, method, spec))
        name = method.effective_name
        if name in seen_names:
            problems.append(
                SpecProblem(
                    f"{path}.name",
                    f"'{name}' is already the name of methods[{seen_names[name]}]; give each method a distinct name",
                )
            )
        seen_names.setdefault(name, index)
    method_names = [method.effective_name for method in explainer.methods]
    if explainer.default_method is not None and explainer.default_method not in method_names:
        problems.append(
            SpecProblem(
                "spec.explainer.defaultMethod",
                f"'{explainer.default_method}' is not the name of a method here; use one of {method_names}",
            )
        )
    if explainer.gpus and not any(method.is_white_box for method in explainer.methods):
        problems.append(
            SpecProblem(
                "spec.explainer.gpus",
                "a GPU helps only white-box methods (IntegratedGradients, TrainingDataInfluence); black-box "
                "methods call the predictor, so set gpus to 0",
            )
        )
    return problems


def _records_problems(explainer: ExplainerSpec) -> list[SpecProblem]:
    """One store for every replica: a SQLite file is one pod's (a record or job another replica wrote is not
    there), so more than one replica needs PostgreSQL; and one store, not two."""
    records = explainer.records
    problems = []
    if records.postgres is not None and records.persistent_volume_claim is not None:
        problems.append(
            SpecProblem(
                "spec.explainer.records.persistentVolumeClaim",
                "records are kept in postgres or in a SQLite file on this claim, not both; remove one",
            )
        )
    replicas = explainer.autoscaling.max_replicas
    if records.enabled and records.postgres is None and replicas > 1:
        problems.append(
            SpecProblem(
                "spec.explainer.records.postgres",
                f"the explainer may run {replicas} replicas (autoscaling.maxReplicas) and a SQLite file is one pod's: a "
                "record or job one replica wrote would be missing on the others. Name a Secret holding a PostgreSQL "
                "connection string (postgres.secretName), or set maxReplicas to 1, or records.enabled to false",
            )
        )
    return problems


def _method_problems(path: str, method: MethodSpec, spec: ExplainedModelSpec) -> list[SpecProblem]:
    """One method: its own parameters only, the data it is fitted on, the weights a white-box method needs."""
    explainer, predictor = spec.explainer, spec.predictor
    problems: list[SpecProblem] = []
    own_field = PARAMETER_FIELD_OF[method.type]
    for method_type, field in PARAMETER_FIELD_OF.items():
        if field != own_field and getattr(method, field) is not None:
            problems.append(
                SpecProblem(
                    f"{path}.{_camel(field)}",
                    f"parameters for {method_type.value} on a method of type {method.type.value}; "
                    f"use {_camel(own_field)} instead, or change type",
                )
            )
    if method.type in METHODS_NEEDING_REFERENCE_DATA and method.reference_data is None and explainer.reference_data is None:
        problems.append(
            SpecProblem(
                f"{path}.referenceData",
                f"{method.type.value} is fitted on reference data: set referenceData on this method or on spec.explainer",
            )
        )
    if method.type is MethodType.TrainingDataInfluence:
        data = method.reference_data or explainer.reference_data
        if data is not None and not (data.labels_uri or data.target_column):
            problems.append(
                SpecProblem(
                    f"{path}.referenceData.labelsUri",
                    "TrainingDataInfluence needs the training labels: set labelsUri or targetColumn",
                )
            )
    if method.is_white_box and not (explainer.model_storage_uri or predictor.storage_uri):
        problems.append(
            SpecProblem(
                "spec.explainer.modelStorageUri",
                f"{method.type.value} needs the model's weights: set modelStorageUri to the artifact of "
                f"the existing InferenceService '{predictor.inference_service_name}'",
            )
        )
    if method.type is MethodType.AnchorImage and method.anchor_image and method.anchor_image.image_shape:
        if len(method.anchor_image.image_shape) != 3:
            problems.append(
                SpecProblem(
                    f"{path}.anchorImage.imageShape",
                    f"must be [height, width, channels], got {method.anchor_image.image_shape}",
                )
            )
    return problems


def _graph_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    """Routes listed once, a default among them, an explainer awake for the routes that need one answer."""
    problems: list[SpecProblem] = []
    explainer = spec.explainer
    graph = spec.graph
    if len(set(graph.routes)) != len(graph.routes):
        problems.append(SpecProblem("spec.graph.routes", "lists a route more than once; list each route once"))
    if graph.enabled and graph.default_route is not None and graph.default_route not in graph.routes:
        problems.append(
            SpecProblem(
                "spec.graph.defaultRoute",
                f"'{graph.default_route.value}' is not one of the graph's routes {[r.value for r in graph.routes]}; "
                "add it to routes or choose one of them",
            )
        )
    for route in (Route.predict_and_explain, Route.predict_and_explain_if_outlier):
        if graph.enabled and route in graph.routes and explainer.autoscaling.min_replicas == 0:
            problems.append(
                SpecProblem(
                    "spec.explainer.autoscaling.minReplicas",
                    f"is 0, but the graph offers {route.value}: KServe's router loses the whole answer, prediction included, "
                    "when a step answers no JSON, as a scaled-to-zero explainer's first request may while it starts and fits its "
                    f"methods; set minReplicas to at least 1, or remove {route.value} from spec.graph.routes",
                )
            )
    if graph.min_replicas is not None and graph.max_replicas is not None and graph.max_replicas < graph.min_replicas:
        problems.append(
            SpecProblem(
                "spec.graph.maxReplicas",
                f"is {graph.max_replicas}, below minReplicas {graph.min_replicas}; it must be at least minReplicas",
            )
        )
    return problems


def _detector_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    detector = spec.detector
    if detector is None:
        needing = [route.value for route in spec.graph.routes if route in DETECTOR_ROUTES]
        if spec.graph.enabled and needing:
            return [
                SpecProblem(
                    "spec.graph.routes",
                    f"{needing} call the outlier detector, and the spec has none: add spec.detector (for example "
                    "`detector: {falsePositiveRate: 0.01}`), or remove those routes",
                )
            ]
        return []
    problems = []
    if detector.reference_data is None and spec.explainer.reference_data is None:
        problems.append(
            SpecProblem(
                "spec.detector.referenceData",
                "the detector is fitted on reference data (what inputs should look like): set referenceData on spec.detector "
                "or on spec.explainer",
            )
        )
    data = detector.reference_data
    if data is not None and data.text_column and (data.format is DataFormat.npy or data.uri.lower().endswith(".npy")):
        problems.append(
            SpecProblem(
                "spec.detector.referenceData.textColumn", "texts come from a column of a CSV or Parquet file, not from NPY"
            )
        )
    held_out_needed = math.ceil(1 / detector.false_positive_rate) - 1
    reference = detector.reference_data or spec.explainer.reference_data
    max_rows = reference.max_rows if reference is not None else None
    if max_rows is not None and round(max_rows * detector.calibration_fraction) < held_out_needed:
        problems.append(
            SpecProblem(
                "spec.detector.calibrationFraction",
                f"holds out {round(max_rows * detector.calibration_fraction)} of referenceData's maxRows {max_rows}, and a "
                f"falsePositiveRate of {detector.false_positive_rate:g} needs at least {held_out_needed} held-out rows: "
                "raise maxRows or calibrationFraction, or the falsePositiveRate",
            )
        )
    if detector.drift is not None:
        if detector.drift.min_rows > detector.drift.window_rows:
            problems.append(
                SpecProblem(
                    "spec.detector.drift.minRows",
                    f"{detector.drift.min_rows} is more than the window holds (windowRows {detector.drift.window_rows}); "
                    "a window would never be tested",
                )
            )
    problems.extend(_autoscaling_problems("spec.detector.autoscaling", detector.autoscaling, detector.capacity))
    problems.extend(_resource_problems("spec.detector.resources", detector.resources))
    return problems


def _storage_scheme_problems(spec: ExplainedModelSpec) -> list[SpecProblem]:
    """Every URI the servers would read: local paths or KServe's storage schemes only."""
    uris: list[tuple[str, str | None]] = [
        ("spec.predictor.storageUri", spec.predictor.storage_uri),
        ("spec.explainer.modelStorageUri", spec.explainer.model_storage_uri),
    ]
    data = [("spec.explainer.referenceData", spec.explainer.reference_data)] + [
        (f"spec.explainer.methods[{i}].referenceData", m.reference_data) for i, m in enumerate(spec.explainer.methods)
    ]
    if spec.detector is not None:
        data.append(("spec.detector.referenceData", spec.detector.reference_data))
    for path, reference in data:
        if reference is not None:
            uris += [(f"{path}.uri", reference.uri), (f"{path}.labelsUri", reference.labels_uri)]
    problems = []
    for path, uri in uris:
        problem = storage_scheme_problem(uri) if uri else None
        if problem:
            problems.append(SpecProblem(path, problem))
    return problems


def _autoscaling_problems(path: str, autoscaling: Autoscaling, capacity: Capacity | None = None) -> list[SpecProblem]:
    problems = []
    limit = autoscaling.container_concurrency
    target = autoscaling.scale_target
    # A limit is written only under Knative, where an omitted metric is concurrency.
    if (
        limit
        and target is not None
        and metric_of(autoscaling, raw_deployment=False) is ScaleMetric.concurrency
        and target > limit
    ):
        problems.append(
            SpecProblem(
                f"{path}.scaleTarget",
                f"is {target} requests in flight per replica, above containerConcurrency {limit}, the most a replica "
                f"takes: Knative would never see a replica that busy and never add one; set scaleTarget to {limit} or less",
            )
        )
    capacity_path = path.removesuffix(".autoscaling") + ".capacity"
    if capacity is not None and limit:
        if limit < capacity.workers:
            problems.append(
                SpecProblem(
                    f"{path}.containerConcurrency",
                    f"is {limit}, below capacity.workers {capacity.workers}: {capacity.workers - limit} of each replica's "
                    f"workers would never have work; raise containerConcurrency to at least {capacity.workers} or lower "
                    "capacity.workers",
                )
            )
        elif capacity.max_waiting is not None and limit > capacity.workers + capacity.max_waiting:
            holds = capacity.workers + capacity.max_waiting
            problems.append(
                SpecProblem(
                    f"{path}.containerConcurrency",
                    f"is {limit}, more than a replica holds ({capacity_path}: workers {capacity.workers} + maxWaiting "
                    f"{capacity.max_waiting} = {holds}): Knative would send it requests it refuses instead of buffering "
                    f"them; set containerConcurrency to {holds}, or leave it out and it is derived",
                )
            )
    if autoscaling.max_replicas < autoscaling.min_replicas:
        problems.append(
            SpecProblem(
                f"{path}.maxReplicas",
                f"is {autoscaling.max_replicas}, below minReplicas {autoscaling.min_replicas}; it must be at least minReplicas",
            )
        )
    if autoscaling.min_replicas == 0 and autoscaling.scale_metric in (ScaleMetric.cpu, ScaleMetric.memory):
        problems.append(
            SpecProblem(
                f"{path}.scaleMetric",
                f"{autoscaling.scale_metric.value} cannot scale from zero replicas; use concurrency or rps, or set minReplicas to 1",
            )
        )
    return problems


def _resource_problems(path: str, resources: ComputeResources) -> list[SpecProblem]:
    problems = []
    for attr in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
        value = getattr(resources, attr)
        if value is not None and not _QUANTITY.match(str(value)):
            problems.append(
                SpecProblem(
                    f"{path}.{_camel(attr)}",
                    f"'{value}' is not a Kubernetes quantity; write for example 500m or 2 (CPU), 512Mi or 4Gi (memory)",
                )
            )
    return problems


def policy_problems(spec: ExplainedModelSpec, allow_service_account_names: bool) -> list[SpecProblem]:
    """What this install's administrator does not let a spec choose (the operator's configuration, not the schema)."""
    problems = []
    if not allow_service_account_names:
        components: list[tuple[str, PredictorSpec | ExplainerSpec | DetectorSpec | None]] = [
            ("spec.predictor", spec.predictor),
            ("spec.explainer", spec.explainer),
            ("spec.detector", spec.detector),
        ]
        for path, component in components:
            if component is not None and component.service_account_name:
                problems.append(
                    SpecProblem(
                        f"{path}.serviceAccountName",
                        f"this Glassbox install does not let ExplainedModels choose their pods' ServiceAccount "
                        f"('{component.service_account_name}'): remove the field (the pods run as the namespace's default "
                        "ServiceAccount), or ask the administrator to install with allowServiceAccountNames=true",
                    )
                )
    return problems
