"""The ExplainedModel API (group glassbox.dev, version v1alpha1): the resource both planes read.

These pydantic models are the single source of the API: the CRD in `crds/` is
generated from them (`glassbox crd`), the operator parses every object through
them, and the explainer server reads its method parameters from them.

Field names are camelCase on the wire, as in every Kubernetes API; Python code
uses snake_case attributes.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from glassbox.contract.server_args import (
    DETECTOR_WORKERS,
    EXPLAIN_WORKERS,
    MAX_WAITING_EXPLANATIONS,
    DetectorServerArgs,
    ExplainerServerArgs,
    PredictorServerArgs,
    ServerArgs,
)

GROUP = "glassbox.dev"
VERSION = "v1alpha1"
KIND = "ExplainedModel"
PLURAL = "explainedmodels"
SINGULAR = "explainedmodel"
SHORT_NAMES = ["xm"]
API_VERSION = f"{GROUP}/{VERSION}"

# A Kubernetes object name (a DNS-1123 subdomain).
DNS_1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Upper bounds: far above any real use, low enough that a typo cannot ask the cluster for the absurd.
MAX_REPLICAS = 1000
MAX_GPUS = 16
MAX_NSAMPLES = 1_000_000
MAX_TIMEOUT_SECONDS = 3600
# Knative's most containerConcurrency (config-defaults container-concurrency-max-limit).
MAX_CONTAINER_CONCURRENCY = 1000
MAX_WORKERS = 64
# Where artifacts and data may come from: local paths and the schemes KServe's storage reads (kserve
# python/storage/kserve_storage/kserve_storage.py; Azure is https://). Anything else (ftp://, gopher://,
# dict://, ...) is refused before a byte is fetched.
ALLOWED_STORAGE_SCHEMES = ("", "file", "http", "https", "s3", "gs", "pvc", "hdfs", "webhdfs", "hf", "modelscope", "oci")
SHA256_PATTERN = r"^[a-f0-9]{64}$"
# Downloads of reference data: the defaults of referenceData.maxBytes and downloadTimeoutSeconds, and the
# most maxBytes may say (also what a model artifact may weigh when Glassbox downloads it in local mode).
DEFAULT_MAX_DOWNLOAD_BYTES = 1 << 30
DEFAULT_DOWNLOAD_TIMEOUT_SECONDS = 600
MAX_DOWNLOAD_BYTES = 64 << 30
# What KServe requires of an InferenceService's name (it becomes Service and host names).
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# A Kubernetes quantity: `cpu: 1`, `cpu: 500m`, `memory: 2Gi`.
# The most maxBodyBytes may say: a body must fit the pod's memory more than once over.
MAX_BODY_BYTES_LIMIT = 1024 * 1024 * 1024


def _omitted_body_limit(arguments: type[ServerArgs]) -> str:
    """The server's own largest body, in MiB, as the schema's descriptions state it (one source: server_args)."""
    return f"{arguments.model_fields['max_body_bytes'].default // (1024 * 1024)} MiB when omitted"


Quantity = Annotated[int | str, Field(json_schema_extra={"x-kubernetes-int-or-string": True})]


class ApiModel(BaseModel):
    """Base of every API object: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )


# --------------------------------------------------------------------------- predictor


class Protocol(enum.StrEnum):
    v1 = "v1"
    v2 = "v2"


class ScaleMetric(enum.StrEnum):
    """KServe's autoscaling metrics (`scaleMetric` on a component)."""

    concurrency = "concurrency"
    rps = "rps"
    cpu = "cpu"
    memory = "memory"


class Toleration(ApiModel):
    """A Kubernetes toleration, passed through to the pods so GPU nodes with taints can host them."""

    key: str | None = Field(None, description="Taint key the toleration applies to; empty matches all keys.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, description="Taint value to match when operator is Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        None, description="For NoExecute: how long the pod stays bound after the taint appears."
    )


class ComputeResources(ApiModel):
    """CPU and memory for each replica. Requests are what the scheduler and the cluster autoscaler plan with."""

    cpu_request: Quantity = Field("1", description="CPU requested per replica, for example 500m or 2.")
    memory_request: Quantity = Field("2Gi", description="Memory requested per replica, for example 512Mi or 4Gi.")
    cpu_limit: Quantity | None = Field(None, description="CPU limit per replica; defaults to the request.")
    memory_limit: Quantity | None = Field(None, description="Memory limit per replica; defaults to the request.")


class Autoscaling(ApiModel):
    """Replica bounds and the metric KServe scales on."""

    min_replicas: int = Field(
        1, ge=0, le=MAX_REPLICAS, description="Fewest replicas; 0 lets KServe scale to zero (serverless mode)."
    )
    max_replicas: int = Field(1, ge=1, le=MAX_REPLICAS, description="Most replicas; must be at least minReplicas.")
    scale_metric: ScaleMetric | None = Field(
        None,
        description="Metric KServe's autoscaler targets: concurrency, rps, cpu or memory. When omitted: concurrency under "
        "Knative (Serverless), cpu under RawDeployment, whose HPA reads no other.",
    )
    scale_target: int | None = Field(
        None,
        ge=1,
        description="Target value of the metric per replica (requests in flight, requests per second, or percent). For the "
        "explainer and detector under concurrency, their capacity's workers when omitted; under RawDeployment, a CPU "
        "percent one busy core reaches.",
    )
    container_concurrency: int | None = Field(
        None,
        ge=0,
        le=MAX_CONTAINER_CONCURRENCY,
        description="Knative's hard limit of requests in flight per replica (0: none); past it Knative's activator and "
        "queue-proxy hold requests until a replica has room. For the explainer and detector, their capacity's workers plus "
        "maxWaiting when omitted. KServe's Serverless mode only.",
    )


