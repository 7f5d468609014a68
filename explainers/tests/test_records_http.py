"""Explanation records as a client meets them: an explainer process with a SQLite store over real HTTP (the
same answer served again from its record, `fresh` recomputing, identical requests computed once, the
records read back and queried), and the explainer in this process with a store that fails."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import HTTPException

from glassbox.contract.api import ExplainerSpec
from glassbox.contract.wire import JOBS_PATH, RECORDS_PATH
from glassbox.explainers.explainer import metrics
from glassbox.explainers.explainer.recording import RecordSettings
from glassbox.explainers.explainer.records_api import query_from_params
from glassbox.explainers.explainer.server import ExplainerModel
from glassbox.explainers.predictor_calls.client import PredictorSettings
from glassbox.explainers.records.errors import RecordQueryError
from glassbox.explainers.records.jobs import COLUMNS as JOB_COLUMNS
from glassbox.explainers.records.jobs import RUNNING, Job
from glassbox.explainers.records.keys import input_digest
from glassbox.explainers.records.store import Record, SqliteRecords
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import FaultProxy, pretty
from glassbox_testing.postgres import LocalPostgres

ROW = [0.9, 0.2, 0.5, 0.7, 0.1]
MODEL_DIGEST = "sha256-of-the-test-model"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("records") / "records.sqlite"


@pytest.fixture(scope="module")
def recorded(tabular_folder: Path, store_path: Path) -> Iterator[LocalDeployment]:
    """The tabular model's predictor, and an explainer that records into a SQLite file (inputs kept)."""
    store = store_path
    deployment = LocalDeployment(
        tabular_folder / "synthetic.yaml",
        log_dir=tabular_folder / "logs-records",
        records_path=store,
        extra_explainer_args=["--records_store_inputs=true", f"--model_digest={MODEL_DIGEST}"],
    )
    try:
        deployment.start_explainer(deployment.start_predictor())
        yield deployment
    finally:
        deployment.stop()


def ask(deployment: LocalDeployment, row: list[float], **extra: Any) -> dict[str, Any]:
    headers = extra.pop("headers", None)
    answer = httpx.post(
        deployment.urls()["explain"], json={"instances": [row], "method": "anchors", **extra}, headers=headers, timeout=120
    )
    assert answer.status_code == 200, pretty(answer)
    body: dict[str, Any] = answer.json()
    return body


def records_url(deployment: LocalDeployment, model: str = "synthetic") -> str:
    return deployment.explainer_base + RECORDS_PATH.format(model=model)


def test_the_same_question_is_answered_again_from_its_record_and_fresh_recomputes(recorded: LocalDeployment) -> None:
    row = [0.91, 0.2, 0.5, 0.7, 0.1]
    first = ask(recorded, row)
    assert first["record"]["reused"] is False
    again = ask(recorded, row)
    assert again["record"] == {**first["record"], "reused": True}
    assert again["data"] == first["data"] and again["summary"] == first["summary"]
    fresh = ask(recorded, row, fresh=True)
    assert fresh["record"]["reused"] is False and fresh["record"]["id"] != first["record"]["id"]
    assert fresh["data"]["anchor"] == first["data"]["anchor"], "the same seed gives the same anchor"
    other = ask(recorded, [0.1, 0.8, 0.3, 0.2, 0.9])
    assert other["record"]["reused"] is False, "another input is another question"
    picture = ask(recorded, row, picture=True)
    assert picture["record"]["reused"] is False and "picture" in picture, "a picture is part of the answer"


