"""Glassbox's outlier detector: a `kserve.Model` server that says, per instance, whether an input is unlike
the reference data it was fitted on (see outliers for the method and its threshold).

    python -m glassbox.explainers.detector --model_name credit-risk-detector \
        [--detector_fit JSON (default $GLASSBOX_DETECTOR_FIT)] [--data_dir DIR] [kserve's own flags]

    POST /v1/models/NAME:predict   {"instances": [[...], ...]}
      -> {"predictions": [{"is_outlier": true, "score": 4.1, "threshold": 2.3, "reference_quantile": 1.0}, ...]}
    POST /v2/models/NAME/infer     -> outputs is_outlier (BOOL), score, threshold, reference_quantile (FP64)
    "picture": true (v1; `parameters.picture` in v2) adds a PNG of the scores against the reference rows' scores
    POST /glassbox/v1/models/NAME/flagged   (the graph's gate before the explainer)
      -> the request narrowed to its outliers, with "flagged": [their indices in the request];
         {"flagged": [], "summary": "..."} when there are none
    GET /glassbox/v1/models/NAME/fitted -> {"threshold", "falsePositiveRate", "heldOutRows", "representation",
        "realisedFalsePositiveRate"} (for the status)
    POST /glassbox/v1/models/NAME/observe   (with --drift_events_url: the graph's predict route for an existing
        InferenceService) -> 200 {} at once; a copy goes to the drift monitor as KServe's request logger sends it
    With --drift_only (spec.detector.drift, its own InferenceService NAME-drift), instead:
    POST /glassbox/v1/models/NAME/drift/events   a prediction request as KServe's request logger sends it (a CloudEvent)
    GET /glassbox/v1/models/NAME/drift -> the latest window's report: drifted, pValue, features most drifted first

`reference_quantile` is the fraction of held-out reference rows that score below the input.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import kserve
import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from glassbox.contract.api import DetectorFit
from glassbox.contract.server_args import DetectorServerArgs
from glassbox.contract.wire import (
    DETECTOR_FIT_ENV,
    DETECTOR_FITTED_PATH,
    DETECTOR_GATE_PATH,
    DETECTOR_OBSERVE_PATH,
    DRIFT_EVENTS_PATH,
    DRIFT_PATH,
    FITTED_FALSE_POSITIVE_RATE,
    FITTED_HELD_OUT_ROWS,
    FITTED_REALISED_RATE,
    FITTED_REPRESENTATION,
    FITTED_THRESHOLD,
    FLAGGED_FIELD,
)
from glassbox.explainers.data.reference_data import load_reference, load_reference_texts
from glassbox.explainers.detector import metrics
from glassbox.explainers.detector.drift_inputs import DriftInputs
from glassbox.explainers.detector.drift_monitor import DriftMonitor
from glassbox.explainers.detector.errors import DetectorFitError
from glassbox.explainers.detector.logged_requests import read_logged_request
from glassbox.explainers.detector.outliers import (
    NearestNeighborsDetector,
    Verdicts,
    fit_nearest_neighbors,
    realised_rate_interval,
)
from glassbox.explainers.serving.errors import InputError, http_error
from glassbox.explainers.serving.model_server import read_command_line, serve, server_parser, settings_from_json
from glassbox.explainers.serving.payloads import DecodedRequest, Limits, decode_request, is_v2_body, v2_request_from_json
from glassbox.explainers.serving.request_logger import RequestLogger

log = logging.getLogger(__name__)
# The realised false-positive rate's interval in /fitted (and so in the status) holds it with this probability.
REALISED_RATE_CONFIDENCE = 0.95
# The defaults of the server's flags, for a detector built without a command line (in tests).
DEFAULTS = DetectorServerArgs(model_name="defaults")
Answer = TypeVar("Answer")

# A detection request carries what a prediction request does, short of a perturbation set.
REQUEST_LIMITS = Limits(max_instances=10_000, max_elements=16_000_000)


class OutlierDetector(kserve.Model):  # type: ignore[misc]
    def __init__(
        self,
        name: str,
        fit: DetectorFit,
        data_dir: Path | None = None,
        workers: int = DEFAULTS.detector_workers,
        drift_only: bool = False,
    ):
        super().__init__(name)
        self.fit = fit
        self.data_dir = data_dir
        self.drift_only = drift_only
        self.detector: NearestNeighborsDetector | None = None
        self.drift: DriftMonitor | None = None
        # Requests judged at once (spec.detector.capacity.workers); the others wait their turn on the loop.
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge")

    async def off_loop(self, work: Callable[..., Answer], *args: Any) -> Answer:
        """`work(*args)` on one of the detector's workers, off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    def load(self) -> bool:
        if self.drift_only:
            self._load_drift()
        elif self.detector is None:
            if self.fit.reference_data is None:
                raise DetectorFitError("the detector has no reference data: set spec.detector.referenceData")
            started = time.monotonic()
            reference = self.fit.reference_data
            rows = (
                load_reference_texts(reference, self.data_dir)
                if reference.text_column
                else load_reference(reference, self.data_dir).features
            )
            self.detector = fit_nearest_neighbors(
                rows,
                false_positive_rate=self.fit.false_positive_rate,
                k=self.fit.neighbors,
                calibration_fraction=self.fit.calibration_fraction,
                seed=self.fit.seed,
            )
            held_out = len(self.detector.calibration_scores)
            log.info(
                "fitted the detector on %d reference rows in %.1f s (%s): threshold %.4g for a false-positive rate of %g (%d held out)",
                len(rows),
                time.monotonic() - started,
                self.detector.representation.name,
                self.detector.threshold,
                self.fit.false_positive_rate,
                held_out,
            )
            if held_out < 10 / self.fit.false_positive_rate:
                log.warning(
                    "only %d held-out reference rows: the alarm rate on ordinary inputs may differ from %g by a third of it or more; "
                    "give the detector at least %d",
                    held_out,
                    self.fit.false_positive_rate,
                    round(10 / self.fit.false_positive_rate),
                )
            metrics.THRESHOLD.labels(self.name).set(self.detector.threshold)
            metrics.TARGET_RATE.labels(self.name).set(self.fit.false_positive_rate)
        self.ready = True
        return True

    def _load_drift(self) -> None:
        """The drift monitor alone (spec.detector.drift): the reference table, no outlier fit."""
        if self.drift is not None:
            return
        if self.fit.drift is None:
            raise DetectorFitError("--drift_only needs the fit's drift settings (spec.detector.drift)")
        reference = self.fit.reference_data
        if reference is None:
            raise DetectorFitError("the drift monitor has no reference data: set spec.detector.referenceData")
        if reference.text_column:
            inputs = DriftInputs.of_texts(load_reference_texts(reference, self.data_dir), seed=self.fit.seed)
        else:
            inputs = DriftInputs.of_table(load_reference(reference, self.data_dir))
        self.drift = DriftMonitor(self.name, self.fit.drift, inputs, seed=self.fit.seed)
        log.info(
            "drift monitor ready: %d reference %s inputs, tested as %d features",
            len(inputs.reference),
            inputs.kind,
            inputs.reference.shape[1],
        )

    def judge(self, request: DecodedRequest) -> Verdicts:
        """The verdicts for a decoded request, counted on /metrics; InputError for instances the detector cannot score."""
        assert self.detector is not None, "load() first"
        try:
            verdicts = self.detector.verdicts(request.instances)
        except ValueError as error:
            raise InputError(str(error)) from None
        metrics.INSTANCES.labels(self.name).inc(len(verdicts.scores))
        metrics.OUTLIERS.labels(self.name).inc(int(verdicts.is_outlier.sum()))
        # A threshold of 0 (reference rows that all repeat one another) flags every input that differs at all.
        ratios = verdicts.scores / verdicts.threshold if verdicts.threshold > 0 else np.where(verdicts.is_outlier, np.inf, 0.0)
        for ratio in ratios:
            metrics.SCORE_RATIO.labels(self.name).observe(float(ratio))
        return verdicts

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        if self.drift_only:
            raise http_error(
                404,
                f"{self.name} monitors drift only: KServe's request logger posts to "
                f"{DRIFT_EVENTS_PATH.format(model=self.name)}, and GET {DRIFT_PATH.format(model=self.name)} reads the "
                "latest window; outlier verdicts come from the detector",
            )
        assert self.detector is not None, "load() first"
        try:
            if isinstance(payload, dict) and is_v2_body(payload):
                payload = v2_request_from_json(payload, self.name)  # a v2 body on the v1 path (the graph's router ignores paths)
            request = decode_request(payload, REQUEST_LIMITS)
            picture = self._picture_asked(payload)
            # Off the event loop: 10,000 rows against a large reference set take a while, and the
            # requests beside this one (and the readiness probe) must not wait for them.
            verdicts = await self.off_loop(self.judge, request)
        except InputError as error:
            raise http_error(error.status, str(error)) from None
        quantiles = self.detector.reference_quantile(verdicts.scores)
        if request.protocol == "v2":
            count = len(verdicts.scores)
            outputs = [
                InferOutput(name="is_outlier", shape=[count], datatype="BOOL", data=verdicts.is_outlier.tolist()),
                InferOutput(name="score", shape=[count], datatype="FP64", data=verdicts.scores.tolist()),
                InferOutput(name="threshold", shape=[count], datatype="FP64", data=[verdicts.threshold] * count),
                InferOutput(name="reference_quantile", shape=[count], datatype="FP64", data=quantiles.tolist()),
            ]
            if picture:
                png = await self.off_loop(self._picture, verdicts)
                outputs.append(InferOutput(name="picture", shape=[1], datatype="BYTES", data=[png]))
            request_id = payload.id if isinstance(payload, InferRequest) else None
            return InferResponse(
                response_id=request_id or (headers or {}).get("x-request-id") or "", model_name=self.name, infer_outputs=outputs
            )
        answer: dict[str, Any] = {
            "predictions": [
                {
                    "is_outlier": bool(flag),
                    "score": float(score),
                    "threshold": verdicts.threshold,
                    "reference_quantile": float(quantile),
                }
                for flag, score, quantile in zip(verdicts.is_outlier, verdicts.scores, quantiles, strict=True)
            ]
        }
        if picture:
            answer["picture"] = {"content_type": "image/png", "base64": await self.off_loop(self._picture, verdicts)}
        return answer

    @staticmethod
    def _picture_asked(payload: dict[str, Any] | InferRequest) -> bool:
        asked = payload.get("picture", False) if isinstance(payload, dict) else (payload.parameters or {}).get("picture", False)
        if not isinstance(asked, bool):
            raise InputError(f"'picture' must be true or false, got {asked!r}")
        return asked

    def _picture(self, verdicts: Verdicts) -> str:
        """A base64 PNG: each input's score against the held-out reference rows' scores and the threshold."""
        from glassbox.explainers.data.pictures import score_against_reference

        assert self.detector is not None
        flagged = int(verdicts.is_outlier.sum())
        title = (
            f"{flagged} of {len(verdicts.scores)} inputs flagged: scores above the threshold set for a "
            f"{self.detector.false_positive_rate:g} false-positive rate"
        )
        png = score_against_reference(self.detector.calibration_scores, verdicts.threshold, verdicts.scores, title)
        return base64.b64encode(png).decode()

    def narrow_to_outliers(self, body: Any) -> dict[str, Any]:
        """The gate: the request as it came, holding only its outliers and naming their indices in `flagged`.

        KServe's router then sends it on to the explainer only when `flagged.0` exists, so exactly the
        flagged instances are explained, with the method and options the request asked for."""
        if not isinstance(body, dict):
            raise InputError("the request body must be a JSON object with 'instances' (v1) or 'inputs' (v2)")
        v2 = is_v2_body(body)
        request = decode_request(v2_request_from_json(body, self.name) if v2 else body, REQUEST_LIMITS)
        verdicts = self.judge(request)
        flagged = [int(i) for i in np.flatnonzero(verdicts.is_outlier)]
        if not flagged:
            highest = float(verdicts.scores.max())
            return {
                FLAGGED_FIELD: [],
                "summary": f"none of the {len(verdicts.scores)} instances is an outlier (highest score {highest:.4g}, "
                f"threshold {verdicts.threshold:.4g}): nothing to explain",
            }
        count = len(verdicts.scores)
        # A counterfactual's `target` may name one class per instance: narrowed with them (a list goes beside
        # v2's `inputs`, not in its `parameters`, whose values KServe's v2 model keeps to single values).
        body = {**body, **({"target": _narrowed(body["target"], flagged, count)} if "target" in body else {})}
        if v2:
            tensor = dict(body["inputs"][0])
            rows = np.asarray(request.instances)[flagged]
            tensor.update(shape=[len(flagged), *rows.shape[1:]], data=rows.reshape(-1).tolist())
            return {**body, "inputs": [tensor], FLAGGED_FIELD: flagged}
        instances = body.get("instances", body.get("inputs"))
        assert isinstance(instances, list)  # decode_request took it
        return {
            **{k: v for k, v in body.items() if k != "inputs"},
            "instances": [instances[i] for i in flagged],
            FLAGGED_FIELD: flagged,
        }


