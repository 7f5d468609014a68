"""Glassbox's explainer: a `kserve.Model` server hosting one or more methods for one model.

    python -m glassbox.explainers.explainer --model_name credit-risk \
        --predictor_host credit-risk-predictor.ml.svc.cluster.local --predictor_protocol v2 \
        [--model_dir /mnt/models] [--explain_timeout_seconds 60] [kserve's own flags]

The methods and their reference data come from the ExplainerFit in
$GLASSBOX_EXPLAINER_SPEC (JSON), which the operator writes from the
ExplainedModel. Call it with

    POST /v1/models/NAME:explain  {"instances": [...], "method": "anchortabular", "picture": true}

or the v2 `infer` endpoint with `method` and `picture` in `parameters`. The
answer is alibi's Explanation (`meta`, `data`) with `method`, a human `summary`
per instance and, when asked, a base64 PNG `picture`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kserve
import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from glassbox.contract.api import ExplainerFit
from glassbox.contract.server_args import ExplainerServerArgs
from glassbox.contract.wire import (
    EXPLAINER_SPEC_ENV,
    FLAGGED_FIELD,
    JOBS_PATH,
    RECORDS_PATH,
    RECORDS_POSTGRES_ENV,
    ROUTE_FIELD,
    UNKNOWN_ROUTE_PATH,
)
from glassbox.explainers.data.reference_data import ReferenceTable, load_reference
from glassbox.explainers.explainer import metrics
from glassbox.explainers.explainer.job_runner import JobRunner
from glassbox.explainers.explainer.recording import (
    ExplanationResponse,
    Recorder,
    RecordSettings,
    answer_later,
    jsonable_input,
    request_id_of,
)
from glassbox.explainers.explainer.records_api import job_json, jobs_endpoints, records_endpoints
from glassbox.explainers.explainer.requests import (
    ExplanationRequest,
    asks_for_a_job,
    explanation_json,
    infer_request_json,
    job_request,
    read_explanation_request,
)
from glassbox.explainers.explainer.workers import WorkerPool
from glassbox.explainers.methods import METHODS, ExplanationMethod, MethodContext
from glassbox.explainers.predictor_calls.client import PredictorClient, PredictorSettings
from glassbox.explainers.predictor_calls.errors import PastDeadline, PredictorError
from glassbox.explainers.predictor_calls.memo import PredictionMemo
from glassbox.explainers.predictor_calls.routed_predict import ExplanationBounds, PredictorUsage, RoutedPredict
from glassbox.explainers.records.errors import RecordStoreError
from glassbox.explainers.records.jobs import JobQueue
from glassbox.explainers.records.keys import answer_key, input_digest
from glassbox.explainers.records.store import Record, new_record_id
from glassbox.explainers.serving.errors import InputError, http_error
from glassbox.explainers.serving.model_server import read_command_line, serve, server_parser, settings_from_json
from glassbox.explainers.serving.readiness import PROBE_PERIOD_SECONDS, PredictorWatch

log = logging.getLogger(__name__)
# The defaults of the server's flags, for a model built without a command line (in tests).
DEFAULTS = ExplainerServerArgs(model_name="defaults")


@dataclass(frozen=True)
class Budget:
    """How long an explanation may take: until `deadline` (time.monotonic), `seconds` from its start, as `setting` says."""

    deadline: float
    seconds: float
    setting: str


class ExplainerModel(kserve.Model):  # type: ignore[misc]
    def __init__(
        self,
        name: str,
        spec: ExplainerFit,
        predictor: PredictorSettings,
        model_dir: str | None = None,
        explain_timeout_seconds: float = DEFAULTS.explain_timeout_seconds,
        data_dir: Path | None = None,
        device: str = DEFAULTS.device,
        workers: int = DEFAULTS.explain_workers,
        predictor_wait_seconds: float = 600.0,
        max_waiting: int = DEFAULTS.max_waiting_explanations,
        memo_max_bytes: int = DEFAULTS.memo_max_bytes,
        predictor_probe_seconds: float = PROBE_PERIOD_SECONDS,
        predictor_probe_while_idle: bool = True,
        model_sha256: str | None = None,
        records: RecordSettings | None = None,
        job_timeout_seconds: float = DEFAULTS.job_timeout_seconds,
        job_slots: int = DEFAULTS.job_slots,
        job_lease_seconds: float = DEFAULTS.job_lease_seconds,
    ):
        super().__init__(name)
        self.record_settings = records
        self.recorder: Recorder | None = None
        self.jobs: JobQueue | None = None
        self.job_runner: JobRunner | None = None
        self.job_timeout_seconds = job_timeout_seconds
        self.job_slots = job_slots
        self.job_lease_seconds = job_lease_seconds
        self.model_sha256 = model_sha256
        self.spec = spec
        self.predictor_settings = predictor
        self.model_dir = model_dir
        self.explain_timeout_seconds = explain_timeout_seconds
        self.data_dir = data_dir
        self.requested_device = device
        self.workers = workers
        self.predictor_wait_seconds = predictor_wait_seconds
        self.max_waiting = max_waiting
        self.memo_max_bytes = memo_max_bytes
        self.predictor_probe_seconds = predictor_probe_seconds
        self.predictor_probe_while_idle = predictor_probe_while_idle
        self.methods: dict[str, ExplanationMethod] = {}
        self.predictor_watch: PredictorWatch | None = None

    # ------------------------------------------------------------------ loading

    def load(self) -> bool:
        if self.methods:
            # kserve loads a model again when it says it is not healthy; fitting again would take minutes.
            self.ready = True
            return True
        self.client = PredictorClient(self.predictor_settings)
        predict = RoutedPredict(self.client)
        black_box = [m for m in self.spec.methods if not m.is_white_box]
        if black_box:
            log.info("waiting for the predictor at %s", self.client.ready_url)
            self.client.wait_until_ready(self.predictor_wait_seconds)
        model, tokenizer, device = self._load_model()
        tables: dict[str, ReferenceTable] = {}
        for method_spec in self.spec.methods:
            data_spec = method_spec.reference_data or self.spec.reference_data
            reference = None
            if data_spec is not None:
                key = data_spec.model_dump_json()
                if key not in tables:
                    tables[key] = load_reference(data_spec, self.data_dir)
                reference = tables[key]
            method = METHODS[method_spec.type](method_spec, MethodContext(predict, reference, model, device, tokenizer))
            started = time.monotonic()
            method.fit()
            log.info("fitted %s (%s) in %.1f s", method.name, method_spec.type.value, time.monotonic() - started)
            self.methods[method.name] = method
        self.pool = WorkerPool(self.name, self.workers, self.max_waiting)
        if self.record_settings is not None:
            self.recorder = Recorder(self.name, self.record_settings)
            self.recorder.start_retention()
            self.jobs = JobQueue(self.recorder.store, self.name)
            self.job_runner = JobRunner(
                self.jobs, self.run_job, self.pool.has_free_worker, slots=self.job_slots, lease_seconds=self.job_lease_seconds
            )
        if black_box:
            self.predictor_watch = PredictorWatch(
                self.client.readiness_problem, self.predictor_probe_seconds, self.predictor_probe_while_idle
            )
            self.predictor_watch.start()
            metrics.PREDICTOR_READY.labels(self.name).set_function(lambda: float(self.not_ready() is None))
        self.ready = True
        return True

    def not_ready(self) -> str | None:
        """Why the explainer is not ready (its readiness paths answer 503 with it), or None."""
        if not self.ready:
            return "the explainer has not finished fitting its methods"
        if self.predictor_watch is not None and self.predictor_watch.problem is not None:
            return f"its black-box methods call the predictor, and {self.predictor_watch.problem}"
        return None

    def stop(self) -> None:
        """kserve's unload, after the server has answered every request in flight."""
        self.ready = False
        if self.predictor_watch is not None:
            self.predictor_watch.stop()
        if self.methods:
            self.pool.shutdown()
            self.client.close()
        if self.recorder is not None:
            self.recorder.close()

    def _load_model(self) -> tuple[Any, Any, str]:
        if not any(m.is_white_box for m in self.spec.methods):
            return None, None, "cpu"
        from glassbox.explainers.data.torch_artifacts import Tokenizer, choose_device, load_module

        if not self.model_dir:
            raise RuntimeError("white-box methods need the model artifact: pass --model_dir")
        device = choose_device(self.requested_device)
        return load_module(self.model_dir, device, self.model_sha256), Tokenizer.load(self.model_dir), device

    # ------------------------------------------------------------------ requests

    def _method_for(self, requested: Any) -> ExplanationMethod:
        if requested is None:
            return self.methods[self.spec.effective_default_method]
        method = self.methods.get(str(requested).lower())
        if method is None:
            raise InputError(f"no method '{requested}' here; the methods are {sorted(self.methods)}", 404)
        return method

    async def _explain(
        self,
        payload: dict[str, Any] | InferRequest,
        budget: Budget,
        chosen: list[ExplanationMethod],
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        request = read_explanation_request(payload, self.name)
        method = self._method_for(request.method)
        chosen.append(method)
        instances = method.check_instances(request.instances())
        targets = request.targets(len(instances))
        if self.recorder is None:
            answer, _ = await self._compute(method, instances, targets, request.picture, budget)
        else:
            answer = await self._explain_recorded(self.recorder, request, method, instances, targets, budget, headers)
        if request.flagged is not None:
            answer[FLAGGED_FIELD] = request.flagged
        return answer

    async def _compute(
        self,
        method: ExplanationMethod,
        instances: np.ndarray | list[str],
        targets: list[int] | None,
        picture: bool,
        budget: Budget,
    ) -> tuple[dict[str, Any], PredictorUsage]:
        """The explanation, computed on a worker by its deadline, and what it asked of the predictor."""
        usage = PredictorUsage()
        deadline = budget.deadline

        def work(cancelled: threading.Event) -> dict[str, Any]:
            bound = ExplanationBounds(cancelled, deadline, usage, PredictionMemo(max_bytes=self.memo_max_bytes))
            try:
                bound.hold()
                if cancelled.is_set() or time.monotonic() >= deadline:
                    raise PastDeadline("the explanation ran past its deadline before a worker was free")
                explanation = method.explain(instances) if targets is None else method.explain_towards(instances, targets)
                answer = explanation_json(explanation)
                answer["method"] = method.name
                answer["summary"] = method.summarize(explanation, instances)
                if picture:
                    answer["picture"] = {
                        "content_type": "image/png",
                        "base64": base64.b64encode(method.picture(explanation, instances)).decode(),
                    }
                return answer
            finally:
                bound.release()
                metrics.PREDICTOR_CALLS.labels(self.name, method.name).observe(usage.calls)
                metrics.PREDICTOR_ROWS.labels(self.name, method.name).observe(usage.rows)

        try:
            return await self.pool.run(work, deadline, method.name), usage
        except PastDeadline as error:
            raise self._past_deadline(method, budget, error.cause) from None

    async def _explain_recorded(
        self,
        recorder: Recorder,
        request: ExplanationRequest,
        method: ExplanationMethod,
        instances: np.ndarray | list[str],
        targets: list[int] | None,
        budget: Budget,
        headers: dict[str, str] | None,
    ) -> dict[str, Any]:
        """From the record that holds this answer, or computed (once for identical requests together) and recorded."""
        settings = method.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        digest = input_digest(instances)
        record = Record(
            model=self.name,
            model_digest=recorder.settings.model_digest,
            explained_model=recorder.settings.explained_model,
            generation=recorder.settings.generation,
            method=method.name,
            settings=settings,
            input_digest=digest,
            answer_key=answer_key(self.name, recorder.settings.model_digest, settings, digest, targets, request.picture),
            request_id=request_id_of(request.payload, headers),
            outcome=metrics.OK,
            seconds=0.0,
            input=jsonable_input(instances) if recorder.settings.store_inputs else None,
        )

        async def compute() -> tuple[dict[str, Any], int, int]:
            answer, usage = await self._compute(method, instances, targets, request.picture, budget)
            return answer, usage.calls, usage.rows

        return await recorder.recorded(record, request.fresh, compute)

    def _past_deadline(self, method: ExplanationMethod, budget: Budget, cause: str | None) -> Exception:
        metrics.TIMEOUTS.labels(self.name, method.name).inc()
        return http_error(
            504,
            f"{method.name} took longer than {budget.seconds:g} s ({budget.setting}){f' ({cause})' if cause else ''}; "
            "raise the timeout, or ask for a cheaper explanation (smaller batchSize or nsamples)",
        )

    async def start_jobs(self) -> None:
        """Start running jobs (the server's start-up: jobs left queued or running by a stopped replica included)."""
        if self.job_runner is not None:
            self.job_runner.start()

    async def stop_jobs(self) -> None:
        if self.job_runner is not None:
            await self.job_runner.stop()

    async def run_job(self, request: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        """A job's explanation, as any explanation is computed and recorded, within the jobs' own timeout."""
        return await self._explain_within(request, headers, self.job_timeout_seconds, "the explainer's --job_timeout_seconds")

    async def _submit_job(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None) -> dict[str, Any]:
        """Check the request as if it ran now, queue it as a job, and answer 202 with where its state will be."""
        if self.jobs is None:
            raise http_error(
                400, "an explanation asked as a job needs the explainer's records (--records_path or --records_postgres)"
            )
        try:
            request = read_explanation_request(payload, self.name)
            method = self._method_for(request.method)
            request.targets(len(method.check_instances(request.instances())))
            job_id = new_record_id()
            # Kept as JSON to run later (a v2 request's binary tensors as the JSON body that says the same); the
            # record names the caller's request id, or (asked without one) the job's.
            kept = infer_request_json(payload) if isinstance(payload, InferRequest) else payload
            body = {"id": request_id_of(payload, headers) or job_id, **job_request(kept)}
            job = await asyncio.to_thread(self.jobs.submit, body, job_id)
        except InputError as error:
            raise http_error(error.status, str(error)) from None
        except RecordStoreError as error:
            raise http_error(503, f"the job could not be queued: {error}") from None
        location = JOBS_PATH.format(model=self.name) + f"/{job.id}"
        answer_later(location)
        return {"job": job_json(job), "location": location}

    async def explain(self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """The explanation now, within explainer.timeoutSeconds; or, asked as a job, 202 and where to find it."""
        if asks_for_a_job(payload, headers):
            return await self._submit_job(payload, headers)
        return await self._explain_within(payload, headers, self.explain_timeout_seconds, "explainer.timeoutSeconds")

    async def _explain_within(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None, seconds: float, setting: str
    ) -> dict[str, Any]:
        started = time.monotonic()
        chosen: list[ExplanationMethod] = []
        outcome = metrics.ERROR
        try:
            answer = await self._explain(payload, Budget(started + seconds, seconds, setting), chosen, headers)
            outcome = metrics.OK
            return answer
        except InputError as error:
            outcome = metrics.outcome_of(error)
            raise http_error(error.status, str(error)) from None
        except PredictorError as error:
            outcome = metrics.outcome_of(error)
            if error.down and self.predictor_watch is not None:
                self.predictor_watch.call_failed(str(error))
            raise http_error(error.status, str(error)) from None
        except Exception as error:
            outcome = metrics.outcome_of(error)
            if getattr(error, "status_code", None):  # already an HTTP error
                raise
            log.exception("explanation failed")
            raise http_error(500, f"the explainer failed: {type(error).__name__}: {error}") from None
        finally:
            method = chosen[0].name if chosen else metrics.NO_METHOD
            metrics.EXPLANATION_SECONDS.labels(self.name, method, outcome).observe(time.monotonic() - started)

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        """v2 has no explain verb: `infer` on the explainer explains, answering the Explanation as a JSON BYTES output."""
        answer = await self.explain(payload, headers)
        if not isinstance(payload, InferRequest):
            return answer
        output = InferOutput(name="explanation", shape=[1], datatype="BYTES", data=[json.dumps(answer)])
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])


def records_postgres_url() -> str:
    url = os.environ.get(RECORDS_POSTGRES_ENV, "").strip()
    if not url:
        raise SystemExit(f"--records_postgres needs the store's connection string in ${RECORDS_POSTGRES_ENV}")
    return url


async def unknown_route(request: Request) -> JSONResponse:
    """What the graph answers a request whose `route` it does not offer (the graph lists its routes in the query)."""
    routes = [r for r in request.query_params.get("routes", "").split(",") if r]
    try:
        body = json.loads(await request.body())
    except ValueError:
        body = None
    named = body.get(ROUTE_FIELD) if isinstance(body, dict) else None
    if named is None and isinstance(body, dict) and isinstance(body.get("parameters"), dict):
        named = body["parameters"].get(ROUTE_FIELD)
    message = (
        f'route {json.dumps(named)} is not one this graph offers: send "route" (or "parameters": {{"route": ...}} '
        f"in a v2 body) as one of {routes}, or leave it out for the graph's default route"
    )
    return JSONResponse(status_code=400, content={"error": message})


def build_parser() -> argparse.ArgumentParser:
    return server_parser(ExplainerServerArgs, __doc__)


def main() -> None:
    # alibi's sampling holds the GIL for long stretches; a shorter switch interval hands it
    # sooner to the threads whose predictor answers have arrived (measured against local
    # mode on 2 cores: AnchorTabular from 1.9 to 2.4 explanations per second at one client).
    sys.setswitchinterval(0.0005)
    args, kserve_flags = read_command_line(build_parser(), ExplainerServerArgs)
    # Load-time fitting logs what it does; alibi's progress bars would flood the log.
    os.environ.setdefault("TQDM_DISABLE", "1")
    spec_json = args.explainer_spec or os.environ.get(EXPLAINER_SPEC_ENV)
    if not spec_json:
        raise SystemExit(f"no methods: set ${EXPLAINER_SPEC_ENV} or --explainer_spec to an ExplainerFit (JSON)")
    spec = settings_from_json(
        ExplainerFit,
        spec_json,
        EXPLAINER_SPEC_ENV,
        "An operator older than this explainer writes the whole ExplainerSpec there: upgrade the operator with the explainer",
    )
    if not args.predictor_host and any(not m.is_white_box for m in spec.methods):
        raise SystemExit("black-box methods call the predictor: pass --predictor_host HOST[:PORT]")
    settings = PredictorSettings(
        host=args.predictor_host or "",
        model_name=args.model_name,
        protocol=args.predictor_protocol,
        timeout_seconds=float(args.predictor_request_timeout_seconds),
        retries=max(2, args.predictor_request_retries),
        max_request_rows=args.predictor_max_request_rows,
        use_ssl=args.predictor_use_ssl,
    )
    model = ExplainerModel(
        args.model_name,
        spec,
        settings,
        model_dir=args.model_dir,
        explain_timeout_seconds=args.explain_timeout_seconds,
        data_dir=args.data_dir,
        device=args.device,
        workers=args.explain_workers,
        max_waiting=args.max_waiting_explanations,
        memo_max_bytes=args.memo_max_bytes,
        predictor_probe_while_idle=args.predictor_probe == "periodic",
        model_sha256=args.model_sha256,
        job_timeout_seconds=args.job_timeout_seconds,
        job_slots=args.job_slots,
        job_lease_seconds=args.job_lease_seconds,
        records=None
        if args.records_path is None and not args.records_postgres
        else RecordSettings(
            path=args.records_path,
            postgres_url=records_postgres_url() if args.records_postgres else None,
            store_inputs=args.records_store_inputs,
            strict=args.records_strict,
            retention_days=args.records_retention_days,
            model_digest=args.model_digest,
            explained_model=args.explained_model,
            generation=args.explained_model_generation,
        ),
    )
    model.load()
    kserve.model_server.app.add_api_route(UNKNOWN_ROUTE_PATH, unknown_route, methods=["POST"], include_in_schema=False)
    if model.recorder is not None:
        one, page, export = records_endpoints(model.recorder)
        assert model.jobs is not None
        job_state, job_cancel = jobs_endpoints(model.jobs, model.recorder)
        kserve.model_server.app.add_api_route(JOBS_PATH + "/{job_id}", job_state, methods=["GET"], include_in_schema=False)
        kserve.model_server.app.add_api_route(JOBS_PATH + "/{job_id}", job_cancel, methods=["DELETE"], include_in_schema=False)
        kserve.model_server.app.router.on_startup.append(model.start_jobs)
        kserve.model_server.app.router.on_shutdown.append(model.stop_jobs)
        kserve.model_server.app.add_api_route(RECORDS_PATH + "/{record_id}", one, methods=["GET"], include_in_schema=False)
        kserve.model_server.app.add_api_route(RECORDS_PATH, page, methods=["GET"], include_in_schema=False)
        kserve.model_server.app.add_api_route(RECORDS_PATH + ".jsonl", export, methods=["GET"], include_in_schema=False)
    serve(
        model,
        kserve_flags,
        max_body_bytes=args.max_body_bytes,
        longest_request_seconds=args.explain_timeout_seconds,
        not_ready=model.not_ready,
        middleware=ExplanationResponse if model.recorder is not None else None,
    )