def test_a_response_header_says_whether_the_answer_came_from_its_record(recorded: LocalDeployment) -> None:
    body = {"instances": [[0.95, 0.2, 0.5, 0.7, 0.1]], "method": "anchors"}
    first = httpx.post(recorded.urls()["explain"], json=body, timeout=120)
    again = httpx.post(recorded.urls()["explain"], json=body, timeout=120)
    record_id = first.json()["record"]["id"]
    assert first.headers["glassbox-record"] == f"new; id={record_id}"
    assert again.headers["glassbox-record"] == f"reused; id={record_id}"
    v2 = {"inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", "data": body["instances"][0]}], "method": "anchors"}
    through_infer = httpx.post(f"{recorded.explainer_base}/v2/models/synthetic/infer", json=v2, timeout=120)
    assert through_infer.status_code == 200, pretty(through_infer)
    assert through_infer.headers["glassbox-record"] == f"reused; id={record_id}", "v2's infer is the same question"
    refused = httpx.post(recorded.urls()["explain"], json={"instances": [[1, 2]]}, timeout=120)
    assert refused.status_code == 400 and "glassbox-record" not in refused.headers


def test_a_record_is_read_back_and_another_models_or_a_malformed_id_is_refused(recorded: LocalDeployment) -> None:
    row = [0.92, 0.2, 0.5, 0.7, 0.1]
    answer = ask(recorded, row, headers={"x-request-id": "loan-4711"})
    record_id = answer["record"]["id"]
    found = httpx.get(f"{records_url(recorded)}/{record_id}")
    assert found.status_code == 200, pretty(found)
    record = found.json()
    assert record["id"] == record_id and record["requestId"] == "loan-4711" and record["outcome"] == "ok"
    assert record["modelDigest"] == MODEL_DIGEST and record["method"] == "anchors"
    assert record["settings"]["type"] == "AnchorTabular"
    assert record["input"] == [row] and record["inputDigest"] == input_digest(np.array([row]))
    assert record["explanation"]["data"] == answer["data"] and record["predictorCalls"] > 0
    assert httpx.get(f"{records_url(recorded, 'another')}/{record_id}").status_code == 404
    malformed = httpx.get(f"{records_url(recorded)}/not-an-id")
    assert malformed.status_code == 400 and "is not a record id" in malformed.json()["error"]
    assert httpx.get(f"{records_url(recorded)}/{'0' * 32}").status_code == 404


def test_an_auditor_finds_records_by_request_id_and_input_and_pages_through_them(recorded: LocalDeployment) -> None:
    row = [0.93, 0.2, 0.5, 0.7, 0.1]
    ids = [ask(recorded, row, fresh=True, headers={"x-request-id": "audit-7"})["record"]["id"] for _ in range(3)]
    by_request = httpx.get(records_url(recorded), params={"request_id": "audit-7"}).json()
    assert [r["id"] for r in by_request["records"]] == ids and by_request["next"] is None
    digest = input_digest(np.array([row]))
    pages, url = [], records_url(recorded) + f"?input_digest={digest}&limit=2"
    while url:
        page = httpx.get(url).json()
        pages.append([r["id"] for r in page["records"]])
        url = records_url(recorded) + page["next"] if page["next"] else ""
    assert [i for p in pages for i in p] == ids
    refused = httpx.get(records_url(recorded), params={"limit": "5000"})
    assert refused.status_code == 400 and "limit must be between 1 and 1000" in refused.json()["error"]
    unknown = httpx.get(records_url(recorded), params={"who": "me"})
    assert unknown.status_code == 400 and "unknown query parameters ['who']" in unknown.json()["error"]


def test_an_export_streams_every_matching_record_as_json_lines(recorded: LocalDeployment, store_path: Path) -> None:
    row = [0.96, 0.2, 0.5, 0.7, 0.1]
    answer = ask(recorded, row, headers={"x-request-id": "export-1"})
    # More records than one page of the store holds, written beside the explainer's own (same file).
    writer = SqliteRecords(store_path)
    planted = [
        Record(
            model="synthetic",
            method="anchors",
            settings={},
            input_digest="e" * 64,
            answer_key=f"{i:064x}",
            outcome="ok",
            seconds=0.1,
            request_id="bulk",
            created=1.0 + i,
        )
        for i in range(1005)
    ]
    for record in planted:
        writer.write(record)
    writer.close()
    with httpx.stream("GET", records_url(recorded) + ".jsonl", params={"request_id": "bulk"}, timeout=60) as stream:
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("application/x-ndjson")
        exported = [json.loads(line) for line in stream.iter_lines() if line]
    assert [r["id"] for r in exported] == [r.id for r in planted]
    mine = httpx.get(records_url(recorded) + ".jsonl", params={"request_id": "export-1"}).text.splitlines()
    assert [json.loads(line)["id"] for line in mine] == [answer["record"]["id"]]
    paged = httpx.get(records_url(recorded) + ".jsonl", params={"limit": "10"})
    assert paged.status_code == 400 and "leave out ['limit']" in paged.json()["error"]