class Capacity(ApiModel):
    """What one replica computes at once and holds waiting. The autoscaler is told it: workers plus maxWaiting
    is the replica's containerConcurrency, workers its concurrency target, so Knative buffers a burst and adds
    replicas before any replica refuses one."""

    workers: int = Field(EXPLAIN_WORKERS, ge=1, le=MAX_WORKERS, description="Requests one replica computes at once.")
    max_waiting: int | None = Field(
        None,
        ge=0,
        le=MAX_CONTAINER_CONCURRENCY,
        description="Requests one replica holds waiting for a worker, each only while its deadline allows. When omitted: "
        "containerConcurrency less workers when that is set; otherwise as many as workers under Knative (Serverless), "
        f"whose activator buffers the rest of a burst while replicas are added, and {MAX_WAITING_EXPLANATIONS} under "
        "RawDeployment, where nothing in front of a replica buffers.",
    )


class DynamicBatching(ApiModel):
    """Coalesce concurrent requests into one forward pass: explanations send many perturbed rows at once."""

    max_batch_size: int = Field(256, ge=1, description="Most rows in one forward pass.")
    max_latency_ms: int = Field(
        0,
        ge=0,
        description="Longest a request waits for others to join its batch, in milliseconds. 0 runs a batch as soon as "
        "the model is free, with every request that queued while it was busy: no added latency, and batches still form under load.",
    )


class PredictorSpec(ApiModel):
    """The model to explain: either a model the operator deploys (storageUri and modelFormat) or an existing InferenceService (inferenceServiceName), never both."""

    inference_service_name: str | None = Field(
        None,
        pattern=DNS_1035_LABEL,
        max_length=63,
        description="Name of an InferenceService that already exists in this namespace (a DNS-1035 label: a name, "
        "never a host or URL). Glassbox explains it and never changes or deletes it.",
    )
    model_format: str | None = Field(
        None,
        description="Format of the model artifact to deploy. 'pytorch' (TorchScript or torch.export) is served by Glassbox's GPU predictor; any other format is served by the KServe ServingRuntime that supports it.",
    )
    storage_uri: str | None = Field(
        None,
        description="Where the model artifact lives: s3://, gs://, pvc://, https:// or any URI KServe's storage initializer reads.",
    )
    runtime: str | None = Field(
        None, description="Name of a KServe ServingRuntime to use instead of Glassbox's predictor (optional)."
    )
    protocol: Protocol | None = Field(
        None,
        description="Inference protocol the explainer calls the predictor with: v1 or v2 (Open Inference Protocol). For a model "
        "Glassbox deploys it defaults to v2 (Glassbox's predictor answers both); for an existing InferenceService it defaults "
        "to the protocol KServe's InferenceGraph uses for it (its runtime's first of v1 and v2).",
    )
    storage_sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="SHA-256 of the model artifact (model.pt or model.pt2) for Glassbox's predictor: it refuses to load any "
        "other file. Whoever controls the artifact controls the pod; pin it.",
    )
    gpus: int = Field(0, ge=0, le=MAX_GPUS, description="NVIDIA GPUs per replica (nvidia.com/gpu limit).")
    resources: ComputeResources = Field(default_factory=ComputeResources, description="CPU and memory per replica.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Replicas and autoscaling of the predictor.")
    batching: DynamicBatching | None = Field(
        None, description="Dynamic batching of concurrent requests; recommended when explanations call this predictor."
    )
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        le=MAX_BODY_BYTES_LIMIT,
        description="Largest request body Glassbox's predictor takes (modelFormat pytorch, no runtime); a larger one gets 413 "
        f"before it is read. {_omitted_body_limit(PredictorServerArgs)}.",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels the pods require, for example a GPU node pool.")
    tolerations: list[Toleration] | None = Field(None, description="Taints the pods tolerate, for example on GPU nodes.")
    service_account_name: str | None = Field(
        None,
        pattern=DNS_1123_SUBDOMAIN,
        max_length=253,
        description="ServiceAccount of the predictor pods: the credentials KServe's storage initializer reads storageUri with.",
    )

    @property
    def deploys_model(self) -> bool:
        return self.inference_service_name is None

    @property
    def protocol_to_deploy(self) -> Protocol:
        """The protocol of a model Glassbox deploys: v2 unless the spec says otherwise."""
        return self.protocol or Protocol.v2


def uses_glassbox_predictor(predictor: PredictorSpec) -> bool:
    """PyTorch artifacts without a named runtime are served by Glassbox's predictor (dynamic batching, CUDA, v1 and v2)."""
    return predictor.deploys_model and (predictor.model_format or "").lower() == "pytorch" and predictor.runtime is None


