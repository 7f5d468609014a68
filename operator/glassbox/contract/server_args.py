"""The servers' command lines as typed models: the operator's builders render them with `to_args`, and
each server parses its own with the same model (`add_to_parser`, then `from_namespace`).

One declaration per flag (its name, type, default, bounds and help), so a flag the builders write is
one its server reads, and a default lives in one place. A server's parser refuses an argument no field
names. Some fields are flags of KServe's own ModelServer parser, which every server's parser inherits
(`KSERVE_FLAGS`): the model reads and validates what that parser produced and adds nothing for them.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from glassbox.contract.wire import DETECTOR_FIT_ENV, EXPLAINER_SPEC_ENV, RECORDS_POSTGRES_ENV

# KServe's ModelServer parser (kserve/model_server.py) defines these; a server's parser inherits them.
KSERVE_FLAGS = frozenset(
    {
        "model_name",
        "predictor_host",
        "predictor_protocol",
        "predictor_use_ssl",
        "predictor_request_timeout_seconds",
        "predictor_request_retries",
    }
)

# Most rows one prediction request may carry, on both sides: a whole KernelSHAP perturbation set fits,
# and Glassbox's predictor splits it into forward passes.
MAX_REQUEST_ROWS = 262_144
# Most bytes one explanation's memo of scored rows may hold (float32 rows of 224x224x3 images: about 440).
MEMO_MAX_BYTES = 256 * 1024 * 1024
Device = Literal["auto", "cuda", "cpu"]
# Explanations one explainer computes at once, on threads (alibi's searches hold the GIL between predictor calls:
# more threads overlap their calls, not their computing).
EXPLAIN_WORKERS = 4
# Most explanations one explainer holds waiting for a worker when nothing in front of it buffers (local mode,
# RawDeployment): a burst of 24 at 0.5 s each waits about 3 s on four workers. A request waits only while its
# deadline allows; each holds its body (at most --max_body_bytes) while it waits.
MAX_WAITING_EXPLANATIONS = 32
# The detector judges a request in milliseconds, mostly in numpy: two threads keep one core busy.
DETECTOR_WORKERS = 2


def _render(value: Any) -> str:
    """A value as a flag's text: booleans as KServe's parser reads them, whole floats without a fraction."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ServerArgs(BaseModel):
    """What one server's command line says. Only fields set when built are rendered, in declaration order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model_name: str = Field(description="the model name the server answers for")

    @classmethod
    def of(cls, **values: Any) -> Self:
        """The command line with these values; a None leaves the flag out, so the server's default holds."""
        return cls(**{name: value for name, value in values.items() if value is not None})

    def to_args(self) -> list[str]:
        return [f"--{name}={_render(value)}" for name, value in self.model_dump(exclude_unset=True, exclude_none=True).items()]

    @classmethod
    def add_to_parser(cls, parser: argparse.ArgumentParser) -> None:
        """One `--field` per field that `parser` (or the parser it inherits) does not define already.
        Values arrive as text and are converted and checked by the model, so every flag is checked the same way."""
        known = {action.dest for action in parser._actions}
        for name, field in cls.model_fields.items():
            if name in known:
                continue
            default = "required" if field.is_required() else f"default: {field.default}"
            parser.add_argument(
                f"--{name}", default=argparse.SUPPRESS, required=field.is_required(), help=f"{field.description} ({default})"
            )

    @classmethod
    def from_namespace(cls, parsed: argparse.Namespace, parser: argparse.ArgumentParser) -> Self:
        """The model from what `parser` parsed; a value the model refuses ends the program as argparse does (exit 2)."""
        values = {name: getattr(parsed, name) for name in cls.model_fields if hasattr(parsed, name)}
        values = {name: value for name, value in values.items() if value is not None or name not in KSERVE_FLAGS}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = "; ".join(f"--{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors())
            parser.error(f"{problems} (see --help)")


class PredictorServerArgs(ServerArgs):
    """Glassbox's PyTorch predictor (`glassbox.explainers.predictor.server`)."""

    model_dir: str = Field(description="folder (or file) holding model.pt or model.pt2")
    device: Device = Field("auto", description="where the forward pass runs")
    max_batch_size: int = Field(256, ge=1, description="most rows in one forward pass")
    max_batch_latency_ms: float = Field(
        0.0,
        ge=0,
        description="longest a request waits for others to join its batch; 0 runs a batch as soon as the model is free, "
        "with every request that queued while it was busy",
    )
    # A full request of 262,144 rows of a few features, as binary tensors or JSON.
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1, description="largest request body (then 413)")
    model_sha256: str | None = Field(None, description="refuse to load an artifact whose SHA-256 is not this")
    max_request_rows: int = Field(MAX_REQUEST_ROWS, ge=1, description="most rows one request may carry")
    max_queued_rows: int = Field(
        4 * MAX_REQUEST_ROWS, ge=1, description="rows that may wait for the model at once; past it, 503 with Retry-After"
    )
    # An explainer's call gives up at 30 s by default: the predictor's answer comes first.
    request_timeout_seconds: float = Field(60.0, gt=0, description="longest a request waits for its answer (then 504)")
    cpu_threads: int = Field(1, ge=0, description="threads per forward pass on the CPU (0: torch's default, every core)")
    request_logger_url: str | None = Field(
        None,
        description="post a copy of each prediction request here, as KServe's request logger does (local mode: in a "
        "cluster, KServe's logger does it)",
    )


