"""`make reliability`: the data plane under hostile input, overload, a dripping predictor and shutdown, measured.

    python bench/reliability.py [--out bench/results] [--quick]

Real servers on loopback (local mode: the same servers and arguments as in a
cluster), the synthetic tabular model of the tests, and the tests' fault proxy
between explainer and predictor. Each scenario prints what it measured and
whether the issue's target was met; the figures go to reliability.json and
reliability.md. Every loop is bounded in count and time; all traffic stays on
loopback. The core cases of each scenario run in `make test` (explainers/tests:
test_hostile_input, test_explainer_faults, test_servers_http); timings live here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from glassbox.contract.api import ExplainerFit
from glassbox.contract.wire import EXPLAINER_SPEC_ENV
from glassbox.local import LocalDeployment, free_port
from glassbox_testing.dataplane import FaultProxy, build_tabular
from glassbox_testing.hostile import CASES, EXPLAIN, PREDICT_V1, rss_bytes, send_raw

HERE = Path(__file__).resolve().parent


ROW = [0.9, 0.2, 0.5, 0.7, 0.1]
MODEL = "synthetic"
REFERENCE = {"uri": "train.csv", "targetColumn": "label"}
SHAP = {"name": "shap", "type": "KernelShap", "kernelShap": {"nsamples": 100, "backgroundSize": 20}}
ANCHORS = {"name": "anchors", "type": "AnchorTabular"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def ms(seconds: float) -> float:
    return round(1000 * seconds, 1)


class Servers:
    """The processes a scenario starts (a predictor with other batching, an explainer with other flags), stopped at the end."""

    def __init__(self, deployment: LocalDeployment, logs: Path):
        self.deployment = deployment
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, command: list[str], env: dict[str, str], ready_url: str) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
            )
        self.started.append(process)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited: {(self.logs / f'{name}.log').read_text()[-2000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} was not ready within 300 s")

    def predictor(self, name: str, *flags: str) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        command, env = self.deployment.predictor_command(port)
        base = f"http://127.0.0.1:{port}"
        return base, self._spawn(name, [*command, *flags], env, f"{base}/v2/models/{MODEL}/ready")

    def explainer(
        self, name: str, predictor_host: str, methods: list[dict[str, Any]], *flags: str
    ) -> tuple[str, subprocess.Popen[bytes]]:
        port = free_port()
        command, env = self.deployment.explainer_command(port, predictor_host)
        env[EXPLAINER_SPEC_ENV] = ExplainerFit.model_validate({"referenceData": REFERENCE, "methods": methods}).model_dump_json(
            by_alias=True, exclude_none=True
        )
        base = f"http://127.0.0.1:{port}"
        return base, self._spawn(name, [*command, *flags], env, f"{base}/v2/models/{MODEL}/ready")

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --------------------------------------------------------------------------- scenarios


def bad_input(predictor: str, explainer: str, predictor_pid: int, explainer_pid: int, rounds: int) -> dict[str, Any]:
    """Every malformed-request class against its server: status, latency, and RSS over `rounds` requests."""
    classes: dict[str, Any] = {}
    latencies: list[float] = []
    with httpx.Client(timeout=30) as client:
        for case, path, body, headers, status, _ in CASES:
            base = explainer if path == EXPLAIN else predictor
            method = "GET" if case.startswith("GET") else "POST"
            seen, times = set(), []
            for _ in range(20):
                began = time.perf_counter()
                answer = client.request(method, base + path, content=body, headers=headers)
                times.append(time.perf_counter() - began)
                seen.add(answer.status_code)
            latencies += times
            classes[case] = {"statuses": sorted(seen), "expected": status, "p99_ms": ms(percentile(times, 0.99))}
        rss_before = {"predictor": rss_bytes(predictor_pid), "explainer": rss_bytes(explainer_pid)}
        for index in range(rounds):
            case, path, body, headers, _, _ = CASES[index % len(CASES)]
            base = explainer if path == EXPLAIN else predictor
            client.request("GET" if case.startswith("GET") else "POST", base + path, content=body, headers=headers)
        growth = {
            name: round((rss_bytes(pid) - rss_before[name]) / 2**20, 1)
            for name, pid in (("predictor", predictor_pid), ("explainer", explainer_pid))
        }
    server_errors = [c for c, r in classes.items() if any(s >= 500 for s in r["statuses"])]
    wrong = [c for c, r in classes.items() if r["statuses"] != [r["expected"]]]
    p99 = percentile(latencies, 0.99)
    return {
        "classes": len(classes),
        "server_errors": server_errors,
        "unexpected_status": wrong,
        "p99_ms": ms(p99),
        "slowest": max(classes.items(), key=lambda kv: kv[1]["p99_ms"])[0],
        "requests_for_rss": rounds,
        "rss_growth_mb": growth,
        "met": not server_errors and not wrong and p99 < 0.050 and all(g < 20 for g in growth.values()) and len(classes) >= 30,
        "per_class": classes,
    }


def body_limits(predictor: str, explainer: str, predictor_pid: int, explainer_pid: int) -> dict[str, Any]:
    """A declared 1 GiB upload, and a chunked one past the limit: 413, time to it, RSS growth against the limit."""
    results: dict[str, Any] = {}
    for name, base, path, pid, limit in (
        ("predictor", predictor, PREDICT_V1, predictor_pid, 64 * 2**20),
        ("explainer", explainer, EXPLAIN, explainer_pid, 8 * 2**20),
    ):
        port = int(base.rsplit(":", 1)[1])
        before = rss_bytes(pid)
        head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {2**30}\r\n\r\n".encode()
        began = time.perf_counter()
        declared = send_raw(port, head, body_chunks=64, chunk=b"[" * 65536)
        declared_s = time.perf_counter() - began
        head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode()
        piece = b"[" * 2**20
        began = time.perf_counter()
        chunked = send_raw(
            port, head, body_chunks=limit // len(piece) + 16, chunk=f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        )
        chunked_s = time.perf_counter() - began
        growth = rss_bytes(pid) - before
        results[name] = {
            "limit_mib": limit // 2**20,
            "declared_1gib_status": int(declared.split()[1]),
            "declared_1gib_ms": ms(declared_s),
            "chunked_status": int(chunked.split()[1]),
            "chunked_ms": ms(chunked_s),
            "rss_growth_mb": round(growth / 2**20, 1),
            "met": declared.startswith(b"HTTP/1.1 413") and chunked.startswith(b"HTTP/1.1 413") and growth < 1.5 * limit,
        }
    return results


def batch_isolation(servers: Servers, valid: int, bad: int) -> dict[str, Any]:
    """`valid` good requests interleaved with `bad` wrong-shape ones, 32 at a time, at maxLatencyMs 0 and 5."""
    results: dict[str, Any] = {}
    for latency_ms in (0, 5):
        base, _ = servers.predictor(f"predictor-latency-{latency_ms}", f"--max_batch_latency_ms={latency_ms}")
        bodies = []
        for i in range(valid + bad):
            is_bad = i % ((valid + bad) // bad) == 0 and sum(1 for b in bodies if b[0]) < bad
            bodies.append((is_bad, {"instances": [[0.9, 0.2, 0.5]]} if is_bad else {"instances": [ROW] * (1 + i % 7)}))

        def send(item: tuple[bool, dict[str, Any]], client: httpx.Client, base: str = base) -> tuple[bool, int, float]:
            began = time.perf_counter()
            answer = client.post(f"{base}{PREDICT_V1}", json=item[1])
            return item[0], answer.status_code, time.perf_counter() - began

        from concurrent.futures import ThreadPoolExecutor

        with httpx.Client(timeout=30, limits=httpx.Limits(max_connections=32)) as client, ThreadPoolExecutor(32) as pool:
            outcomes = list(pool.map(lambda item: send(item, client), bodies))
            alive = client.post(f"{base}{PREDICT_V1}", json={"instances": [ROW]}).status_code == 200
        good = [o for o in outcomes if not o[0]]
        wrong = [o for o in outcomes if o[0]]
        results[f"max_latency_{latency_ms}ms"] = {
            "valid": len(good),
            "valid_200": sum(1 for o in good if o[1] == 200),
            "bad": len(wrong),
            "bad_400": sum(1 for o in wrong if o[1] == 400),
            "bad_p99_ms": ms(percentile([o[2] for o in wrong], 0.99)),
            "bad_max_ms": ms(max(o[2] for o in wrong)),
            "valid_p99_ms": ms(percentile([o[2] for o in good], 0.99)),
            "batcher_alive": alive,
            "met": all(o[1] == 200 for o in good) and all(o[1] == 400 and o[2] < 0.1 for o in wrong) and alive,
        }
    return results


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")


def overload(explainer: str, proxy: FaultProxy, seconds: float) -> dict[str, Any]:
    """Unloaded latency (one client), capacity (explanations/s with every worker busy), then 10x capacity open-loop.

    Each predictor call takes 100 ms more (the proxy waits), as a predictor on a busy GPU elsewhere would:
    explanations bound by the predictor, not by this machine's two cores, which the load generator and both
    servers share. (Against CPU-bound explanations of 16 to 45 ms, 10x capacity is more than this
    machine's Python load generator can offer: the generator's own queue then decides every latency.)"""
    proxy.mode, proxy.delay = "slow", 0.1
    try:
        return _overload(explainer, seconds)
    finally:
        proxy.mode, proxy.delay = "pass", 5.0


def _unloaded_seconds(url: str, body: dict[str, Any], count: int = 30) -> list[float]:
    """One explanation at a time: what each takes with nothing else running."""
    times = []
    with httpx.Client(timeout=60) as client:
        for _ in range(count):
            began = time.perf_counter()
            assert client.post(url, json=body).status_code == 200
            times.append(time.perf_counter() - began)
    return times


def _capacity_per_second(url: str, body: dict[str, Any], clients: int, seconds: float) -> float:
    """Explanations answered per second by `clients` that each send the next as soon as one is answered."""

    async def closed_loop(until: float) -> int:
        done = 0
        async with httpx.AsyncClient(timeout=60) as client:

            async def one() -> None:
                nonlocal done
                while time.monotonic() < until:
                    if (await client.post(url, json=body)).status_code == 200:
                        done += 1

            await asyncio.gather(*(one() for _ in range(clients)))
        return done

    began = time.monotonic()
    return asyncio.run(closed_loop(began + seconds)) / (time.monotonic() - began)


def _open_loop(
    explainer: str, url: str, body: dict[str, Any], rate: float, seconds: float
) -> tuple[list[tuple[int, float, str | None]], list[float]]:
    """Requests sent at `rate` whatever the answers: each one's status, seconds and Retry-After, and the
    waiting room's depth sampled four times a second."""
    outcomes: list[tuple[int, float, str | None]] = []
    depths: list[float] = []

    async def open_loop() -> None:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000)) as client:

            async def one() -> None:
                began = time.perf_counter()
                answer = await client.post(url, json=body)
                outcomes.append((answer.status_code, time.perf_counter() - began, answer.headers.get("retry-after")))

            tasks = []
            start = time.monotonic()
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one()))
                if i % max(1, int(rate / 4)) == 0:
                    depths.append(
                        await asyncio.to_thread(metric, explainer, 'glassbox_explainer_waiting_explanations{model="synthetic"}')
                    )
            await asyncio.gather(*tasks)

    asyncio.run(open_loop())
    return outcomes, depths