# --------------------------------------------------------------------------- methods


class MethodType(enum.StrEnum):
    AnchorTabular = "AnchorTabular"
    AnchorText = "AnchorText"
    AnchorImage = "AnchorImage"
    KernelShap = "KernelShap"
    Counterfactual = "Counterfactual"
    IntegratedGradients = "IntegratedGradients"
    TrainingDataInfluence = "TrainingDataInfluence"


# Methods that need the model's weights and gradients: they run beside the model.
WHITE_BOX_METHODS = frozenset({MethodType.IntegratedGradients, MethodType.TrainingDataInfluence})
# Methods that need reference data (training or background rows) to be fitted.
METHODS_NEEDING_REFERENCE_DATA = frozenset(
    {MethodType.AnchorTabular, MethodType.KernelShap, MethodType.Counterfactual, MethodType.TrainingDataInfluence}
)


class DataFormat(enum.StrEnum):
    csv = "csv"
    npy = "npy"
    parquet = "parquet"


class ReferenceData(ApiModel):
    """Training or background data a method is fitted on, and how to read it."""

    uri: str = Field(description="Storage URI or local path of the data: CSV, NPY or Parquet.")
    format: DataFormat | None = Field(None, description="csv, npy or parquet; inferred from the file extension when omitted.")
    labels_uri: str | None = Field(None, description="Storage URI of the training labels (needed by TrainingDataInfluence).")
    target_column: str | None = Field(
        None, description="Column of a CSV or Parquet file that holds labels; it is dropped from the features."
    )
    text_column: str | None = Field(
        None,
        description="Column of a CSV or Parquet file that holds texts: the rows are then texts, not features (reference "
        "data for the outlier detector of a text model).",
    )
    feature_names: list[str] | None = Field(
        None, description="Names of the features, in column order; read from the file's header when omitted."
    )
    categorical_names: dict[str, list[str]] | None = Field(
        None,
        description="Categorical features: column index (as a string) to the names of its integer-coded values.",
    )
    max_rows: int | None = Field(None, ge=1, description="Use at most this many rows (a seeded sample).")
    sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="SHA-256 of the data file (64 hex digits); the explainer refuses to start on any other file.",
    )
    labels_sha256: str | None = Field(None, pattern=SHA256_PATTERN, description="SHA-256 of the labels file (labelsUri).")
    max_bytes: int = Field(
        DEFAULT_MAX_DOWNLOAD_BYTES,
        ge=1,
        le=MAX_DOWNLOAD_BYTES,
        description="Largest file downloaded over http(s); a larger one fails the explainer's start with a message saying so.",
    )
    download_timeout_seconds: int = Field(
        DEFAULT_DOWNLOAD_TIMEOUT_SECONDS,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Longest a download over http(s) may take in all.",
    )


class AnchorTabularParameters(ApiModel):
    """alibi AnchorTabular: an IF-THEN rule that holds the prediction with high precision."""

    threshold: float = Field(0.95, gt=0, le=1, description="Minimum precision of the anchor.")
    delta: float = Field(0.1, gt=0, lt=1, description="Significance level of the precision bound.")
    tau: float = Field(0.15, gt=0, lt=1, description="Margin between lower confidence bound and threshold.")
    batch_size: int = Field(100, ge=1, description="Samples drawn per candidate anchor per round.")
    coverage_samples: int = Field(10000, ge=1, le=1_000_000, description="Samples used to estimate coverage.")
    beam_size: int = Field(1, ge=1, description="Candidate anchors kept per round.")
    max_anchor_size: int | None = Field(None, ge=1, description="Most predicates in an anchor; unbounded when omitted.")
    disc_perc: list[int] = Field(
        default_factory=lambda: [25, 50, 75], description="Percentiles that discretise numerical features."
    )
    seed: int = Field(0, description="Random seed: the same seed gives the same anchor.")


class AnchorTextParameters(ApiModel):
    """alibi AnchorText with the unknown-token perturbation: words are replaced by a placeholder."""

    threshold: float = Field(0.95, gt=0, le=1, description="Minimum precision of the anchor.")
    sampling_strategy: Literal["unknown"] = Field(
        "unknown",
        description="How words are perturbed: 'unknown' replaces them with alibi's placeholder token UNK (no language model needed).",
    )
    sample_proba: float = Field(0.5, gt=0, lt=1, description="Probability that a word is replaced by the placeholder.")
    batch_size: int = Field(100, ge=1, description="Perturbed sentences per candidate anchor per round.")
    seed: int = Field(0, description="Random seed.")


class Segmentation(enum.StrEnum):
    slic = "slic"
    quickshift = "quickshift"
    felzenszwalb = "felzenszwalb"


class AnchorImageParameters(ApiModel):
    """alibi AnchorImage: the superpixels that anchor the prediction.

    With referenceData (an NPY of images), perturbed superpixels take their
    pixels from those images; without it, each is filled with its own mean colour.
    """

    segmentation: Segmentation = Field(Segmentation.slic, description="Superpixel algorithm.")
    n_segments: int = Field(15, ge=2, description="Approximate number of superpixels (slic).")
    threshold: float = Field(0.95, gt=0, le=1, description="Minimum precision of the anchor.")
    p_sample: float = Field(0.5, gt=0, lt=1, description="Probability that a superpixel is perturbed.")
    image_shape: list[int] | None = Field(None, description="Height, width and channels of the input images.")
    seed: int = Field(0, description="Random seed.")