def test_identical_requests_at_once_are_computed_and_recorded_once(recorded: LocalDeployment) -> None:
    row = [0.94, 0.2, 0.5, 0.7, 0.1]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: ask(recorded, row), range(4)))
    assert len({a["record"]["id"] for a in answers}) == 1
    assert sum(not a["record"]["reused"] for a in answers) == 1
    assert all(a["data"] == answers[0]["data"] for a in answers)
    digest = input_digest(np.array([row]))
    kept = httpx.get(records_url(recorded), params={"input_digest": digest}).json()["records"]
    assert len(kept) == 1


def test_fresh_must_be_true_or_false(recorded: LocalDeployment) -> None:
    answer = httpx.post(recorded.urls()["explain"], json={"instances": [ROW], "fresh": "yes"})
    assert answer.status_code == 400 and "'fresh' must be true or false" in answer.json()["error"]


@pytest.mark.parametrize(
    "params,words",
    [
        ({"since": "yesterday"}, "since must be an RFC 3339 time"),
        ({"limit": "ten"}, "limit must be a whole number"),
        ({"until": "nan"}, "until must be a finite time"),
        ({"since": "2026-12-03T10:00:00Z", "until": "2026-12-03T09:00:00Z"}, "is before since"),
    ],
)
def test_an_audit_query_names_what_is_wrong(params: dict[str, str], words: str) -> None:
    with pytest.raises(RecordQueryError, match=words):
        query_from_params(params)


def test_times_are_read_as_rfc_3339_or_unix_seconds() -> None:
    ten_o_clock = 1796292000.0  # 2026-12-03T10:00:00Z
    for written in ("2026-12-03T10:00:00Z", "2026-12-03T10:00:00+00:00", "2026-12-03T11:00:00+01:00", "1796292000"):
        assert query_from_params({"since": written}).since == ten_o_clock, written


# --------------------------------------------------------------------------- a store that fails


def in_process(
    tabular: tuple[LocalDeployment, FaultProxy], path: Path | None, strict: bool = False, postgres_url: str | None = None
) -> ExplainerModel:
    deployment, proxy = tabular
    spec = ExplainerSpec.model_validate(
        {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [{"name": "anchors", "type": "AnchorTabular"}],
        }
    )
    settings = PredictorSettings(host=proxy.url.split("://")[1], model_name="synthetic", protocol="v2", timeout_seconds=30)
    model = ExplainerModel(
        "synthetic",
        spec,
        settings,
        data_dir=deployment.base,
        records=RecordSettings(path=path, strict=strict, postgres_url=postgres_url),
    )
    model.load()
    return model


@pytest.mark.parametrize("strict", [False, True])
def test_a_failing_store_costs_an_explanation_nothing_unless_records_are_strict(
    tabular: tuple[LocalDeployment, FaultProxy], tmp_path: Path, strict: bool
) -> None:
    model = in_process(tabular, tmp_path / "records.sqlite", strict)
    try:
        recorded = asyncio.run(model.explain({"instances": [ROW], "method": "anchors"}))
        assert recorded["record"]["reused"] is False
        assert model.recorder is not None
        model.recorder.store._connection.close()  # the store is gone: every read and write now fails
        errors = metrics.RECORD_STORE_ERRORS.labels("synthetic", "write")
        before = errors._value.get()
        if strict:
            with pytest.raises(HTTPException) as refused:
                asyncio.run(model.explain({"instances": [ROW], "method": "anchors"}))
            assert refused.value.status_code == 503 and "records are strict" in str(refused.value.detail)
        else:
            answer = asyncio.run(model.explain({"instances": [ROW], "method": "anchors"}))
            assert answer["data"]["anchor"] == recorded["data"]["anchor"] and "record" not in answer
            assert errors._value.get() == before + 1
    finally:
        model.stop()