def _overload(explainer: str, seconds: float) -> dict[str, Any]:
    url = f"{explainer}{EXPLAIN}"
    body = {"instances": [ROW], "method": "shap"}
    unloaded = _unloaded_seconds(url, body)
    capacity = _capacity_per_second(url, body, 8, seconds)
    rate = 10 * capacity
    outcomes, depths = _open_loop(explainer, url, body, rate, seconds)
    admitted = [o[1] for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 503]
    others = sorted({o[0] for o in outcomes} - {200, 503})
    unloaded_p99 = percentile(unloaded, 0.99)
    admitted_p99 = percentile(admitted, 0.99) if admitted else float("nan")
    refused_p99 = percentile([o[1] for o in refused], 0.99) if refused else float("nan")
    return {
        "unloaded_p99_ms": ms(unloaded_p99),
        "capacity_per_s": round(capacity, 2),
        "offered_per_s": round(rate, 1),
        "sent": len(outcomes),
        "admitted": len(admitted),
        "refused_503": len(refused),
        "other_statuses": others,
        "refused_with_retry_after": all(o[2] is not None for o in refused),
        "refused_p99_ms": ms(refused_p99),
        "admitted_p99_ms": ms(admitted_p99),
        "admitted_p99_over_unloaded": round(admitted_p99 / unloaded_p99, 2),
        "max_waiting_seen": max(depths) if depths else None,
        "met": bool(refused) and refused_p99 < 0.05 and admitted_p99 <= 2 * unloaded_p99 and not others,
    }