class LinkFunction(enum.StrEnum):
    identity = "identity"
    logit = "logit"


class KernelShapParameters(ApiModel):
    """alibi KernelShap: additive feature attributions from a weighted linear model over coalitions."""

    nsamples: int | None = Field(
        None, ge=1, le=MAX_NSAMPLES, description="Coalitions sampled per explanation; alibi's 'auto' (2M+2048) when omitted."
    )
    background_size: int = Field(100, ge=1, description="Background rows the reference data is summarised to.")
    link: LinkFunction = Field(LinkFunction.identity, description="identity for probabilities, logit for log-odds.")
    l1_reg: str = Field("auto", description="Feature selection before the fit: auto, aic, bic, num_features(N) or false.")
    seed: int = Field(0, description="Random seed.")


class CounterfactualSearch(enum.StrEnum):
    sparse = "sparse"
    cfrl = "cfrl"


# CounterfactualParameters' fields that only alibi's CFRL reads.
CFRL_ONLY_FIELDS = ("train_steps", "latent_dim", "coeff_sparsity", "coeff_consistency")


class CounterfactualParameters(ApiModel):
    """Counterfactuals, black-box: the fewest features changed to reach another class, in that class's data distribution."""

    # search: sparse changes one feature per predictor call to a value of one of the target class's nearest
    # reference rows until the class changes; cfrl starts from alibi's CFRL (PyTorch backend, trained at load
    # time in an autoencoder's latent space). Either answer is then made minimal (unneeded changes reverted,
    # the rest moved back towards the instance) and moved into the target class's distribution.
    search: CounterfactualSearch = Field(
        CounterfactualSearch.sparse,
        description="sparse: a greedy search over the predictor's API, no training; cfrl: alibi's CounterfactualRL, "
        "trained at load time, as the starting point.",
    )
    candidate_rows: int = Field(
        10, ge=1, le=100, description="Nearest reference rows of the target class whose feature values the search tries."
    )
    max_changed_features: int = Field(
        10,
        ge=1,
        description="Features the sparse search changes before it starts from the target class's nearest reference row instead.",
    )
    distribution_steps: int = Field(
        6,
        ge=0,
        le=50,
        description="Sparsity against plausibility: features the answer may change beyond those the class needs, one at a "
        "time, to bring it into the target class's data distribution. 0 gives the fewest changes, possibly where the "
        "class has no data.",
    )
    train_steps: int = Field(2000, ge=1, description="cfrl only: training steps of the counterfactual generator at load time.")
    latent_dim: int = Field(8, ge=1, description="cfrl only: size of the autoencoder's latent space.")
    coeff_sparsity: float = Field(0.5, ge=0, description="cfrl only: weight of the sparsity loss.")
    coeff_consistency: float = Field(0.5, ge=0, description="cfrl only: weight of the consistency loss.")
    immutable_features: list[str] | None = Field(None, description="Features a counterfactual must not change.")
    seed: int = Field(0, description="Random seed.")

    @model_validator(mode="before")
    @classmethod
    def _cfrl_when_tuned_for_it(cls, values: Any) -> Any:
        """A manifest that tunes CFRL's training and names no search (as all did before `search` existed) keeps CFRL."""
        if isinstance(values, dict) and "search" not in values:
            if any(key in values for f in CFRL_ONLY_FIELDS for key in (f, to_camel(f))):
                return {**values, "search": CounterfactualSearch.cfrl}
        return values

    @model_validator(mode="after")
    def _cfrl_fields_need_cfrl(self) -> CounterfactualParameters:
        defaults = type(self).model_fields
        given = [to_camel(f) for f in CFRL_ONLY_FIELDS if getattr(self, f) != defaults[f].default]
        if given and self.search is not CounterfactualSearch.cfrl:
            raise ValueError(
                f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to search: cfrl only; "
                "set search: cfrl or leave them out"
            )
        return self


class IntegrationMethod(enum.StrEnum):
    gausslegendre = "gausslegendre"
    riemann_left = "riemann_left"
    riemann_right = "riemann_right"
    riemann_middle = "riemann_middle"
    riemann_trapezoid = "riemann_trapezoid"


class IntegratedGradientsParameters(ApiModel):
    """Integrated Gradients (white-box): path integral of gradients from a baseline to the input."""

    n_steps: int = Field(50, ge=2, description="Steps of the path integral.")
    method: IntegrationMethod = Field(IntegrationMethod.gausslegendre, description="Integration rule.")
    baseline: Literal["zeros", "mean"] = Field("zeros", description="Baseline input: zeros, or the mean of the reference data.")
    internal_batch_size: int = Field(100, ge=1, description="Rows per forward/backward pass.")


class Similarity(enum.StrEnum):
    grad_dot = "grad_dot"
    grad_cos = "grad_cos"
    grad_asym_dot = "grad_asym_dot"


