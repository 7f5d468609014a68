"""The predictor, explainer and detector images, each flavour, serving make demo's model as a pod would:
the operator's container specs, non-root, read-only root, no capabilities, the model in /mnt/models."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from glassbox.demo import METHODS, unusual_patient
from glassbox.local import read_manifest
from glassbox.operator.builders import TERMINATION_MARGIN_SECONDS, Parent, build_inference_graph, detector_name
from glassbox.operator.kserve_addressing import PredictTarget, explain_path
from glassbox_testing.cluster import REPO
from glassbox_testing.kserve_router import router_or_reason

from .conftest import FLAVOURS, DemoFiles, DemoServers, record, tag

sys.path.insert(0, str(REPO / "e2e" / "graph"))
from demo_graph import requests as demo_graph_requests  # noqa: E402

ROUTER = "http://127.0.0.1:8080"


def v2_body(rows: np.ndarray) -> dict[str, Any]:
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.reshape(-1).tolist()}]}


def test_the_images_run_as_their_non_root_user_on_a_read_only_root(demo_servers: DemoServers) -> None:
    for role, container in demo_servers.running.items():
        command = " ".join(container.command)
        assert "--read-only" in command and "--cap-drop=all" in command and "no-new-privileges" in command, command
        assert "--user 65532:65532" in command, f"{role}: {command}"


def test_predictions_in_v1_and_v2(demo_servers: DemoServers, demo_files: DemoFiles) -> None:
    name, rows = demo_servers.model_name, demo_files.rows
    v1 = httpx.post(f"{demo_servers.predictor_url}/v1/models/{name}:predict", json={"instances": rows.tolist()}, timeout=60)
    assert v1.status_code == 200, v1.text
    v2 = httpx.post(f"{demo_servers.predictor_url}/v2/models/{name}/infer", json=v2_body(rows), timeout=60)
    assert v2.status_code == 200, v2.text
    from_v1 = np.asarray(v1.json()["predictions"])
    output = v2.json()["outputs"][0]
    from_v2 = np.asarray(output["data"]).reshape(output["shape"])
    assert from_v1.shape == (3, 2) and np.allclose(from_v1, from_v2) and np.allclose(from_v1.sum(axis=1), 1)
    # The demo's rows: two malignant patients, then a benign one (class 1).
    assert list(from_v1.argmax(axis=1)) == [0, 0, 1], from_v1


@pytest.mark.parametrize("method", [m.effective_name for m in METHODS])
def test_an_explanation_by_each_of_the_demos_methods(demo_servers: DemoServers, demo_files: DemoFiles, method: str) -> None:
    url = demo_servers.explainer_url + explain_path(demo_servers.model_name)
    answer = httpx.post(url, json={"instances": demo_files.rows[:1].tolist(), "method": method, "picture": True}, timeout=300)
    assert answer.status_code == 200, answer.text[:2000]
    body = answer.json()
    assert {"meta", "data"} <= set(body) and body["method"] == method and body["summary"], str(body)[:1000]
    assert body["picture"]["base64"], "the picture (matplotlib in the image) is missing"


def test_readiness_and_metrics(demo_servers: DemoServers) -> None:
    for role, url, metric in (
        ("predictor", demo_servers.predictor_url, "glassbox_predictor_requests"),
        ("explainer", demo_servers.explainer_url, "glassbox_explainer_explanation_seconds"),
        ("detector", demo_servers.detector_url, "glassbox_detector"),
    ):
        ready = httpx.get(f"{url}/v2/health/ready", timeout=10)
        assert ready.status_code == 200, f"{role}: {ready.status_code} {ready.text}"
        metrics = httpx.get(f"{url}/metrics", timeout=10)
        assert metrics.status_code == 200 and metric in metrics.text, f"{role}: {metrics.status_code} {metrics.text[:500]}"


def test_the_detector_tells_an_ordinary_from_an_unusual_patient(demo_servers: DemoServers, demo_files: DemoFiles) -> None:
    ordinary = demo_files.rows[0]
    unusual = unusual_patient(ordinary, demo_files.names)
    url = f"{demo_servers.detector_url}/v1/models/{detector_name(demo_servers.model_name)}:predict"
    answer = httpx.post(url, json={"instances": [ordinary.tolist(), unusual.tolist()]}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert [v["is_outlier"] for v in answer.json()["predictions"]] == [False, True], answer.text


@pytest.fixture
def router(demo_servers: DemoServers, demo_files: DemoFiles, tmp_path: Path) -> Iterator[str]:
    """KServe's own router on :8080, fed the graph the operator's builders make, its steps at the containers."""
    binary, reason = router_or_reason()
    if binary is None:
        pytest.skip(reason)
    name, spec = read_manifest(demo_files.manifest.with_name(f"explainedmodel-{demo_servers.flavour}.yaml"))
    target = PredictTarget(demo_servers.predictor_url, name, spec.predictor.protocol_to_deploy, answers_both_protocols=True)
    graph = build_inference_graph(
        Parent(name, "images-test", "images-test-uid"), spec, target, demo_servers.explainer_url, demo_servers.detector_url
    )
    assert graph is not None
    log = tmp_path / "router.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(binary), "--graph-json", json.dumps(graph["spec"])], stdout=handle, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"the router exited: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{ROUTER}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the router did not answer /readyz within 30 s"
            time.sleep(0.1)
        yield ROUTER
    finally:
        process.kill()  # it waits 30 s after SIGTERM before it exits
        process.wait()


def test_every_route_of_the_demos_graph_through_kserves_router(
    router: str, demo_servers: DemoServers, demo_files: DemoFiles
) -> None:
    row = demo_files.rows[0].tolist()
    unusual = unusual_patient(demo_files.rows[0], demo_files.names).tolist()
    answers = {}
    for request in demo_graph_requests(row, unusual):
        answer = httpx.post(router, json=request["body"], timeout=300)
        answers[request["id"].split(".")[0]] = (answer.status_code, answer.json() if answer.text.startswith("{") else answer.text)

    def ok(key: str) -> Any:
        status, body = answers[key]
        assert status == 200, f"{key}: {status} {str(body)[:1500]}"
        return body

    assert ok("1")["predictions"][0][0] > 0.5 and ok("2")["outputs"][0]["shape"] == [1, 2]
    assert ok("3")["method"] == "anchors" and ok("4")["method"] == "shap"
    assert ok("5")["explanation"]["method"] == "counterfactual" and ok("5")["prediction"]["predictions"]
    assert ok("6")["explanation"]["method"] == "ig" and ok("6")["prediction"]["outputs"]
    assert "lime" in ok("7")["explanation"]["error"] and ok("7")["prediction"]["predictions"]
    assert [v["is_outlier"] for v in ok("8")["predictions"]] == [False, True]
    assert ok("9")["explanation"]["flagged"] == [1] and len(ok("9")["prediction"]["predictions"]) == 2
    status, body = answers["10"]
    assert status == 400 and "monitor" in body["error"], body


# What libraries log when they find the root filesystem read-only and fall back (matplotlib rebuilds its font
# cache at every start then) or fail outright.
READ_ONLY_SIGNS = ("Read-only file system", "is not a writable directory", "not writable")


def test_nothing_tried_to_write_outside_tmp(demo_servers: DemoServers) -> None:
    """After every request above: the servers kept every file they wrote under /tmp."""
    for role, container in demo_servers.running.items():
        log = container.logs(200_000)
        signs = [sign for sign in READ_ONLY_SIGNS if sign in log]
        assert not signs, f"the {role} met the read-only root ({signs}); its log ends:\n{log[-3000:]}"


def test_sigterm_drains_an_explanation_in_flight_within_the_grace_period(
    demo_servers: DemoServers, demo_files: DemoFiles
) -> None:
    """Last for each flavour: it stops the servers. The kubelet sends SIGTERM and waits the pod's grace period
    (the component's timeout plus a margin, as the operator sets it) before SIGKILL."""
    name, spec = read_manifest(demo_files.manifest.with_name(f"explainedmodel-{demo_servers.flavour}.yaml"))
    grace = spec.explainer.timeout_seconds + TERMINATION_MARGIN_SECONDS
    url = demo_servers.explainer_url + explain_path(name)
    answers: list[httpx.Response] = []
    sent = threading.Thread(
        target=lambda: answers.append(
            httpx.post(url, json={"instances": demo_files.rows[2:].tolist(), "method": "anchors"}, timeout=300)
        )
    )
    sent.start()
    deadline = time.monotonic() + 30
    while in_flight(httpx.get(f"{demo_servers.explainer_url}/metrics", timeout=5).text) < 1:
        assert time.monotonic() < deadline and sent.is_alive(), f"the explanation was never seen in flight: {answers}"
        time.sleep(0.02)
    explainer = demo_servers.running["explainer"]
    code = explainer.stop(grace)
    sent.join(timeout=60)
    assert answers and answers[0].status_code == 200, answers[0].text[:1000] if answers else "no answer"
    assert answers[0].json()["method"] == "anchors"
    assert code == 0 and explainer.stopped_in is not None and explainer.stopped_in < grace, (
        f"exit {code} after {explainer.stopped_in:.1f} s of a {grace} s grace period; log:\n{explainer.logs()}"
    )
    record(tag("explainer", FLAVOURS[demo_servers.flavour]), sigterm_drained_in_s=round(explainer.stopped_in, 1))
    for role in ("predictor", "detector"):
        container = demo_servers.running[role]
        assert container.stop(grace) == 0, f"the {role} exited with {container.exit_code} on SIGTERM:\n{container.logs()}"


def in_flight(metrics: str) -> float:
    """Explanations running or admitted and waiting, as the explainer's gauges say."""
    names = ("glassbox_explainer_running_explanations{", "glassbox_explainer_waiting_explanations{")
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(names))
