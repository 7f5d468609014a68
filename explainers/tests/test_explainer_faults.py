"""The explainer when its predictor drips, fails or is gone, when it is overloaded, and when it is told to stop.

The predictor is real (the session's `glassbox up` of the synthetic model) and
reached through the fault proxy, a real HTTP server on loopback. Timings are
asserted only where the bound is the behaviour itself (a 504 by the deadline,
a refusal that does not wait); `make reliability` reports the measured figures.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import HTTPException

from glassbox.contract.api import ExplainerSpec
from glassbox.contract.wire import EXPLAINER_SPEC_ENV
from glassbox.explainers.explainer.server import ExplainerModel
from glassbox.explainers.predictor_calls.client import PredictorSettings
from glassbox.local import LocalDeployment, free_port
from glassbox_testing.dataplane import FaultProxy, explain, pretty

Tabular = tuple[LocalDeployment, FaultProxy]
ROW = [0.9, 0.2, 0.5, 0.7, 0.1]


def in_process_explainer(
    tabular: Tabular, timeout_seconds: float, workers: int, max_waiting: int, through: FaultProxy | None = None, **options: Any
) -> ExplainerModel:
    """The explainer model itself, in this process, calling the predictor through the proxy (or `through`) over HTTP."""
    deployment, proxy = tabular
    proxy = through or proxy
    spec = ExplainerSpec.model_validate(
        {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [
                {"name": "anchors", "type": "AnchorTabular"},
                {"name": "shap", "type": "KernelShap", "kernelShap": {"nsamples": 100}},
            ],
        }
    )
    settings = PredictorSettings(host=proxy.url.split("://")[1], model_name="synthetic", protocol="v2", timeout_seconds=30)
    model = ExplainerModel(
        "synthetic",
        spec,
        settings,
        explain_timeout_seconds=timeout_seconds,
        data_dir=deployment.base,
        workers=workers,
        max_waiting=max_waiting,
        **options,
    )
    model.load()
    return model


@pytest.fixture
def stopped_after() -> Iterator[list[ExplainerModel]]:
    models: list[ExplainerModel] = []
    yield models
    for model in models:
        model.stop()


async def timed(model: ExplainerModel, method: str = "anchors") -> tuple[int, float, str]:
    """(status, seconds, message) of one explanation."""
    began = time.monotonic()
    try:
        await model.explain({"instances": [ROW], "method": method})
        return 200, time.monotonic() - began, ""
    except HTTPException as error:
        return error.status_code, time.monotonic() - began, str(error.detail)


async def test_a_dripping_predictor_costs_each_explanation_its_deadline_and_nothing_after(
    tabular: Tabular, proxy: FaultProxy, stopped_after: list[ExplainerModel]
) -> None:
    """Four workers, eight explanations, a predictor that answers one byte every half second: every
    explanation gets its 504 at its deadline (those waiting for a worker too), no call is sent twice,
    and once the predictor is well the next explanation is answered at once."""
    model = in_process_explainer(tabular, timeout_seconds=3.0, workers=4, max_waiting=4)
    stopped_after.append(model)
    proxy.mode = "drip"
    sent_before = proxy.requests
    outcomes = await asyncio.gather(*(timed(model) for _ in range(8)))
    for status, seconds, message in outcomes:
        assert status == 504, message
        assert seconds < 3.0 + 1.0, outcomes  # the deadline, not the predictor, decides when
    assert model.client.stats.retries == 0  # a call that timed out is not sent again
    assert proxy.requests - sent_before <= 8  # at most one call per explanation reached the predictor
    proxy.mode = "pass"
    status, seconds, message = await timed(model)
    assert status == 200, message  # no worker, call or queue is still held by the dripping calls


async def refused_at_once(model: ExplainerModel) -> HTTPException:
    """The error a shap explanation is answered with, asserting it came without waiting."""
    began = time.monotonic()
    with pytest.raises(HTTPException) as refused:
        await model.explain({"instances": [ROW], "method": "shap"})
    assert time.monotonic() - began < 0.5  # refused without waiting
    return refused.value


async def test_past_every_worker_and_the_waiting_room_a_request_is_refused_at_once_with_retry_after(
    tabular: Tabular, proxy: FaultProxy, stopped_after: list[ExplainerModel]
) -> None:
    model = in_process_explainer(tabular, timeout_seconds=30.0, workers=1, max_waiting=1)
    stopped_after.append(model)
    proxy.mode, proxy.delay = "slow", 1.0
    try:
        admitted = [asyncio.create_task(timed(model, "shap")) for _ in range(2)]
        await asyncio.sleep(0.2)
        refused = await refused_at_once(model)
        assert refused.status_code == 503 and refused.headers == {"Retry-After": "1"}
        assert "--max_waiting_explanations" in str(refused.detail)
        assert [status for status, _, _ in await asyncio.gather(*admitted)] == [200, 200]
    finally:
        proxy.mode, proxy.delay = "pass", 5.0
    assert (await timed(model, "shap"))[0] == 200  # room again


async def test_one_that_would_finish_past_its_deadline_is_refused_at_once_with_when_to_come_back(
    tabular: Tabular, proxy: FaultProxy, stopped_after: list[ExplainerModel]
) -> None:
    """One worker, a predictor that takes 1 s a call (shap makes two), a 5 s deadline: with one running, the
    next waits (about 4 s to its answer); the one after would end past its deadline and is refused at once,
    told to come back when it would fit."""
    model = in_process_explainer(tabular, timeout_seconds=5.0, workers=1, max_waiting=8)
    stopped_after.append(model)
    proxy.mode, proxy.delay = "slow", 1.0
    try:
        assert (await timed(model, "shap"))[0] == 200  # timed: the pool now knows what shap takes
        recent = model.pool.recent_seconds("shap")
        assert recent is not None and 2.0 <= recent < 2.5, recent
        admitted = [asyncio.create_task(timed(model, "shap")) for _ in range(2)]
        await asyncio.sleep(0.1)
        refused = await refused_at_once(model)
        assert refused.status_code == 503
        assert "past its deadline of 5 s" in str(refused.detail), refused.detail
        # Three explanations on one worker, at the time shap took, end this far past the 5 s deadline.
        retry_after = int((refused.headers or {})["Retry-After"])
        assert abs(retry_after - math.ceil(3 * recent - 5.0)) <= 1, (refused.headers, recent)
        assert [status for status, _, _ in await asyncio.gather(*admitted)] == [200, 200]
    finally:
        proxy.mode, proxy.delay = "pass", 5.0


def test_a_burst_of_24_explanations_is_answered_whole_with_default_settings(tabular: Tabular) -> None:
    """`glassbox up`'s explainer (four workers) and 24 AnchorTabular requests at once: every one answered."""
    deployment = tabular[0]
    url = deployment.urls()["explain"]
    rows = [[round(0.04 * i, 2), 0.2, 0.5, 0.7, 0.1] for i in range(24)]  # 24 different inputs: no answer is reused

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(url, json={"instances": [row], "method": "anchors"}) for row in rows))

    responses = asyncio.run(burst())
    assert [r.status_code for r in responses] == [200] * 24, [pretty(r) for r in responses if r.status_code != 200][:2]
    assert all(r.json()["method"] == "anchors" for r in responses)