class TrainingDataInfluenceParameters(ApiModel):
    """Training-data influence (white-box, alibi GradientSimilarity): the training rows that mattered most."""

    top_k: int = Field(5, ge=1, description="Most influential training instances returned.")
    similarity: Similarity = Field(Similarity.grad_cos, description="Similarity between gradients.")
    loss: Literal["cross_entropy", "mse"] = Field("cross_entropy", description="Loss whose gradients are compared.")


class MethodSpec(ApiModel):
    """One explanation method. Set `type`, and optionally the parameter block of that same type."""

    name: str | None = Field(
        None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=40,
        description="Name of the method in URLs and responses; the type in lower case when omitted.",
    )
    type: MethodType = Field(
        description="The method: AnchorTabular, AnchorText, AnchorImage, KernelShap, Counterfactual, IntegratedGradients or TrainingDataInfluence."
    )
    reference_data: ReferenceData | None = Field(
        None, description="Reference data for this method; overrides the explainer's referenceData."
    )
    anchor_tabular: AnchorTabularParameters | None = None
    anchor_text: AnchorTextParameters | None = None
    anchor_image: AnchorImageParameters | None = None
    kernel_shap: KernelShapParameters | None = None
    counterfactual: CounterfactualParameters | None = None
    integrated_gradients: IntegratedGradientsParameters | None = None
    training_data_influence: TrainingDataInfluenceParameters | None = None

    @property
    def effective_name(self) -> str:
        return self.name or self.type.value.lower()

    @property
    def is_white_box(self) -> bool:
        return self.type in WHITE_BOX_METHODS


# Each method type: its parameter block's attribute on MethodSpec, and that block's model. The one list;
# the maps below derive from it, and a test checks MethodSpec has exactly these blocks.
METHOD_PARAMETERS: dict[MethodType, tuple[str, type[ApiModel]]] = {
    MethodType.AnchorTabular: ("anchor_tabular", AnchorTabularParameters),
    MethodType.AnchorText: ("anchor_text", AnchorTextParameters),
    MethodType.AnchorImage: ("anchor_image", AnchorImageParameters),
    MethodType.KernelShap: ("kernel_shap", KernelShapParameters),
    MethodType.Counterfactual: ("counterfactual", CounterfactualParameters),
    MethodType.IntegratedGradients: ("integrated_gradients", IntegratedGradientsParameters),
    MethodType.TrainingDataInfluence: ("training_data_influence", TrainingDataInfluenceParameters),
}
PARAMETER_MODEL_OF: dict[MethodType, type[ApiModel]] = {kind: model for kind, (_, model) in METHOD_PARAMETERS.items()}
PARAMETER_FIELD_OF: dict[MethodType, str] = {kind: field for kind, (field, _) in METHOD_PARAMETERS.items()}


# --------------------------------------------------------------------------- explainer and graph


class ExplainerFit(ApiModel):
    """What the explainer server fits its methods from: all its pod receives of the ExplainerSpec, so a
    scaling, resources or placement edit never rolls its pods or refits its methods."""

    methods: list[MethodSpec] = Field(min_length=1, description="The explanation methods to serve (at least one).")
    default_method: str | None = Field(
        None,
        description="Name of the method that explains a request naming none (`method`, or `parameters.method` in a v2 body); "
        "the first method when omitted.",
    )
    reference_data: ReferenceData | None = Field(None, description="Reference data shared by every method that needs it.")

    @property
    def effective_default_method(self) -> str:
        """The method that explains a request naming none."""
        return self.default_method or self.methods[0].effective_name


# The most days a record may be kept before the background deletes it (a century: a typo's ceiling, not a policy).
MAX_RETENTION_DAYS = 36_500
# The longest one explanation job may run: a week.
MAX_JOB_TIMEOUT_SECONDS = 7 * 24 * 3600


class RecordsPostgres(ApiModel):
    """The PostgreSQL database every explainer replica shares for its records and jobs."""

    secret_name: str = Field(
        pattern=DNS_1123_SUBDOMAIN,
        max_length=253,
        description="Secret in the ExplainedModel's namespace that holds the connection string. The explainer reads "
        "it from its environment and never logs it; the operator never reads it.",
    )
    key: str = Field(
        "url",
        pattern=r"^[-._a-zA-Z0-9]+$",
        max_length=253,
        description="The Secret's key whose value is the connection string: a postgresql:// URI or libpq key=value pairs.",
    )