def deadlines(servers: Servers, proxy: FaultProxy, timeout_s: float) -> dict[str, Any]:
    """A predictor that answers one byte every 0.5 s; 4 workers, 8 explanations; then the predictor is well again."""
    explainer, _ = servers.explainer(
        "explainer-deadlines",
        proxy.url.split("://")[1],
        [SHAP],
        f"--explain_timeout_seconds={timeout_s:g}",
        "--explain_workers=4",
        "--max_waiting_explanations=4",  # four computed, four waiting for a worker: both kinds meet the deadline
    )
    url = f"{explainer}{EXPLAIN}"
    body = {"instances": [ROW], "method": "shap"}
    calls_before = proxy.requests
    proxy.mode = "drip"
    outcomes: list[tuple[int, float]] = []

    def one() -> None:
        began = time.perf_counter()
        status = httpx.post(url, json=body, timeout=120).status_code
        outcomes.append((status, time.perf_counter() - began))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    drip_calls = proxy.requests - calls_before
    proxy.mode = "pass"
    began = time.perf_counter()
    recovered = httpx.post(url, json=body, timeout=120).status_code
    recovery_s = time.perf_counter() - began
    timeouts = metric(explainer, 'glassbox_explainer_timeouts_total{method="shap",model="synthetic"}')
    times = [t for _, t in outcomes]
    within = all(abs(t - timeout_s) <= 0.1 * timeout_s for t in times)
    return {
        "timeout_s": timeout_s,
        "statuses": sorted({s for s, _ in outcomes}),
        "answer_s": [round(t, 2) for t in sorted(times)],
        "predictor_calls_while_dripping": drip_calls,
        "timeouts_counted": timeouts,
        "recovered_status": recovered,
        "recovery_s": round(recovery_s, 2),
        "met": all(s == 504 for s, _ in outcomes) and within and recovered == 200 and recovery_s < 1.0 and drip_calls <= 8 * 1.5,
    }