def wait_for(check: Any, seconds: float) -> Any:
    """`check()`'s first truthy answer within `seconds`, else its last answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_the_explainer_is_ready_only_while_its_predictor_is(tabular: Tabular, proxy: FaultProxy) -> None:
    deployment = tabular[0]
    ready_url = f"{deployment.explainer_base}/v2/models/synthetic/ready"
    assert httpx.get(ready_url).status_code == 200
    proxy.mode = "unavailable"
    refused = wait_for(lambda: (r := httpx.get(ready_url)).status_code == 503 and r, 10)
    assert refused, "readiness stayed 200 with the predictor answering 503"
    assert f"the predictor at {proxy.url}/v2/models/synthetic/ready answered 503" in refused.json()["error"]
    assert httpx.get(f"{deployment.explainer_base}/v1/models/synthetic").status_code == 503
    # Explanations are still tried, and name the predictor.
    response = explain(deployment.urls()["explain"], [ROW], "shap")
    assert response.status_code == 502 and proxy.url in response.text, pretty(response)
    proxy.mode = "pass"
    assert wait_for(lambda: httpx.get(ready_url).status_code == 200, 10), "not ready again after the predictor came back"


async def test_a_predictor_that_may_scale_to_zero_is_probed_only_after_a_call_found_it_down(
    tabular: Tabular, stopped_after: list[ExplainerModel]
) -> None:
    """--predictor_probe after_failure: a probe every few seconds would keep a scale-to-zero predictor awake.
    A proxy of its own, so that what passes it is this explainer's alone (the deployment's explainer
    probes the shared one every 2 s)."""
    proxy = FaultProxy(tabular[0].predictor_base)
    model = in_process_explainer(
        tabular,
        timeout_seconds=30.0,
        workers=1,
        max_waiting=0,
        through=proxy,
        predictor_probe_seconds=0.1,
        predictor_probe_while_idle=False,
    )
    stopped_after.append(model)
    watch = model.predictor_watch
    assert watch is not None and model.not_ready() is None
    probes, requests = watch.probes, proxy.requests
    await asyncio.sleep(1.0)  # ten probe periods, no explanation
    assert (watch.probes, proxy.requests) == (probes, requests), "the idle explainer probed the predictor"
    assert (await timed(model, "shap"))[0] == 200
    await asyncio.sleep(0.5)
    assert watch.probes == probes and model.not_ready() is None  # an answered call starts no probes
    proxy.mode = "unavailable"
    try:
        status, _, message = await timed(model, "shap")
        assert status == 502 and proxy.url in message, message
        problem = model.not_ready()  # not ready at once, named by the failed call
        assert problem is not None and proxy.url in problem, problem
        await asyncio.sleep(0.5)
        assert watch.probes > probes and model.not_ready() is not None  # probed while the predictor is down
    finally:
        proxy.mode = "pass"
    assert wait_for(lambda: model.not_ready() is None, 5), "not ready again after the predictor came back"
    settled = watch.probes
    await asyncio.sleep(0.5)
    assert watch.probes == settled, "still probing after the predictor came back"
    proxy.close()


def test_explanation_metrics_are_on_metrics(tabular: Tabular) -> None:
    deployment = tabular[0]
    assert explain(deployment.urls()["explain"], [ROW], "shap").status_code == 200
    assert explain(deployment.urls()["explain"], [ROW], "no-such-method").status_code == 404
    ready = 'glassbox_explainer_predictor_ready{model="synthetic"} 1.0'
    # A test before this one may have left the predictor's watch waiting for its next probe (every 2 s).
    deadline = time.monotonic() + 15
    while ready not in (text := httpx.get(f"{deployment.explainer_base}/metrics").text) and time.monotonic() < deadline:
        time.sleep(0.5)
    for expected in (
        'glassbox_explainer_explanation_seconds_count{method="shap",model="synthetic",outcome="ok"}',
        'glassbox_explainer_explanation_seconds_count{method="",model="synthetic",outcome="bad_request"}',
        'glassbox_explainer_predictor_calls_per_explanation_count{method="shap",model="synthetic"}',
        'glassbox_explainer_predictor_rows_per_explanation_sum{method="shap",model="synthetic"}',
        'glassbox_explainer_running_explanations{model="synthetic"} 0.0',
        'glassbox_explainer_waiting_explanations{model="synthetic"} 0.0',
        'glassbox_explainer_predictor_ready{model="synthetic"} 1.0',
        "# TYPE glassbox_explainer_refused_total counter",
        "# TYPE glassbox_explainer_timeouts_total counter",
    ):
        assert expected in text, expected
    assert "no-such-method" not in text  # no label from a request


def test_sigterm_answers_every_explanation_in_flight_fails_readiness_and_exits(
    tabular: Tabular, proxy: FaultProxy, tmp_path: Path
) -> None:
    """Eight explanations in flight, each slowed by the predictor, when the explainer gets SIGTERM."""
    deployment = tabular[0]
    port = free_port()
    command, env = deployment.explainer_command(port, proxy.url.split("://")[1])
    command += ["--explain_workers=8"]
    only_shap = ExplainerSpec.model_validate(
        {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [{"name": "shap", "type": "KernelShap", "kernelShap": {"nsamples": 100}}],
        }
    )
    env[EXPLAINER_SPEC_ENV] = only_shap.fit_settings().model_dump_json(by_alias=True, exclude_none=True)
    log = tmp_path / "explainer.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_for(lambda: _status(f"{base}/v2/models/synthetic/ready") == 200, 300)
        assert ready, log.read_text()[-3000:]
        proxy.mode, proxy.delay = "slow", 1.0
        answers: list[int] = []

        def one() -> None:
            answers.append(explain(f"{base}/v1/models/synthetic:explain", [ROW], "shap").status_code)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for thread in threads:
            thread.start()
        assert wait_for(
            lambda: 'glassbox_explainer_running_explanations{model="synthetic"} 8.0' in httpx.get(f"{base}/metrics").text, 10
        )
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        assert wait_for(lambda: _status(f"{base}/v2/models/synthetic/ready") != 200, 1.0)  # readiness fails at once
        for thread in threads:
            thread.join(60)
        assert answers == [200] * 8, log.read_text()[-3000:]
        process.wait(30)
        assert time.monotonic() - signalled < 30
    finally:
        proxy.mode, proxy.delay = "pass", 5.0
        if process.poll() is None:
            process.kill()
            process.wait()


def _status(url: str) -> int | None:
    """The status a GET gets, or None when the server does not take the connection."""
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None