class RecordsSpec(ApiModel):
    """Explanation records: every explanation kept with what made it, a repeated question answered from its
    record, long explanations run as jobs, and audit queries over them."""

    enabled: bool | None = Field(
        None,
        description="Keep records (and accept jobs). Omitted: on where one store serves every replica, that is with "
        "postgres or when the explainer runs at most one replica (autoscaling.maxReplicas 1), off otherwise. "
        "true with more than one replica needs postgres.",
    )
    postgres: RecordsPostgres | None = Field(
        None,
        description="Keep records in PostgreSQL, shared by every replica (any replica answers any record and runs any "
        "job). Without it, records are a SQLite file in the pod.",
    )
    persistent_volume_claim: str | None = Field(
        None,
        pattern=DNS_1123_SUBDOMAIN,
        max_length=253,
        description="Keep the SQLite file on this PersistentVolumeClaim, so records outlive the pod (one replica). "
        "Without it (and without postgres) the file is on an emptyDir and lasts as long as the pod.",
    )
    store_inputs: bool = Field(
        False, description="Keep each explanation's input in its record. Inputs may be personal data: off by default."
    )
    strict: bool = Field(
        False,
        description="Answer no explanation that could not be recorded (503). Otherwise a failing store costs an "
        "explanation nothing: it is answered and the failure counted and logged.",
    )
    retention_days: int | None = Field(
        None, ge=1, le=MAX_RETENTION_DAYS, description="Delete records older than this, in the background; kept when omitted."
    )
    job_slots: int = Field(
        ExplainerServerArgs.model_fields["job_slots"].default,
        ge=1,
        le=MAX_WORKERS,
        description="Jobs one replica runs at once, each only while one of its workers is free.",
    )
    job_timeout_seconds: int = Field(
        int(ExplainerServerArgs.model_fields["job_timeout_seconds"].default),
        ge=1,
        le=MAX_JOB_TIMEOUT_SECONDS,
        description="Longest an explanation asked as a job may run; then the job fails, naming this field.",
    )

    def kept(self, max_replicas: int) -> bool:
        """Whether records are kept: as `enabled` says, else wherever one store serves every replica."""
        if self.enabled is not None:
            return self.enabled
        return self.postgres is not None or max_replicas <= 1


class ExplainerSpec(ExplainerFit):
    """How the explainer runs: its methods, data, and its own scaling, independent of the predictor."""

    model_storage_uri: str | None = Field(
        None,
        description="Model artifact for white-box methods when the predictor is an existing InferenceService; defaults to predictor.storageUri.",
    )
    model_storage_sha256: str | None = Field(
        None,
        pattern=SHA256_PATTERN,
        description="SHA-256 of the artifact at modelStorageUri; defaults to predictor.storageSha256 when the artifact is the predictor's.",
    )
    gpus: int = Field(0, ge=0, le=MAX_GPUS, description="NVIDIA GPUs per explainer replica, for white-box methods.")
    resources: ComputeResources = Field(default_factory=ComputeResources, description="CPU and memory per replica.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Replicas and autoscaling of the explainer.")
    capacity: Capacity = Field(
        default_factory=Capacity,
        description="Explanations one replica computes at once and holds waiting: its containerConcurrency and scale target.",
    )
    timeout_seconds: int = Field(
        60,
        ge=1,
        le=MAX_TIMEOUT_SECONDS,
        description="Longest one explanation may take before the explainer answers 504. The explainer's InferenceService "
        "and the graph's router wait longer than this, so the explainer's own answer always arrives.",
    )
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        le=MAX_BODY_BYTES_LIMIT,
        description="Largest explanation request body; a larger one gets 413 before it is read. "
        f"{_omitted_body_limit(ExplainerServerArgs)} (four "
        "224x224x3 images as JSON).",
    )
    records: RecordsSpec = Field(
        default_factory=RecordsSpec,
        description="Explanation records: kept, served again for the same question, asked as jobs, queried by auditors.",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels the explainer pods require.")
    tolerations: list[Toleration] | None = Field(None, description="Taints the explainer pods tolerate.")
    service_account_name: str | None = Field(
        None,
        pattern=DNS_1123_SUBDOMAIN,
        max_length=253,
        description="ServiceAccount of the explainer pods: the identity (workload identity, or the credentials KServe "
        "injects) that referenceData and modelStorageUri are read with from a private bucket.",
    )

    @property
    def keeps_records(self) -> bool:
        return self.records.kept(self.autoscaling.max_replicas)

    def fit_settings(self) -> ExplainerFit:
        """What the explainer server is told (the rest reaches it as arguments, or not at all)."""
        return ExplainerFit.model_validate(self.model_dump(include=set(ExplainerFit.model_fields)))


class DetectorType(enum.StrEnum):
    NearestNeighbors = "NearestNeighbors"


class DriftSpec(ApiModel):
    """Drift: the recent inputs as a whole tested against the reference data, window by window."""

    false_alarm_rate: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="The chance that a window of inputs drawn like the reference data is called drifted; the tests' "
        "thresholds follow from it.",
    )
    window_rows: int = Field(500, ge=20, le=100_000, description="Most recent inputs a window holds.")
    window_seconds: int = Field(
        3600, ge=60, le=30 * 86400, description="Inputs older than this leave the window, however few remain."
    )
    min_rows: int = Field(
        100, ge=20, le=100_000, description="Fewest inputs a window is tested with; until then drift is not judged."
    )
    test_every_rows: int = Field(100, ge=1, le=100_000, description="The window is tested again after this many new inputs.")