class ExplainerServerArgs(ServerArgs):
    """The explainer (`glassbox.explainers.explainer.server`). Its methods come from an ExplainerFit (JSON)
    in `explainer_spec`, or in the environment variable EXPLAINER_SPEC_ENV when that is not given."""

    predictor_host: str | None = Field(None, description="HOST[:PORT] (or a URL) where the predictor answers")
    predictor_protocol: Literal["v1", "v2"] = Field("v1", description="the predictor's protocol")
    explain_timeout_seconds: float = Field(60.0, gt=0, description="longest one explanation may take (then 504)")
    predictor_request_timeout_seconds: int = Field(600, ge=1, description="longest one call to the predictor may take")
    predictor_use_ssl: bool = Field(False, description="call the predictor over TLS")
    # An explanation request carries a few instances: 8 MiB holds four 224x224x3 images as JSON.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1, description="largest request body (then 413)")
    predictor_max_request_rows: int = Field(
        MAX_REQUEST_ROWS,
        ge=1,
        description="most rows per call to the predictor (larger perturbation batches go in parts, concurrently)",
    )
    model_dir: str | None = Field(None, description="the model artifact, for white-box methods")
    model_sha256: str | None = Field(None, description="refuse to load an artifact whose SHA-256 is not this")
    explainer_spec: str | None = Field(None, description=f"ExplainerFit JSON (default: ${EXPLAINER_SPEC_ENV})")
    data_dir: Path | None = Field(None, description="folder that relative reference-data paths are read from")
    device: Device = Field("auto", description="where white-box methods run")
    explain_workers: int = Field(EXPLAIN_WORKERS, ge=1, description="explanations computed at once")
    max_waiting_explanations: int = Field(
        MAX_WAITING_EXPLANATIONS,
        ge=0,
        description="most explanations waiting for a worker; a request waits only while those ahead of it leave it "
        "time to finish by its deadline, and is refused otherwise (503 with Retry-After)",
    )
    memo_max_bytes: int = Field(MEMO_MAX_BYTES, ge=0, description="most bytes one explanation's memo of scored rows may hold")
    predictor_request_retries: int = Field(
        0, ge=0, description="retries of a failed predictor call (the explainer makes at least 2)"
    )
    predictor_probe: Literal["periodic", "after_failure"] = Field(
        "periodic",
        description="when readiness probes the predictor: every 2 s, or only after a call found it down "
        "until it is back (for a predictor that scales to zero: probes would keep it awake)",
    )
    records_path: Path | None = Field(
        None, description="SQLite file of explanation records (none: explanations are not recorded nor served again)"
    )
    records_postgres: bool = Field(
        False,
        description=f"keep explanation records in PostgreSQL, shared by every replica; its connection string is in ${RECORDS_POSTGRES_ENV}",
    )
    records_store_inputs: bool = Field(False, description="keep each explanation's input in its record (it may be personal data)")
    records_strict: bool = Field(
        False, description="answer no explanation the store could not record (503); otherwise answer it and count the failure"
    )
    records_retention_days: float | None = Field(
        None, gt=0, description="delete records older than this many days, in the background (none: keep them)"
    )
    job_timeout_seconds: float = Field(
        3600.0, gt=0, description="longest an explanation asked as a job may take (then the job fails, naming it)"
    )
    job_slots: int = Field(1, ge=1, description="jobs this replica runs at once, each only while a worker is free")
    job_lease_seconds: float = Field(
        30.0,
        gt=0,
        description="how long a running job is this replica's without a renewal (renewed every third of it); a job "
        "whose replica stopped is run again once its lease has passed",
    )
    model_digest: str | None = Field(
        None,
        description="what identifies the model's version in a record (an artifact's SHA-256); an answer is served "
        "again only for the same digest",
    )
    explained_model: str | None = Field(None, description="the ExplainedModel (NAMESPACE/NAME) its records name")
    explained_model_generation: int | None = Field(
        None, ge=1, description="the generation of the ExplainedModel's spec this explainer was deployed from, in its records"
    )


class DetectorServerArgs(ServerArgs):
    """The outlier detector (`glassbox.explainers.detector.server`). What it fits comes from a DetectorFit
    (JSON) in `detector_fit`, or in the environment variable DETECTOR_FIT_ENV when that is not given."""

    # A detection request carries what a prediction request does, short of a perturbation set.
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1, description="largest request body (then 413)")
    detector_fit: str | None = Field(None, description=f"DetectorFit JSON (default: ${DETECTOR_FIT_ENV})")
    data_dir: Path | None = Field(None, description="folder that relative reference-data paths are read from")
    detector_workers: int = Field(
        DETECTOR_WORKERS, ge=1, description="requests judged at once, on threads (the rest wait their turn)"
    )
    drift_only: bool = Field(
        False,
        description="serve only the drift monitor (the fit's drift settings), not outlier verdicts: its own "
        "InferenceService of one replica, since a window of recent inputs is one window",
    )
    drift_events_url: str | None = Field(
        None,
        description="forward each request POSTed to the observe path here, as KServe's request logger would (the "
        "graph's predict route for an existing InferenceService, which carries no logger of Glassbox's)",
    )
    observed_inference_service: str | None = Field(
        None, description="the InferenceService the observed requests are for (the events' ce-inferenceservicename)"
    )
