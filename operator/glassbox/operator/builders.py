"""Pure builders: an ExplainedModel in, the desired KServe objects out.

No I/O, clock or randomness: the same spec always gives the same objects, so
applying them again is a no-op and a changed spec converges. Names derive from
the parent's name.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from glassbox.operator.api import (
    API_VERSION,
    KIND,
    Autoscaling,
    ComputeResources,
    ExplainedModelSpec,
    PredictorSpec,
    Protocol,
    Route,
    Toleration,
)

KSERVE_GROUP = "serving.kserve.io"
ISVC_API_VERSION = f"{KSERVE_GROUP}/v1beta1"
GRAPH_API_VERSION = f"{KSERVE_GROUP}/v1alpha1"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "glassbox"
PARENT_LABEL = "glassbox.dev/explained-model"
COMPONENT_LABEL = "app.kubernetes.io/component"
SPEC_HASH_ANNOTATION = "glassbox.dev/spec-hash"
GPU_RESOURCE = "nvidia.com/gpu"
# KServe reads these from a custom container: the storage initializer fetches
# STORAGE_URI into /mnt/models, and PROTOCOL tells the graph which paths to call.
STORAGE_URI_ENV = "STORAGE_URI"
PROTOCOL_ENV = "PROTOCOL"
EXPLAINER_SPEC_ENV = "GLASSBOX_EXPLAINER_SPEC"
MODEL_DIR = "/mnt/models"
# The request field the graph's root Switch routes on.
ROUTE_FIELD = "route"


@dataclass(frozen=True)
class OperatorConfig:
    """What the operator knows beyond the spec: the images it deploys and the cluster's DNS domain."""

    explainer_image: str = "ghcr.io/glassbox-dev/glassbox-explainer:0.1.0"
    predictor_image: str = "ghcr.io/glassbox-dev/glassbox-predictor:0.1.0"
    cluster_domain: str = "cluster.local"


@dataclass(frozen=True)
class Parent:
    """The identity of the ExplainedModel that owns the children."""

    name: str
    namespace: str
    uid: str


# ------------------------------------------------------------------ names and URLs


def predictor_name(parent_name: str, spec: ExplainedModelSpec) -> str:
    """The predictor InferenceService: the existing one, or one named after the parent."""
    return spec.predictor.inference_service_name or parent_name


def explainer_name(parent_name: str) -> str:
    return f"{parent_name}-explainer"


def graph_name(parent_name: str) -> str:
    return f"{parent_name}-graph"


def service_host(isvc_name: str, namespace: str, config: OperatorConfig) -> str:
    """In-cluster host of an InferenceService's predictor component (serverless and raw modes alike)."""
    return f"{isvc_name}-predictor.{namespace}.svc.{config.cluster_domain}"


def predict_path(model_name: str, protocol: Protocol) -> str:
    if protocol is Protocol.v2:
        return f"/v2/models/{model_name}/infer"
    return f"/v1/models/{model_name}:predict"


def explain_path(model_name: str) -> str:
    return f"/v1/models/{model_name}:explain"


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