class DetectorFit(ApiModel):
    """How the outlier detector is fitted: all that its server receives, so a scaling edit never refits it."""

    type: DetectorType = Field(
        DetectorType.NearestNeighbors,
        description="NearestNeighbors: an input's score is its mean distance to the k nearest reference rows (features "
        "scaled by their median and interquartile range; images pooled to an 8x8 grid first).",
    )
    false_positive_rate: float = Field(
        0.01,
        gt=0,
        le=0.5,
        description="The alarm rate on inputs like the reference data: the threshold is set on held-out reference rows "
        "so that at most this fraction of such inputs is flagged.",
    )
    neighbors: int = Field(10, ge=1, le=1000, description="k: reference rows an input's distance is averaged over.")
    calibration_fraction: float = Field(
        0.3,
        ge=0.05,
        le=0.95,
        description="Fraction of the reference rows held out to set the threshold; the rest are searched for neighbours. "
        "The threshold needs at least 1/falsePositiveRate - 1 held-out rows.",
    )
    seed: int = Field(
        0, description="Seed of the split between searched and held-out rows: the same seed gives the same threshold."
    )
    reference_data: ReferenceData | None = Field(
        None,
        description="Rows the detector is fitted on: what inputs should look like. The explainer's referenceData when omitted.",
    )
    drift: DriftSpec | None = Field(
        None,
        description="Also test recent inputs as a whole against the reference data (tabular inputs). A predictor "
        "Glassbox deploys sends its requests here through KServe's request logger.",
    )


class DetectorSpec(DetectorFit):
    """An outlier detector beside the explainer: its own InferenceService, light and scaled on its own."""

    resources: ComputeResources = Field(
        default_factory=lambda: ComputeResources(cpu_request="500m", memory_request="1Gi"),
        description="CPU and memory per replica.",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Replicas and autoscaling of the detector.")
    capacity: Capacity = Field(
        default_factory=lambda: Capacity(workers=DETECTOR_WORKERS),
        description=f"Requests one replica judges at once ({DETECTOR_WORKERS} when omitted) and holds waiting: its "
        "containerConcurrency and scale target.",
    )
    max_body_bytes: int | None = Field(
        None,
        ge=1024,
        le=MAX_BODY_BYTES_LIMIT,
        description="Largest request body the detector takes; a larger one gets 413 before it is read. "
        f"{_omitted_body_limit(DetectorServerArgs)}.",
    )
    node_selector: dict[str, str] | None = Field(None, description="Node labels the detector pods require.")
    tolerations: list[Toleration] | None = Field(None, description="Taints the detector pods tolerate.")
    service_account_name: str | None = Field(
        None,
        pattern=DNS_1123_SUBDOMAIN,
        max_length=253,
        description="ServiceAccount of the detector pods: the identity its referenceData is read with from a private bucket.",
    )

    def fit_settings(self, fallback_reference: ReferenceData | None) -> DetectorFit:
        """What the detector server is told: the fit, with the explainer's reference data where it names none."""
        fit = DetectorFit.model_validate(self.model_dump(include=set(DetectorFit.model_fields)))
        if fit.reference_data is None:
            fit = fit.model_copy(update={"reference_data": fallback_reference})
        return fit


class Route(enum.StrEnum):
    predict = "predict"
    explain = "explain"
    predict_and_explain = "predictAndExplain"
    detect = "detect"
    predict_and_explain_if_outlier = "predictAndExplainIfOutlier"


# Routes that need spec.detector.
DETECTOR_ROUTES = frozenset({Route.detect, Route.predict_and_explain_if_outlier})


class GraphSpec(ApiModel):
    """The KServe InferenceGraph that wires predictor and explainer together."""

    enabled: bool = Field(True, description="Create the InferenceGraph; false serves predictor and explainer only.")
    routes: list[Route] = Field(
        default_factory=lambda: [Route.predict, Route.explain, Route.predict_and_explain],
        min_length=1,
        description="Routes the graph offers: predict, explain and predictAndExplain (one call returns both). A request "
        "chooses one with a top-level `route` field (or `parameters.route` in a v2 body).",
    )
    default_route: Route | None = Field(
        None,
        description="Route of a request that names none: predict when the graph offers it, otherwise the first route listed.",
    )
    min_replicas: int | None = Field(None, ge=0, le=MAX_REPLICAS, description="Fewest replicas of the graph router.")
    max_replicas: int | None = Field(None, ge=1, le=MAX_REPLICAS, description="Most replicas of the graph router.")

    @property
    def effective_default_route(self) -> Route:
        """The route of a request that names none."""
        if self.default_route is not None:
            return self.default_route
        return Route.predict if Route.predict in self.routes else self.routes[0]


def storage_scheme_problem(uri: str) -> str | None:
    """Why Glassbox will not read `uri` (validation and the servers alike), or None."""
    scheme = urlparse(uri).scheme.lower()
    if scheme in ALLOWED_STORAGE_SCHEMES:
        return None
    return f"'{scheme}://' is not a storage scheme Glassbox reads; use a path or one of {', '.join(s + '://' for s in ALLOWED_STORAGE_SCHEMES if s)}"


class Exposure(enum.StrEnum):
    cluster_local = "ClusterLocal"
    external = "External"


class ExplainedModelSpec(ApiModel):
    """A model served with KServe, explained in production."""

    predictor: PredictorSpec = Field(description="The model to explain: one to deploy, or an existing InferenceService.")
    explainer: ExplainerSpec = Field(description="The explanation methods and how the explainer runs.")
    detector: DetectorSpec | None = Field(
        None,
        description="An outlier detector fitted on reference data, served beside the explainer; the graph's detect and "
        "predictAndExplainIfOutlier routes call it.",
    )
    graph: GraphSpec = Field(default_factory=GraphSpec, description="The InferenceGraph routes.")
    exposure: Exposure = Field(
        Exposure.cluster_local,
        description="ClusterLocal (default): predictor, explainer and graph answer inside the cluster only. External: "
        "KServe also publishes them on the cluster's ingress domain; put authentication in front first.",
    )

    @property
    def is_external(self) -> bool:
        return self.exposure is Exposure.external


def explained_model(name: str, spec: ExplainedModelSpec, namespace: str | None = None) -> dict[str, Any]:
    """An ExplainedModel as `kubectl apply` and the API server take it, its spec as a user writes it (the
    fields that were set, camelCase): manifests built in code go through the API models, never by hand."""
    metadata = {"name": name} if namespace is None else {"name": name, "namespace": namespace}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
    }