def _narrowed(value: Any, flagged: list[int], count: int) -> Any:
    """A list of one entry per instance of the request, narrowed to the flagged instances; anything else as it came."""
    return [value[i] for i in flagged] if isinstance(value, list) and len(value) == count else value


def gate_route(model: OutlierDetector) -> Any:
    async def flagged(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except ValueError as error:
            return JSONResponse(
                status_code=400, content={"error": f"the body is not JSON ({error}); send a JSON object with 'instances'"}
            )
        try:
            return JSONResponse(content=await model.off_loop(model.narrow_to_outliers, body))
        except InputError as error:
            return JSONResponse(status_code=error.status, content={"error": str(error)})

    return flagged


def drift_routes(model: OutlierDetector, monitor: DriftMonitor) -> tuple[Any, Any]:
    """POST: a CloudEvent from KServe's request logger (answered at once: the logger's queue is the predictor's);
    GET: the latest window's report."""

    async def events(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            instances = read_logged_request(request.headers, body, model.name, REQUEST_LIMITS)
            if instances is None:
                metrics.DRIFT_EVENTS_IGNORED.labels(model.name).inc()
                return JSONResponse(content={"accepted": 0})
            accepted = monitor.observe(instances)
        except InputError as error:
            metrics.DRIFT_EVENTS_REFUSED.labels(model.name).inc()
            return JSONResponse(status_code=error.status, content={"error": str(error)})
        return JSONResponse(content={"accepted": accepted})

    async def report(request: Request) -> JSONResponse:
        answer = monitor.report_json()
        asked = request.query_params.get("picture", "false").lower()
        if asked not in ("true", "false"):
            return JSONResponse(status_code=400, content={"error": f"picture must be true or false, got {asked!r}"})
        if asked == "true":
            png = await asyncio.get_running_loop().run_in_executor(None, monitor.picture)
            if png is not None:
                answer["picture"] = {"content_type": "image/png", "base64": png}
        return JSONResponse(content=answer)

    return events, report


def fitted_route(model: OutlierDetector) -> Any:
    async def fitted() -> JSONResponse:
        """What the detector fitted: the operator shows it in the ExplainedModel's status."""
        if model.detector is None:
            return JSONResponse(status_code=503, content={"error": "the detector has not been fitted yet"})
        held_out = len(model.detector.calibration_scores)
        low, high = realised_rate_interval(held_out, model.detector.false_positive_rate, REALISED_RATE_CONFIDENCE)
        return JSONResponse(
            content={
                FITTED_THRESHOLD: model.detector.threshold,
                FITTED_FALSE_POSITIVE_RATE: model.detector.false_positive_rate,
                FITTED_HELD_OUT_ROWS: held_out,
                FITTED_REPRESENTATION: model.detector.representation.name,
                FITTED_REALISED_RATE: {"low": low, "high": high, "confidence": REALISED_RATE_CONFIDENCE},
            }
        )

    return fitted


async def observe_route(request: Request) -> JSONResponse:
    """The graph passes a prediction request by here: read (so the request logger around the app copies it to
    the drift monitor, from its own thread and queue) and answered at once, whatever it holds."""
    await request.body()
    return JSONResponse(content={})


def build_parser() -> argparse.ArgumentParser:
    return server_parser(DetectorServerArgs, __doc__, log_each_request=False)


def main() -> None:
    args, kserve_flags = read_command_line(build_parser(), DetectorServerArgs)
    fit_json = args.detector_fit or os.environ.get(DETECTOR_FIT_ENV)
    if not fit_json:
        raise SystemExit(f"nothing to fit: set ${DETECTOR_FIT_ENV} or --detector_fit to a DetectorFit (JSON)")
    fit = settings_from_json(DetectorFit, fit_json, DETECTOR_FIT_ENV)
    model = OutlierDetector(args.model_name, fit, args.data_dir, workers=args.detector_workers, drift_only=args.drift_only)
    try:
        model.load()
    except DetectorFitError as error:
        raise SystemExit(f"the detector cannot start: {error}") from None
    app = kserve.model_server.app
    if model.drift is None:
        gate = DETECTOR_GATE_PATH.format(model=model.name)
        app.add_api_route(gate, gate_route(model), methods=["POST"], include_in_schema=False)
        app.add_api_route(
            DETECTOR_FITTED_PATH.format(model=model.name), fitted_route(model), methods=["GET"], include_in_schema=False
        )
    else:
        events, report = drift_routes(model, model.drift)
        app.add_api_route(DRIFT_EVENTS_PATH.format(model=model.name), events, methods=["POST"], include_in_schema=False)
        app.add_api_route(DRIFT_PATH.format(model=model.name), report, methods=["GET"], include_in_schema=False)
    middleware = None
    if args.drift_events_url and model.drift is None:
        observe = DETECTOR_OBSERVE_PATH.format(model=model.name)
        app.add_api_route(observe, observe_route, methods=["POST"], include_in_schema=False)
        url, observed = args.drift_events_url, args.observed_inference_service or model.name

        def middleware(inner: Any) -> Any:
            return RequestLogger(inner, url, observed, copied=lambda path: path == observe)

    serve(
        model,
        kserve_flags,
        max_body_bytes=args.max_body_bytes,
        longest_request_seconds=30.0,
        middleware=middleware,
    )