# --------------------------------------------------------------------------- PostgreSQL, shared by replicas


def test_replicas_sharing_postgresql_answer_each_others_records(
    tabular: tuple[LocalDeployment, FaultProxy], postgres: LocalPostgres
) -> None:
    url = postgres.create_database("shared_records")
    first, second = in_process(tabular, None, postgres_url=url), in_process(tabular, None, postgres_url=url)
    try:
        computed = asyncio.run(first.explain({"instances": [ROW], "method": "anchors"}, {"x-request-id": "r-1"}))
        assert computed["record"]["reused"] is False
        served = asyncio.run(second.explain({"instances": [ROW], "method": "anchors"}))
        assert served["record"] == {**computed["record"], "reused": True} and served["data"] == computed["data"]
        assert second.recorder is not None
        found = second.recorder.store.get("synthetic", computed["record"]["id"])
        assert found is not None and found.request_id == "r-1"
    finally:
        first.stop()
        second.stop()


def test_postgresql_stopped_during_explanations_then_back(
    tabular: tuple[LocalDeployment, FaultProxy], postgres: LocalPostgres
) -> None:
    model = in_process(tabular, None, postgres_url=postgres.create_database("restarted_records"))
    errors = metrics.RECORD_STORE_ERRORS.labels("synthetic", "write")
    try:
        assert asyncio.run(model.explain({"instances": [ROW], "method": "anchors"}))["record"]["reused"] is False
        postgres.stop()
        before = errors._value.get()
        answer = asyncio.run(model.explain({"instances": [ROW], "method": "anchors", "fresh": True}))
        assert answer["data"]["anchor"] and "record" not in answer, "answered, though the store is down"
        assert errors._value.get() == before + 1
        postgres.start()
        postgres.wait_accepting()
        again = asyncio.run(model.explain({"instances": [ROW], "method": "anchors", "fresh": True}))
        assert again["record"]["reused"] is False, "recorded again once the store is back"
    finally:
        model.stop()
        if not _accepting(postgres):
            postgres.start()


def _accepting(postgres: LocalPostgres) -> bool:
    try:
        postgres.wait_accepting(0)
        return True
    except Exception:
        return False


# --------------------------------------------------------------------------- jobs