def shutdown(servers: Servers, proxy: FaultProxy, explanation_s: float) -> dict[str, Any]:
    """Eight explanations of about `explanation_s` in flight (the proxy slows each predictor call), then SIGTERM."""
    explainer, process = servers.explainer(
        "explainer-shutdown",
        proxy.url.split("://")[1],
        [SHAP],
        "--explain_timeout_seconds=60",
        "--explain_workers=8",
    )
    url = f"{explainer}{EXPLAIN}"
    body = {"instances": [ROW], "method": "shap"}
    httpx.post(url, json=body, timeout=60)
    calls = metric(explainer, 'glassbox_explainer_predictor_calls_per_explanation_sum{method="shap",model="synthetic"}')
    proxy.mode, proxy.delay = "slow", explanation_s / max(1.0, calls)
    answers: list[tuple[int, float, float]] = []  # status, seconds, when it came (monotonic)

    def one() -> None:
        began = time.monotonic()
        status = httpx.post(url, json=body, timeout=120).status_code
        answers.append((status, time.monotonic() - began, time.monotonic()))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while metric(explainer, 'glassbox_explainer_running_explanations{model="synthetic"}') < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    unready_after = None
    while time.monotonic() - signalled < 5:
        try:
            ready = httpx.get(f"{explainer}/v2/models/{MODEL}/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            unready_after = time.monotonic() - signalled
            break
        time.sleep(0.02)
    for thread in threads:
        thread.join(120)
    process.wait(120)
    exited = time.monotonic()
    proxy.mode, proxy.delay = "pass", 5.0
    last_answer = max(a[2] for a in answers)
    return {
        "in_flight": 8,
        "explanation_s": sorted(round(a[1], 1) for a in answers),
        "statuses": sorted({a[0] for a in answers}),
        "readiness_failed_after_s": None if unready_after is None else round(unready_after, 2),
        "last_answer_after_s": round(last_answer - signalled, 1),
        "exited_after_s": round(exited - signalled, 1),
        "exited_after_last_answer_s": round(exited - last_answer, 2),
        "exit_code": process.returncode,
        "met": [a[0] for a in answers] == [200] * 8
        and unready_after is not None
        and unready_after < 1
        and exited - last_answer < 2,
    }


def readiness(explainer: str, proxy: FaultProxy) -> dict[str, Any]:
    """The predictor stops answering, then answers again: how soon the explainer's readiness says so."""
    url = f"{explainer}/v2/models/{MODEL}/ready"

    def until(check: Callable[[], bool]) -> float:
        began = time.monotonic()
        while not check() and time.monotonic() - began < 30:
            time.sleep(0.05)
        return time.monotonic() - began

    until(lambda: httpx.get(url).status_code == 200)  # ready to begin with (a probe from an earlier scenario may still be slow)
    proxy.mode = "unavailable"
    down = until(lambda: httpx.get(url).status_code == 503)
    proxy.mode = "pass"
    up = until(lambda: httpx.get(url).status_code == 200)
    return {"not_ready_after_s": round(down, 2), "ready_again_after_s": round(up, 2), "met": down < 30 and up < 30}


def memory(explainer: str, explainer_pid: int, explanations: int) -> dict[str, Any]:
    """RSS of the explainer over `explanations` KernelSHAP explanations in a row (after 50 to warm up)."""
    url = f"{explainer}{EXPLAIN}"
    with httpx.Client(timeout=60) as client:
        for _ in range(50):
            client.post(url, json={"instances": [ROW], "method": "shap"})
        before = rss_bytes(explainer_pid)
        for _ in range(explanations):
            assert client.post(url, json={"instances": [ROW], "method": "shap"}).status_code == 200
    growth = (rss_bytes(explainer_pid) - before) / 2**20
    return {"explanations": explanations, "rss_growth_mb": round(growth, 1), "met": growth < 50}


# --------------------------------------------------------------------------- report


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Reliability ({results['machine']})", ""]
    for name, result in results["scenarios"].items():
        summary = {k: v for k, v in result.items() if k != "per_class"}
        lines += [f"## {name}", "", "```", json.dumps(summary, indent=1), "```", ""]
    (out / "reliability.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="fewer requests in every scenario (a smoke run)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="glassbox-reliability-"))
    manifest = build_tabular(folder)
    deployment = LocalDeployment(manifest, log_dir=folder / "logs", keep_records=False)
    servers = Servers(deployment, folder / "logs")
    proxy: FaultProxy | None = None
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "scenarios": {},
    }
    scenarios = results["scenarios"]

    def report(name: str, result: dict[str, Any]) -> None:
        scenarios[name] = result
        print(
            f"{name}: {'met' if result.get('met', all(r.get('met') for r in result.values() if isinstance(r, dict))) else 'NOT met'}"
        )
        print("  " + json.dumps({k: v for k, v in result.items() if k != "per_class"}), flush=True)

    try:
        predictor_host = deployment.start_predictor()
        proxy = FaultProxy(f"http://{predictor_host}")
        predictor_pid = next(p.process.pid for p in deployment.processes if p.name == "predictor")
        explainer, explainer_process = servers.explainer("explainer", proxy.url.split("://")[1], [SHAP, ANCHORS])
        predictor = deployment.predictor_base
        report("bad input", bad_input(predictor, explainer, predictor_pid, explainer_process.pid, 1000 if args.quick else 10_000))
        report("body limits", body_limits(predictor, explainer, predictor_pid, explainer_process.pid))
        report("batch isolation", batch_isolation(servers, 100 if args.quick else 1000, 10 if args.quick else 100))
        report("overload", overload(explainer, proxy, 3 if args.quick else 10))
        report("deadlines", deadlines(servers, proxy, 3.0))
        report("shutdown", shutdown(servers, proxy, 3.0 if args.quick else 10.0))
        report("readiness", readiness(explainer, proxy))
        report("memory", memory(explainer, explainer_process.pid, 100 if args.quick else 1000))
    finally:
        servers.stop()
        deployment.stop()
        if proxy is not None:
            proxy.close()
    write_report(results, args.out)
    print(f"wrote {args.out / 'reliability.md'} and reliability.json")


if __name__ == "__main__":
    main()
