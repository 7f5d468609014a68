"""The drift monitor over real HTTP, fed the bytes KServe's request logger sends: a CloudEvent in
binary mode whose body is the prediction request (kserve pkg/logger/worker.go `sendHttpCloudEvent`,
pkg/logger/handler.go `ServeHTTP`). Windows like the reference data are not drifted; a shifted feature
makes the window drift, named first; responses and bodiless requests are not inputs; what is not a
logged request is refused, naming why."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from glassbox.contract.wire import DRIFT_EVENTS_PATH, DRIFT_PATH
from glassbox.explainers.serving.payloads import v2_request
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import manifest, pretty
from glassbox_testing.drift_data import reviews
from glassbox_testing.kserve_logger import log_request, log_rows, logger_headers

NAMES = ["income", "debt", "age", "score"]
MONITOR = "credit-drift"


def rows_like_reference(count: int, rng: np.random.Generator, shift_age: float = 0.0) -> np.ndarray:
    income = rng.standard_normal(count)
    debt = 0.8 * income + 0.6 * rng.standard_normal(count)
    age = 40 + 10 * rng.standard_normal(count) + shift_age
    score = rng.uniform(300, 850, size=count)
    return np.column_stack([income, debt, age, score])


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    folder = tmp_path_factory.mktemp("drift")
    pd.DataFrame(rows_like_reference(2000, np.random.default_rng(0)), columns=NAMES).to_csv(folder / "book.csv", index=False)
    path = manifest(
        "credit",
        {
            "predictor": {"inferenceServiceName": "credit"},
            "explainer": {"referenceData": {"uri": "book.csv"}, "methods": [{"type": "KernelShap"}]},
            "detector": {
                "drift": {"falseAlarmRate": 0.01, "windowRows": 200, "minRows": 100, "testEveryRows": 100},
            },
            "graph": {"enabled": False},
        },
        folder,
    )
    deployment = LocalDeployment(path, log_dir=folder / "logs", keep_records=False)
    try:
        deployment.start_drift()
        yield deployment
    finally:
        deployment.stop()


def post_event(deployment: LocalDeployment, body: bytes, **kwargs: str) -> httpx.Response:
    return log_request(f"{deployment.drift_base}{DRIFT_EVENTS_PATH.format(model=MONITOR)}", body, **kwargs)


def feed(deployment: LocalDeployment, rows: np.ndarray) -> None:
    """The rows as v1 prediction requests of 10 rows each, logged one by one."""
    assert log_rows(f"{deployment.drift_base}{DRIFT_EVENTS_PATH.format(model=MONITOR)}", rows) == len(rows)


def report_of(deployment: LocalDeployment, inputs: int) -> dict[str, Any]:
    """The report of the window once the first `inputs` logged inputs were tested (the test runs in the background)."""
    deadline = time.monotonic() + 60
    while True:
        report: dict[str, Any] = httpx.get(f"{deployment.drift_base}{DRIFT_PATH.format(model=MONITOR)}").json()
        if report.get("testedInputs") == inputs:
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.1)


def test_logged_requests_like_the_reference_do_not_drift_and_a_shifted_feature_does(monitor: LocalDeployment) -> None:
    waiting = httpx.get(f"{monitor.drift_base}{DRIFT_PATH.format(model=MONITOR)}").json()
    assert waiting["drifted"] is None and "minRows" in waiting["message"]
    rng = np.random.default_rng(1)
    feed(monitor, rows_like_reference(200, rng))
    calm = report_of(monitor, 200)
    assert calm["drifted"] is False and calm["falseAlarmRate"] == 0.01 and calm["windowRows"] == 200, calm
    assert [f["name"] for f in calm["features"]] != [] and calm["driftedFeatures"] == []
    feed(monitor, rows_like_reference(200, rng, shift_age=5.0))  # half a standard deviation older
    drifted = report_of(monitor, 400)
    assert drifted["drifted"] is True and drifted["features"][0]["name"] == "age", drifted
    assert drifted["driftedFeatures"] == ["age"] and drifted["pValue"] <= 0.01
    pictured = httpx.get(f"{monitor.drift_base}{DRIFT_PATH.format(model=MONITOR)}", params={"picture": "true"}).json()
    assert base64.b64decode(pictured["picture"]["base64"]).startswith(b"\x89PNG"), "reference against recent, as a PNG"
    refused = httpx.get(f"{monitor.drift_base}{DRIFT_PATH.format(model=MONITOR)}", params={"picture": "yes"})
    assert refused.status_code == 400 and "true or false" in refused.json()["error"]
    scraped = httpx.get(f"{monitor.drift_base}/metrics").text
    assert f'glassbox_detector_drifted{{model="{MONITOR}"}} 1.0' in scraped
    assert f'glassbox_detector_drift_feature_distance{{feature="age",model="{MONITOR}"}}' in scraped


def test_v2_requests_json_or_binary_are_inputs_and_responses_are_not(monitor: LocalDeployment) -> None:
    rows = rows_like_reference(3, np.random.default_rng(2))
    tensor = {"name": "input-0", "shape": [3, 4], "datatype": "FP64"}
    as_json = json.dumps({"inputs": [{**tensor, "data": rows.reshape(-1).tolist()}]}).encode()
    assert post_event(monitor, as_json).json() == {"accepted": 3}
    header = json.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": rows.size * 8}}]}).encode()
    binary = post_event(monitor, header + rows.astype("<f8").tobytes(), content_type="application/octet-stream")
    assert binary.status_code == 200 and binary.json() == {"accepted": 3}, pretty(binary)
    response = json.dumps({"predictions": [[0.1, 0.9]] * 3}).encode()
    assert post_event(monitor, response, kind="response").json() == {"accepted": 0}
    assert post_event(monitor, b"").json() == {"accepted": 0}, "a logged GET of the model's metadata has no body"
    # The explainer's perturbed inputs, named by the header the logger passes on (logger.metadataHeaders).
    tagged = {"Ce-Metadata": json.dumps({"Glassbox-Caller": ["explainer"]})}
    url = f"{monitor.drift_base}{DRIFT_EVENTS_PATH.format(model=MONITOR)}"
    answer = httpx.post(url, content=as_json, headers={**logger_headers(as_json), **tagged}, timeout=30)
    assert answer.json() == {"accepted": 0}, "the explainer's calls are not users' traffic"


@pytest.mark.parametrize(
    ("body", "headers", "words"),
    [
        (b'{"instances": [[1, 2, 3, 4]]}', {"Content-Type": "application/json"}, "not a CloudEvent"),
        (b'{"instances": [[1, 2, 3]]}', None, "3 features"),
        (
            b"\x00\x01 not json",
            logger_headers(b"\x00\x01 not json", content_type="application/octet-stream"),
            "neither JSON nor a v2 JSON header",
        ),
        (b'{"instances": ["a fine loan"]}', None, "text"),
    ],
)
def test_what_is_not_a_logged_request_is_refused_naming_why(
    monitor: LocalDeployment, body: bytes, headers: dict[str, str] | None, words: str
) -> None:
    url = f"{monitor.drift_base}{DRIFT_EVENTS_PATH.format(model=MONITOR)}"
    answer = httpx.post(url, content=body, headers=headers if headers is not None else logger_headers(body), timeout=30)
    assert answer.status_code == 400 and words in answer.json()["error"], pretty(answer)


def test_the_drift_monitor_gives_no_verdicts_and_says_where_to_look(monitor: LocalDeployment) -> None:
    answer = httpx.post(f"{monitor.drift_base}/v1/models/{MONITOR}:predict", json={"instances": [[1, 2, 3, 4]]}, timeout=30)
    assert answer.status_code == 404 and "monitors drift only" in answer.json()["error"], pretty(answer)


def test_in_local_mode_the_predictor_copies_its_requests_to_the_monitor_as_kserves_logger_would(
    tabular_folder: Path, tmp_path: Path
) -> None:
    """No KServe runs here: Glassbox's predictor posts each prediction request (v1 JSON, v2 binary) to the drift
    monitor in the logger's own form, so `glassbox up` watches drift as the cluster does."""
    spec = yaml.safe_load((tabular_folder / "synthetic.yaml").read_text())["spec"]
    spec["detector"]["drift"] = {"windowRows": 200, "minRows": 100, "testEveryRows": 100}
    for name in ("model", "train.csv"):
        (tmp_path / name).symlink_to(tabular_folder / name)
    deployment = LocalDeployment(manifest("synthetic", spec, tmp_path), log_dir=tmp_path / "logs", keep_records=False)
    try:
        deployment.start_detector()
        deployment.start_drift()
        deployment.start_predictor()
        predict = deployment.urls()["predict"]  # v2
        predict_v1 = f"{deployment.predictor_base}/v1/models/synthetic:predict"
        report_url = deployment.urls()["drift"]
        rng = np.random.default_rng(3)
        # The explainer's calls say who they are (the header KServe's logger passes on): not in the window.
        tagged = {"instances": (rng.uniform(size=(10, 5)) * 9).tolist()}
        assert httpx.post(predict_v1, json=tagged, headers={"Glassbox-Caller": "explainer"}, timeout=30).status_code == 200
        for _ in range(10):
            rows = rng.uniform(size=(10, 5))
            content, headers = v2_request(rows, binary=True)
            assert httpx.post(predict, content=content, headers=headers, timeout=30).status_code == 200
        for _ in range(10):
            rows = rng.uniform(size=(10, 5))
            assert httpx.post(predict_v1, json={"instances": rows.tolist()}, timeout=30).status_code == 200
        calm = wait_for_report(report_url, 200)
        assert calm["drifted"] is False and calm["inputs"] == 200, calm
        for _ in range(20):
            rows = rng.uniform(size=(10, 5))
            rows[:, 1] = rng.uniform(0.5, 1.0, size=10)  # f1 only in the upper half of its range
            assert httpx.post(predict_v1, json={"instances": rows.tolist()}, timeout=30).status_code == 200
        drifted = wait_for_report(report_url, 400)
        assert drifted["drifted"] is True and drifted["driftedFeatures"][0] == "f1", drifted
    finally:
        deployment.stop()