# --------------------------------------------------------------------------- status


class Condition(ApiModel):
    """A Kubernetes-style condition."""

    type: str = Field(
        description="Ready, PredictorReady, ExplainerReady, DetectorReady, GraphReady, SpecValid or ScalingAsSpecified."
    )
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(description="One CamelCase word saying why.")
    message: str = Field("", description="What is wrong and what would be right, for a person.")
    last_transition_time: str | None = Field(None, description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The generation of the spec this condition describes.")


class StatusUrls(ApiModel):
    predict: str | None = Field(None, description="URL that answers predictions.")
    explain: str | None = Field(None, description="URL that answers explanations (the method name is a query parameter).")
    graph: str | None = Field(None, description="URL of the InferenceGraph.")
    detect: str | None = Field(None, description="URL that answers outlier verdicts (v1; v2 at /v2/models/NAME/infer).")
    drift: str | None = Field(None, description="URL of the drift monitor's latest report (spec.detector.drift).")
    records: str | None = Field(
        None, description="URL of the explanation records: an audit query here, one record at /ID, JSON Lines at .jsonl."
    )


class Children(ApiModel):
    predictor: str | None = Field(None, description="Name of the predictor InferenceService (owned, or the existing one).")
    explainer: str | None = Field(None, description="Name of the explainer InferenceService.")
    graph: str | None = Field(None, description="Name of the InferenceGraph.")
    detector: str | None = Field(None, description="Name of the outlier detector's InferenceService.")
    drift: str | None = Field(None, description="Name of the drift monitor's InferenceService (spec.detector.drift).")


class RateInterval(ApiModel):
    """An interval that holds a rate with a stated probability."""

    low: float = Field(description="The interval's lower end.")
    high: float = Field(description="The interval's upper end.")
    confidence: float = Field(description="The probability that the interval holds the rate.")


class DetectorStatus(ApiModel):
    """What the detector fitted, as it reports it once ready."""

    threshold: float = Field(description="The fitted threshold on the outlier score: inputs scoring above it are flagged.")
    false_positive_rate: float = Field(description="The alarm rate the threshold was set for.")
    held_out_rows: int = Field(description="Reference rows held out to set the threshold.")
    representation: str | None = Field(
        None,
        description="What distances are measured in: scaled or whitened (tabular rows, chosen on the reference data), "
        "pooled (images) or text.",
    )
    realised_false_positive_rate: RateInterval | None = Field(
        None,
        description="Where the alarm rate this threshold realises on inputs like the reference data lies: with heldOutRows "
        "rows it varies around falsePositiveRate by chance, and this interval holds it with the stated confidence.",
    )
    spec_hash: str = Field(description="The detector InferenceService's spec hash this was read from.")


class DriftStatus(ApiModel):
    """The drift monitor's latest window, as the operator last read it."""

    drifted: bool = Field(description="Whether the latest window drifted from the reference data.")
    p_value: float = Field(description="The window's combined p-value: drifted at or below falseAlarmRate.")
    false_alarm_rate: float = Field(description="The stated false-alarm rate per window.")
    window_rows: int = Field(description="Inputs in the window tested.")
    drifted_features: list[str] = Field(description="The features whose own test rejects, most drifted first (at most 5).")
    tested_at: str = Field(description="When the window was tested (RFC 3339).")


class ExplainedModelStatus(ApiModel):
    observed_generation: int | None = Field(None, description="The generation of the spec this status describes.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, PredictorReady, ExplainerReady, DetectorReady, GraphReady, SpecValid, ScalingAsSpecified.",
    )
    urls: StatusUrls = Field(default_factory=StatusUrls, description="The URLs to call.")
    children: Children = Field(default_factory=Children, description="The objects this ExplainedModel made or uses.")
    methods: str | None = Field(None, description="The methods served, comma-separated (a printer column).")
    detector: DetectorStatus | None = Field(None, description="The detector's fitted threshold, once it is ready.")
    records: str | None = Field(None, description="Where the explainer keeps its explanation records, or why it keeps none.")
    drift: DriftStatus | None = Field(None, description="The drift monitor's latest window (spec.detector.drift), once tested.")