def wait_for_job(deployment: LocalDeployment, location: str, seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        state = httpx.get(deployment.explainer_base + location).json()
        if state["state"] in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def test_an_explanation_asked_as_a_job_is_answered_202_then_found_done(recorded: LocalDeployment) -> None:
    row = [0.97, 0.2, 0.5, 0.7, 0.1]
    accepted = httpx.post(
        recorded.urls()["explain"],
        json={"instances": [row], "method": "anchors", "async": True},
        headers={"x-request-id": "job-1"},
        timeout=30,
    )
    assert accepted.status_code == 202, pretty(accepted)
    location = accepted.headers["location"]
    assert location == accepted.json()["location"] and accepted.json()["job"]["state"] in ("queued", "running")
    done = wait_for_job(recorded, location)
    assert done["state"] == "done" and done["attempts"] == 1, done
    now = ask(recorded, row)
    assert now["record"] == {**now["record"], "id": done["record"], "reused": True}, "the job's record answers it now"
    assert done["explanation"]["data"] == now["data"]
    record = httpx.get(f"{records_url(recorded)}/{done['record']}").json()
    assert record["requestId"] == "job-1", "the job's record names the caller's request id"
    by_header = httpx.post(
        recorded.urls()["explain"],
        json={"instances": [[0.98, 0.2, 0.5, 0.7, 0.1]], "method": "anchors"},
        headers={"prefer": "respond-async"},
        timeout=30,
    )
    assert by_header.status_code == 202 and wait_for_job(recorded, by_header.headers["location"])["state"] == "done"


def test_a_job_is_asked_on_v2_infer_as_json_or_binary_tensors(recorded: LocalDeployment) -> None:
    """v2 has no explain verb: `infer` on the explainer with `parameters.async` queues the job; its 202 carries the
    job in the `explanation` output, and the job runs the same question (binary tensors included)."""
    infer = f"{recorded.explainer_base}/v2/models/synthetic/infer"
    row = [0.965, 0.2, 0.5, 0.7, 0.1]  # no other test asks this question
    body = {
        "id": "v2-job",
        "inputs": [{"name": "x", "shape": [1, 5], "datatype": "FP64", "data": row}],
        "parameters": {"method": "anchors", "async": True},
    }
    accepted = httpx.post(infer, json=body, timeout=30)
    assert accepted.status_code == 202, pretty(accepted)
    job = json.loads(accepted.json()["outputs"][0]["data"][0])
    assert accepted.headers["location"] == job["location"]
    done = wait_for_job(recorded, job["location"])
    assert done["state"] == "done", done
    assert ask(recorded, row)["record"]["id"] == done["record"], "the job answered the question a v1 request asks"
    record = httpx.get(f"{records_url(recorded)}/{done['record']}").json()
    assert record["requestId"] == "v2-job"
    tensor = {"name": "x", "shape": [1, 5], "datatype": "FP64", "parameters": {"binary_data_size": 40}}
    binary_body = {**body, "id": "v2-binary", "inputs": [tensor]}
    encoded = json.dumps(binary_body).encode()
    binary = httpx.post(
        infer,
        content=encoded + np.asarray([[0.955, 0.21, 0.5, 0.7, 0.1]], dtype="<f8").tobytes(),
        headers={"inference-header-content-length": str(len(encoded)), "content-type": "application/octet-stream"},
        timeout=30,
    )
    assert binary.status_code == 202, pretty(binary)
    assert wait_for_job(recorded, binary.headers["location"])["state"] == "done"


def test_a_job_request_is_checked_at_once_and_jobs_are_found_by_id(recorded: LocalDeployment) -> None:
    bad = httpx.post(recorded.urls()["explain"], json={"instances": [[1, 2]], "async": True}, timeout=30)
    assert bad.status_code == 400 and "feature" in bad.json()["error"], (
        "a request that cannot run is refused now, not failed later"
    )
    not_bool = httpx.post(recorded.urls()["explain"], json={"instances": [ROW], "async": "yes"}, timeout=30)
    assert not_bool.status_code == 400 and "'async' must be true or false" in not_bool.json()["error"]
    jobs = recorded.explainer_base + JOBS_PATH.format(model="synthetic")
    assert httpx.get(f"{jobs}/{'0' * 32}").status_code == 404
    assert httpx.get(f"{jobs}/not-an-id").status_code == 400
    assert httpx.delete(f"{jobs}/{'0' * 32}").status_code == 404
    other = recorded.explainer_base + JOBS_PATH.format(model="another")
    assert httpx.get(f"{other}/{'0' * 32}").status_code == 404


def test_a_job_its_replica_left_running_is_run_again(recorded: LocalDeployment, store_path: Path) -> None:
    """What a replica killed in the middle of a job leaves behind: the job running, its lease run out."""
    store = SqliteRecords(store_path)
    left = Job(
        model="synthetic",
        request={"instances": [[0.99, 0.2, 0.5, 0.7, 0.1]], "method": "anchors", "id": "left-behind"},
        state=RUNNING,
        owner="a-replica-that-stopped",
        lease_until=time.time() - 1,
        attempts=1,
    )
    with store.transaction() as cursor:
        marks = ", ".join("?" for _ in JOB_COLUMNS)
        cursor.execute(f"INSERT INTO explanation_jobs ({', '.join(JOB_COLUMNS)}) VALUES ({marks})", left.row())
    store.close()
    location = JOBS_PATH.format(model="synthetic") + f"/{left.id}"
    done = wait_for_job(recorded, location)
    assert done["state"] == "done" and done["attempts"] == 2, done


def test_jobs_need_records(tabular: tuple[LocalDeployment, FaultProxy]) -> None:
    deployment, proxy = tabular
    spec = ExplainerSpec.model_validate(
        {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [{"name": "anchors", "type": "AnchorTabular"}],
        }
    )
    settings = PredictorSettings(host=proxy.url.split("://")[1], model_name="synthetic", protocol="v2")
    model = ExplainerModel("synthetic", spec, settings, data_dir=deployment.base)
    model.load()
    try:
        with pytest.raises(HTTPException) as refused:
            asyncio.run(model.explain({"instances": [ROW], "async": True}))
        assert refused.value.status_code == 400 and "needs the explainer's records" in str(refused.value.detail)
    finally:
        model.stop()


def test_a_running_job_cancelled_stops_and_is_not_done(tabular: tuple[LocalDeployment, FaultProxy], tmp_path: Path) -> None:
    proxy = tabular[1]
    model = in_process(tabular, tmp_path / "records.sqlite")
    assert model.jobs is not None and model.job_runner is not None
    model.job_runner.lease_seconds = 1.5  # renewals every 0.5 s: the cancellation is found quickly

    async def scenario() -> tuple[str, str]:
        await model.start_jobs()
        proxy.delay, proxy.mode = 2.0, "slow"  # every predictor call now takes 2 s: the job runs a while
        accepted = await model.explain({"instances": [ROW], "method": "anchors", "async": True})
        job_id = accepted["job"]["id"]
        while model.jobs.get(job_id).state != RUNNING:  # type: ignore[union-attr]
            await asyncio.sleep(0.1)
        cancelled = model.jobs.cancel(job_id)  # type: ignore[union-attr]
        await asyncio.sleep(2.5)  # a renewal finds it cancelled and stops the work
        await model.stop_jobs()
        return cancelled.state, model.jobs.get(job_id).state  # type: ignore[union-attr]

    try:
        assert asyncio.run(scenario()) == ("cancelled", "cancelled")
        # The work stopped: past the predictor call in flight (2 s), it asks for no prediction any more.
        time.sleep(2.5)
        calls = proxy.predictions
        time.sleep(3.0)
        assert proxy.predictions == calls, "the cancelled job's explanation still calls the predictor"
    finally:
        proxy.mode = "pass"
        model.stop()


def test_an_explainer_killed_in_the_middle_of_a_job_leaves_it_to_the_next_one(tabular_folder: Path, tmp_path: Path) -> None:
    """A real restart: the explainer process running a job is killed (SIGKILL, no goodbye), another starts on the
    same store, and once the lease has passed it runs the job again to the end."""
    deployment = LocalDeployment(
        tabular_folder / "synthetic.yaml",
        log_dir=tmp_path / "logs",
        records_path=tmp_path / "records.sqlite",
        extra_explainer_args=["--job_lease_seconds=3"],
    )
    proxy: FaultProxy | None = None
    try:
        proxy = FaultProxy(f"http://{deployment.start_predictor()}", delay=1.0)
        proxy.mode = "slow"  # each predictor call takes a second: the job is still running when its explainer dies
        deployment.start_explainer(proxy.url.split("://")[1])
        body = {"instances": [[0.97, 0.2, 0.5, 0.7, 0.1]], "method": "anchors", "async": True, "id": "restart"}
        accepted = httpx.post(deployment.urls()["explain"], json=body, timeout=30)
        assert accepted.status_code == 202, pretty(accepted)
        location = accepted.headers["location"]
        deadline = time.monotonic() + 30
        while httpx.get(deployment.explainer_base + location).json()["state"] != "running":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.1)
        first = next(p for p in deployment.processes if p.name == "explainer")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        deployment.processes.remove(first)
        proxy.mode = "pass"
        deployment.start_explainer(proxy.url.split("://")[1])
        done = wait_for_job(deployment, location, seconds=120)
        assert done["state"] == "done" and done["attempts"] == 2, done
        record = httpx.get(deployment.explainer_base + RECORDS_PATH.format(model="synthetic") + f"/{done['record']}")
        assert record.json()["outcome"] == "ok" and record.json()["requestId"] == "restart", record.text
    finally:
        deployment.stop()
        if proxy is not None:
            proxy.close()