def wait_for_report(url: str, inputs: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        report: dict[str, Any] = httpx.get(url).json()
        if report.get("testedInputs") == inputs:
            return report
        assert time.monotonic() < deadline, report
        time.sleep(0.1)


def test_for_an_existing_service_the_detector_forwards_what_the_graph_passes_by_and_never_waits_for_the_monitor(
    tmp_path: Path,
) -> None:
    """An existing InferenceService carries no logger of Glassbox's: the graph's predict route passes each request
    by the detector's observe path, which answers at once and forwards a copy to the monitor as KServe's logger
    would. With the monitor gone, the detector still answers: the graph's predictions never wait on it."""
    rng = np.random.default_rng(5)
    pd.DataFrame(rows_like_reference(2000, np.random.default_rng(0)), columns=NAMES).to_csv(tmp_path / "book.csv", index=False)
    path = manifest(
        "credit",
        {
            "predictor": {"inferenceServiceName": "credit"},
            "explainer": {"referenceData": {"uri": "book.csv"}, "methods": [{"type": "KernelShap"}]},
            "detector": {"drift": {"windowRows": 200, "minRows": 100, "testEveryRows": 100}},
            "graph": {"routes": ["predict", "explain"]},
        },
        tmp_path,
    )
    deployment = LocalDeployment(path, log_dir=tmp_path / "logs", keep_records=False)
    try:
        deployment.start_drift()
        deployment.start_detector()
        observe = f"{deployment.detector_base}/glassbox/v1/models/credit-detector/observe"
        for _ in range(10):  # the graph's bodies are JSON: v1 and v2
            rows = rows_like_reference(10, rng)
            assert httpx.post(observe, json={"instances": rows.tolist(), "route": "predict"}, timeout=30).json() == {}
            content, headers = v2_request(rows_like_reference(10, rng), binary=False)
            assert httpx.post(observe, content=content, headers=headers, timeout=30).status_code == 200
        report = wait_for_report(f"{deployment.drift_base}{DRIFT_PATH.format(model=MONITOR)}", 200)
        assert report["drifted"] is False and report["inputs"] == 200, report
        next(p for p in deployment.processes if p.name == "drift").process.kill()
        began = time.monotonic()
        answer = httpx.post(observe, json={"instances": rows_like_reference(10, rng).tolist()}, timeout=30)
        assert answer.status_code == 200 and time.monotonic() - began < 5, pretty(answer)
    finally:
        deployment.stop()


def test_text_drift_is_read_from_kserves_logger_and_named_by_the_reference_words(tmp_path: Path) -> None:
    """A text model's monitor: logged reviews (v1 strings and v2 BYTES) fill the window; reviews that began to
    talk about deliveries drift, and the report names the directions of the reference texts that moved."""
    rng = np.random.default_rng(7)
    pd.DataFrame({"review": reviews(1500, np.random.default_rng(0))}).to_csv(tmp_path / "reviews.csv", index=False)
    path = manifest(
        "films",
        {
            "predictor": {"inferenceServiceName": "films"},
            "explainer": {"methods": [{"type": "AnchorText"}]},
            "detector": {
                "referenceData": {"uri": "reviews.csv", "textColumn": "review"},
                "drift": {"windowRows": 200, "minRows": 200, "testEveryRows": 200},
            },
            "graph": {"enabled": False},
        },
        tmp_path,
    )
    deployment = LocalDeployment(path, log_dir=tmp_path / "logs", keep_records=False)
    try:
        deployment.start_drift()
        events = f"{deployment.drift_base}{DRIFT_EVENTS_PATH.format(model='films-drift')}"

        def log_reviews(texts: list[str]) -> None:
            for start in range(0, len(texts), 20):
                batch = texts[start : start + 20]
                v1 = json.dumps({"instances": batch}).encode()
                v2 = json.dumps({"inputs": [{"name": "input-0", "shape": [len(batch)], "datatype": "BYTES", "data": batch}]})
                body = v1 if start % 40 == 0 else v2.encode()
                assert log_request(events, body).json() == {"accepted": len(batch)}

        def tested(inputs: int) -> dict[str, Any]:
            return wait_for_report(f"{deployment.drift_base}{DRIFT_PATH.format(model='films-drift')}", inputs)

        log_reviews(reviews(200, rng))
        calm = tested(200)
        assert calm["drifted"] is False and all(f["name"].startswith("text direction") for f in calm["features"]), calm
        log_reviews(reviews(200, rng, shipping=0.3))
        drifted = tested(400)
        assert drifted["drifted"] is True and drifted["driftedFeatures"], drifted
        numbers = log_request(events, json.dumps({"instances": [[1.0, 2.0]]}).encode())
        assert numbers.status_code == 400 and "holds numbers" in numbers.json()["error"], pretty(numbers)
    finally:
        deployment.stop()
