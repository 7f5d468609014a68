"""Runs inside a private network namespace: Glassbox's servers in local mode, KServe's router in front.

    unshare -n python e2e/graph/graph_driver.py PLAN.json RESULTS.json

PLAN names the ExplainedModel manifest (and, for an existing InferenceService,
the manifest that serves it; its detector too when it has one), the router binary, and the requests to send to
the router. The graph is the one the operator's builders generate, with its
steps pointing at these servers where KServe's controller would point them
(`status.address.url` plus KServe's paths: see glassbox.operator.kserve_addressing).
When a request asks for a fault (`proxy_mode`: a slow predictor), a fault
proxy sits between the explainer and the predictor. With `records`, the explainer keeps records (and
takes jobs); a request with `follow_job` has its job read back from the explainer. A request with `stop_drift`
first reads the drift monitor's report (once it has tested `drift_inputs` inputs) and then kills the monitor.
RESULTS holds each request's status, body and time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from glassbox.local import LocalDeployment  # noqa: E402
from glassbox_testing.dataplane import FaultProxy

ROUTER = "http://127.0.0.1:8080"


def wait_for_router(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the router exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{ROUTER}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the router did not answer /readyz within 30 s")


def follow_job(explainer_base: str, location: str, seconds: float = 120) -> dict[str, Any]:
    """A job's state from the explainer, polled until it ends (or `seconds` pass)."""
    deadline = time.monotonic() + seconds
    while True:
        state: dict[str, Any] = httpx.get(explainer_base + location, timeout=10).json()
        if state.get("state") in ("done", "failed", "cancelled") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def send(request: dict[str, Any], proxy: FaultProxy | None, explainer_base: str) -> dict[str, Any]:
    """One planned request through the router (the proxy in front of the predictor set to its mode meanwhile):
    its status, its body as JSON when it is JSON, its text and its time; with `follow_job`, the job the
    answer's `explanation` step names, read from the explainer until it ends."""
    if proxy is not None:
        proxy.mode = request.get("proxy_mode", "pass")
    try:
        return _sent(request, explainer_base)
    finally:
        if proxy is not None:
            proxy.mode = "pass"


def _sent(request: dict[str, Any], explainer_base: str) -> dict[str, Any]:
    started_at = time.monotonic()
    try:
        with httpx.Client(timeout=None) as client:
            answer = client.post(
                ROUTER + request.get("path", "/"),
                content=json.dumps(request["body"]),
                headers={"content-type": "application/json"},
                timeout=request.get("timeout", 120),
            )
        status, text = answer.status_code, answer.text
    except httpx.HTTPError as error:
        status, text = None, f"{type(error).__name__}: {error}"
    seconds = time.monotonic() - started_at
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    result = {"id": request["id"], "status": status, "body": body, "text": text[:2000], "seconds": seconds}
    if request.get("follow_job") and isinstance(body, dict) and "location" in (body.get("explanation") or {}):
        result["job"] = follow_job(explainer_base, body["explanation"]["location"])
    return result


def drift_report(deployment: LocalDeployment, inputs: int, seconds: float = 60) -> dict[str, Any]:
    """The drift monitor's report once it has tested `inputs` inputs (or what it says after `seconds`)."""
    deadline = time.monotonic() + seconds
    while True:
        report: dict[str, Any] = httpx.get(deployment.urls()["drift"], timeout=10).json()
        if report.get("testedInputs") == inputs or time.monotonic() > deadline:
            return report
        time.sleep(0.2)


def main(plan_path: Path, results_path: Path) -> int:
    plan = json.loads(plan_path.read_text())
    logs = Path(plan["logs"])
    logs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    started: list[LocalDeployment] = []
    proxy: FaultProxy | None = None
    router: subprocess.Popen[bytes] | None = None
    results: dict[str, Any] = {"requests": []}
    try:
        predictor_url = None
        if plan.get("existing_manifest"):
            existing = LocalDeployment(Path(plan["existing_manifest"]), log_dir=logs / "existing")
            started.append(existing)
            predictor_url = "http://" + existing.start_predictor()
        deployment = LocalDeployment(
            Path(plan["manifest"]),
            predictor_url=predictor_url,
            log_dir=logs / "deployment",
            existing_answers_both_protocols=bool(plan.get("existing_answers_both_protocols")),
            extra_explainer_args=list(plan.get("explainer_args") or []),
            keep_records=bool(plan.get("records")),
        )
        started.append(deployment)
        if deployment.spec.detector is not None:
            if deployment.spec.detector.drift is not None:
                deployment.start_drift()  # the detector forwards the graph's requests to it
            deployment.start_detector()
        predictor_host = deployment.start_predictor()
        if any("proxy_mode" in request for request in plan["requests"]):
            proxy = FaultProxy(f"http://{predictor_host}", delay=float(plan.get("slow_delay", 1.0)))
            deployment.start_explainer(proxy.url.split("://", 1)[1])
        else:
            deployment.start_explainer(predictor_host)
        graph = deployment.inference_graph(predictor_base=f"http://{predictor_host}")
        assert graph is not None, "the manifest has no graph"
        results["graph"] = graph["spec"]
        router_log = logs / "router.log"
        with open(router_log, "wb") as handle:
            router = subprocess.Popen(
                [plan["router"], "--graph-json", json.dumps(graph["spec"])], stdout=handle, stderr=subprocess.STDOUT
            )
        wait_for_router(router, router_log)
        for request in plan["requests"]:
            if request.get("stop_drift"):  # the monitor's one replica gone: the graph must not notice
                results["drift"] = drift_report(deployment, int(plan["drift_inputs"]))
                next(p for p in deployment.processes if p.name == "drift").process.kill()
            results["requests"].append(send(request, proxy, deployment.explainer_base))
    except Exception as error:  # reported to the test, which names it
        results["error"] = f"{type(error).__name__}: {error}"
        for deployment in started:
            for process in deployment.processes:
                results.setdefault("logs", {})[f"{deployment.name}/{process.name}"] = process.log_tail(3000)
    finally:
        if router is not None:
            router.kill()  # it waits 30 s after SIGTERM before it exits
            router.wait()
        for deployment in reversed(started):
            deployment.stop()
        if proxy is not None:
            proxy.close()
        results_path.write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