def _with_identity(parent: Parent, component: str, api_version: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
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
    body["metadata"]["annotations"] = {SPEC_HASH_ANNOTATION: spec_hash(body)}
    return body


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


def _component_scaling(autoscaling: Autoscaling) -> dict[str, Any]:
    scaling: dict[str, Any] = {
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "scaleMetric": autoscaling.scale_metric.value,
    }
    if autoscaling.scale_target is not None:
        scaling["scaleTarget"] = autoscaling.scale_target
    return scaling


def _placement(node_selector: dict[str, str] | None, tolerations: list[Toleration] | None) -> dict[str, Any]:
    placement: dict[str, Any] = {}
    if node_selector:
        placement["nodeSelector"] = dict(sorted(node_selector.items()))
    if tolerations:
        placement["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in tolerations]
    return placement


# ------------------------------------------------------------------ the children


def uses_glassbox_predictor(predictor: PredictorSpec) -> bool:
    """PyTorch artifacts without a named runtime are served by Glassbox's predictor (dynamic batching, CUDA)."""
    return (predictor.model_format or "").lower() == "pytorch" and predictor.runtime is None


def build_predictor_isvc(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any] | None:
    """The predictor InferenceService, or None when the spec names an existing one."""
    predictor = spec.predictor
    if not predictor.deploys_model:
        return None
    name = predictor_name(parent.name, spec)
    resources = build_resources(predictor.resources, predictor.gpus)
    component: dict[str, Any] = {**_component_scaling(predictor.autoscaling), **_placement(predictor.node_selector, predictor.tolerations)}
    if uses_glassbox_predictor(predictor):
        args = [f"--model_name={name}", f"--model_dir={MODEL_DIR}", f"--device={'cuda' if predictor.gpus else 'cpu'}"]
        if predictor.batching is not None:
            args += [
                f"--max_batch_size={predictor.batching.max_batch_size}",
                f"--max_batch_latency_ms={predictor.batching.max_latency_ms}",
            ]
        component["containers"] = [
            {
                "name": "kserve-container",
                "image": config.predictor_image,
                "args": args,
                "env": [
                    {"name": STORAGE_URI_ENV, "value": predictor.storage_uri},
                    {"name": PROTOCOL_ENV, "value": predictor.protocol.value},
                ],
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": resources,
            }
        ]
    else:
        model: dict[str, Any] = {
            "modelFormat": {"name": predictor.model_format},
            "storageUri": predictor.storage_uri,
            "protocolVersion": predictor.protocol.value,
            "resources": resources,
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
    return _with_identity(parent, "predictor", ISVC_API_VERSION, "InferenceService", name, {"predictor": component})


def build_explainer_isvc(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any]:
    """The explainer: its own InferenceService, so it scales independently of the predictor."""
    explainer = spec.explainer
    target = predictor_name(parent.name, spec)
    args = [
        f"--model_name={target}",
        f"--predictor_host={service_host(target, parent.namespace, config)}",
        f"--predictor_protocol={spec.predictor.protocol.value}",
        f"--explain_timeout_seconds={explainer.timeout_seconds}",
        # One perturbation call should take seconds, not kserve's default of ten minutes.
        f"--predictor_request_timeout_seconds={min(30, explainer.timeout_seconds)}",
    ]
    if spec.predictor.batching is not None and not uses_glassbox_predictor(spec.predictor):
        # Another runtime's batcher may refuse more rows than a batch: send no more per call.
        # Glassbox's predictor splits a large request into forward passes itself.
        args.append(f"--predictor_max_request_rows={spec.predictor.batching.max_batch_size}")
    env = [
        {"name": PROTOCOL_ENV, "value": "v1"},
        {
            "name": EXPLAINER_SPEC_ENV,
            "value": explainer.model_dump_json(by_alias=True, exclude_none=True),
        },
    ]
    model_uri = explainer.model_storage_uri or spec.predictor.storage_uri
    if model_uri and any(method.is_white_box for method in explainer.methods):
        env.append({"name": STORAGE_URI_ENV, "value": model_uri})
        args.append(f"--model_dir={MODEL_DIR}")
    component: dict[str, Any] = {
        **_component_scaling(explainer.autoscaling),
        **_placement(explainer.node_selector, explainer.tolerations),
        "timeout": explainer.timeout_seconds,
        "containers": [
            {
                "name": "kserve-container",
                "image": config.explainer_image,
                "args": args,
                "env": env,
                "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                "resources": build_resources(explainer.resources, explainer.gpus),
            }
        ],
    }
    return _with_identity(
        parent, "explainer", ISVC_API_VERSION, "InferenceService", explainer_name(parent.name), {"predictor": component}
    )


def explainer_url(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> str:
    """The explainer's in-cluster explain URL (KServe's serviceName would resolve to a predict path)."""
    host = service_host(explainer_name(parent.name), parent.namespace, config)
    return f"http://{host}{explain_path(predictor_name(parent.name, spec))}"


def _route_condition(route: Route) -> str:
    # gjson: true when the request's top-level "route" field equals the route.
    return f'[@this].#({ROUTE_FIELD}=="{route.value}")'


def build_inference_graph(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> dict[str, Any] | None:
    """The InferenceGraph: a Switch on the request's `route` field; predict when it is absent."""
    if not spec.graph.enabled:
        return None
    predictor = predictor_name(parent.name, spec)
    explain_url = explainer_url(parent, spec, config)
    routes = list(dict.fromkeys(spec.graph.routes))
    nodes: dict[str, Any] = {}
    switch_steps: list[dict[str, Any]] = []
    for route in routes:
        if route is Route.predict:
            continue
        if route is Route.explain:
            nodes["explain"] = {
                "routerType": "Sequence",
                "steps": [{"name": "explainer", "serviceUrl": explain_url, "dependency": "Hard"}],
            }
            switch_steps.append({"name": "explain", "nodeName": "explain", "condition": _route_condition(route)})
        elif route is Route.predict_and_explain:
            nodes["predict-and-explain"] = {
                "routerType": "Ensemble",
                "steps": [
                    {"name": "prediction", "serviceName": predictor},
                    {"name": "explanation", "serviceUrl": explain_url},
                ],
            }
            switch_steps.append(
                {"name": "predict-and-explain", "nodeName": "predict-and-explain", "condition": _route_condition(route)}
            )
    if Route.predict in routes:
        # `@this` always exists, so this last step is the default route.
        switch_steps.append({"name": "predict", "serviceName": predictor, "condition": "@this"})
    nodes["root"] = {"routerType": "Switch", "steps": switch_steps}
    graph_spec: dict[str, Any] = {"nodes": dict(sorted(nodes.items()))}
    if spec.graph.min_replicas is not None:
        graph_spec["minReplicas"] = spec.graph.min_replicas
    if spec.graph.max_replicas is not None:
        graph_spec["maxReplicas"] = spec.graph.max_replicas
    return _with_identity(parent, "graph", GRAPH_API_VERSION, "InferenceGraph", graph_name(parent.name), graph_spec)


@dataclass(frozen=True)
class DesiredChildren:
    """Everything one ExplainedModel should own, by role; None where the role has no object."""

    predictor: dict[str, Any] | None
    explainer: dict[str, Any]
    graph: dict[str, Any] | None

    def objects(self) -> list[dict[str, Any]]:
        return [body for body in (self.predictor, self.explainer, self.graph) if body is not None]


def build_children(parent: Parent, spec: ExplainedModelSpec, config: OperatorConfig) -> DesiredChildren:
    return DesiredChildren(
        predictor=build_predictor_isvc(parent, spec, config),
        explainer=build_explainer_isvc(parent, spec, config),
        graph=build_inference_graph(parent, spec, config),
    )
