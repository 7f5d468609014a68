"""Where and how KServe says an InferenceService is called: pure functions of the live object.

KServe's InferenceGraph controller resolves a `serviceName` step to the
InferenceService's `status.address.url` plus the predict path of its protocol
and model name (kserve v0.20, `pkg/controller/v1alpha1/inferencegraph/controller.go`,
the "resolve service urls" loop, calling `GetPredictorEndpoint` in
`pkg/controller/v1beta1/inferenceservice/utils/utils.go`). Glassbox builds its
graph and points its explainer with the same answers, read from the same
fields, so it calls the predictor exactly where KServe's router would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from glassbox.contract.api import Protocol

# The env var and container names KServe reads (pkg/constants/constants.go).
PROTOCOL_ENV = "PROTOCOL"
MLSERVER_MODEL_NAME_ENV = "MLSERVER_MODEL_NAME"
TRANSFORMER_CONTAINER = "transformer-container"
# Predictor implementations of the v1beta1 API other than `model` and `containers`.
FRAMEWORK_PREDICTORS = (
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "pmml",
    "lightgbm",
    "paddle",
    "huggingface",
)


@dataclass(frozen=True)
class PredictTarget:
    """How to reach a predictor: its base URL (no path), its model name, and the protocol to call it with."""

    base_url: str
    model_name: str
    protocol: Protocol
    # Glassbox's predictor answers v1 and v2 bodies alike; another runtime is called in `protocol` only.
    answers_both_protocols: bool = False
    # KServe may scale the predictor to zero (`minReplicas: 0`): probes would keep it awake.
    may_scale_to_zero: bool = False
    # What identifies the model's version (an artifact's SHA-256, its storage URI, or its images): an
    # explanation record is served again only for the same version.
    model_version: str | None = None

    @property
    def host(self) -> str:
        """host[:port], as the explainer's --predictor_host takes it."""
        return self.base_url.split("://", 1)[-1].rstrip("/")

    @property
    def uses_tls(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def path(self) -> str:
        """The predict path KServe's graph calls (`constants.PredictPath`)."""
        return predict_path(self.model_name, self.protocol)

    def predict_url(self, protocol: Protocol | None = None) -> str:
        return self.base_url + predict_path(self.model_name, protocol or self.protocol)


def predict_path(model_name: str, protocol: Protocol) -> str:
    """KServe's `constants.PredictPath`."""
    if protocol is Protocol.v2:
        return f"/v2/models/{model_name}/infer"
    return f"/v1/models/{model_name}:predict"


def explain_path(model_name: str) -> str:
    return f"/v1/models/{model_name}:explain"


def address_url(isvc: dict[str, Any] | None) -> str | None:
    """`status.address.url`, the in-cluster address KServe reports once it has made the Services."""
    url = (((isvc or {}).get("status") or {}).get("address") or {}).get("url")
    return url.rstrip("/") if isinstance(url, str) and url else None


def _model_name_from_args(args: list[Any] | None) -> str:
    """KServe's `getModelNameFromArgs`: `--model_name=X`, `--model-name=X`, or the flag then its value."""
    name = ""
    args = [str(a) for a in args or []]
    for index, arg in enumerate(args):
        if arg.startswith(("--model_name", "--model-name")):
            parts = arg.split("=", 1)
            if len(parts) == 2:
                name = parts[1]
            if index + 1 < len(args) and not args[index + 1].startswith("--"):
                name = args[index + 1]
    return name


def model_name(isvc: dict[str, Any]) -> str:
    """KServe's `GetModelName`: the transformer's or predictor's `--model_name`, MLServer's env, else the object's name."""
    spec = isvc.get("spec") or {}
    transformer = spec.get("transformer") or {}
    if transformer.get("containers"):
        name = _model_name_from_args(transformer["containers"][0].get("args"))
        if name:
            return name
    predictor = spec.get("predictor") or {}
    model = predictor.get("model")
    if model is not None:
        for env in model.get("env") or []:
            if env.get("name") == MLSERVER_MODEL_NAME_ENV and env.get("value"):
                return str(env["value"])
        name = _model_name_from_args(model.get("args"))
        if name:
            return name
    elif predictor.get("containers"):
        name = _model_name_from_args(predictor["containers"][0].get("args"))
        if name:
            return name
    return str((isvc.get("metadata") or {}).get("name"))


def _container_protocol(containers: list[dict[str, Any]]) -> Protocol:
    """A custom container's PROTOCOL env (KServe's `CustomPredictor.GetProtocol`), v1 when absent."""
    chosen = next((c for c in containers if c.get("name") == TRANSFORMER_CONTAINER), containers[0])
    for env in chosen.get("env") or []:
        if env.get("name") == PROTOCOL_ENV and env.get("value") in ("v1", "v2"):
            return Protocol(env["value"])
    return Protocol.v1


def _declared_protocol(component: dict[str, Any]) -> Protocol:
    if component.get("containers"):
        return _container_protocol(component["containers"])
    for key in ("model", *FRAMEWORK_PREDICTORS):
        implementation = component.get(key)
        if isinstance(implementation, dict):
            return Protocol.v2 if implementation.get("protocolVersion") == "v2" else Protocol.v1
    return Protocol.v1


def may_scale_to_zero(isvc: dict[str, Any] | None) -> bool:
    """Whether the InferenceService's predictor lets KServe scale it to zero: `minReplicas: 0` (unset is 1)."""
    return ((((isvc or {}).get("spec") or {}).get("predictor") or {}).get("minReplicas")) == 0


def model_version_of(isvc: dict[str, Any]) -> str | None:
    """What identifies the version of the model an InferenceService serves: where its artifact is stored
    (`storageUri` of its `model` or framework predictor, with the runtime's version), else the images of its
    containers. A new artifact or image is a new version; a scaling edit is not."""
    predictor = (isvc.get("spec") or {}).get("predictor") or {}
    for key in ("model", *FRAMEWORK_PREDICTORS):
        implementation = predictor.get(key)
        if isinstance(implementation, dict) and implementation.get("storageUri"):
            version = str(implementation["storageUri"])
            runtime_version = implementation.get("runtimeVersion")
            return f"{version} ({runtime_version})" if runtime_version else version
    images = [str(c["image"]) for c in predictor.get("containers") or [] if isinstance(c, dict) and c.get("image")]
    return ", ".join(images) or None


def runtime_name(isvc: dict[str, Any]) -> str | None:
    """The ServingRuntime a `model` predictor names, when it names one."""
    model = (((isvc.get("spec") or {}).get("predictor") or {}).get("model")) or {}
    runtime = model.get("runtime")
    return str(runtime) if runtime else None


def graph_protocol(isvc: dict[str, Any], runtime_protocols: list[str] | None = None) -> Protocol | None:
    """The protocol KServe's graph calls this InferenceService with (`GetPredictorEndpoint`).

    With a transformer, the transformer's; otherwise the predictor's, except that a
    `model` naming a runtime takes the runtime's first of v1 and v2. None when that
    runtime lists protocols but neither v1 nor v2 (KServe refuses such a graph step).
    """
    spec = isvc.get("spec") or {}
    if spec.get("transformer"):
        return _declared_protocol(spec["transformer"])
    predictor = spec.get("predictor") or {}
    protocol = _declared_protocol(predictor)
    if runtime_name(isvc) and runtime_protocols:
        usable = [p for p in runtime_protocols if p in ("v1", "v2")]
        return Protocol(usable[0]) if usable else None
    return protocol


def predict_target(
    isvc: dict[str, Any] | None,
    *,
    runtime_protocols: list[str] | None = None,
    protocol_override: Protocol | None = None,
    answers_both_protocols: bool = False,
) -> PredictTarget | None:
    """Where KServe's router would call this InferenceService; None until KServe reports its address."""
    base = address_url(isvc)
    if isvc is None or base is None:
        return None
    protocol = protocol_override or graph_protocol(isvc, runtime_protocols)
    if protocol is None:
        return None
    # A runtime that lists both (KServe's Python servers: sklearn, xgboost, huggingface, ...) answers both.
    both = answers_both_protocols or {"v1", "v2"} <= set(runtime_protocols or [])
    return PredictTarget(base, model_name(isvc), protocol, both, may_scale_to_zero(isvc), model_version_of(isvc))
