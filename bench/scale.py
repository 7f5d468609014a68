"""`make scale`: explainer replicas behind a stand-in for Knative, under a burst and two ramps, with the
settings before issue #25 and with the capacity the operator derives now, side by side in one run.

    python bench/scale.py [--out bench/results] [--quick]

Real processes on loopback: one predictor (the tests' synthetic tabular model) and explainer replicas
started and stopped as the autoscaler says, each a `glassbox.explainers.explainer.server` with the
arguments the operator's builders write. In front of them, glassbox_testing.knative plays Knative: the
activator's `containerConcurrency` semantics and the Knative Pod Autoscaler's stable and panic windows,
the windows and tick 5x shorter than Knative's defaults (stable 12 s, panic 1.2 s, tick 0.4 s) so a
60 s ramp can move them; a replica's start is a real process start. The load generator calls the
activator in this process; every hop from it to a replica is real HTTP.

Settings compared:
- before: what the operator wrote before #25: no containerConcurrency (Knative targets its default of 100
  in flight per replica), four workers, nothing admitted to wait (a fifth request got 503 at once);
- now: what the builders write now under Knative (containerConcurrency, scaleTarget, the explainer's
  workers and waiting room), read from `build_explainer_isvc` itself.

Scenarios: 24 AnchorTabular requests at once; a ramp from 0 to 10x one replica's measured capacity over
60 s (20 s with --quick); the same ramp with a predictor that turns slow (+10 ms a call) a third of the
way in. Also: the throughput of one replica against two on this machine (worker processes, #25 item 3).
Writes scale.json, scale.md and scale.png to --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from glassbox.contract.api import ExplainerFit, MethodType
from glassbox.contract.wire import EXPLAINER_SPEC_ENV
from glassbox.demo import prepare
from glassbox.local import LocalDeployment, free_port, read_manifest
from glassbox.operator.builders import OperatorConfig, Parent, build_explainer_isvc
from glassbox.operator.kserve_addressing import PredictTarget
from glassbox_testing.dataplane import FaultProxy
from glassbox_testing.knative import Activator, Answer, KpaSettings, Replica, autoscale

HERE = Path(__file__).resolve().parent
# The demo's model (`glassbox demo`): breast-cancer diagnoses, 30 features, AnchorTabular at precision 0.95.
MODEL = "breast-cancer"
PATH = f"/v1/models/{MODEL}:explain"
# Knative's windows and tick, this many times shorter.
TIME_SCALE = 5.0
# Replicas beyond this machine's cores would only share them (and starting one costs a core for ~20 s).
MAX_REPLICAS = max(2, os.cpu_count() or 2)
# An anchor search here makes hundreds of predictor calls, most of them one after another.
SLOW_PREDICTOR_SECONDS = 0.01


@dataclass(frozen=True)
class Setting:
    name: str
    container_concurrency: int
    target: float
    flags: list[str]
    revision_timeout: float


def demo_manifest(folder: Path) -> Path:
    """The demo's model and data, its explainer with today's defaults (the demo gives it a 120 s timeout)."""
    path, _, _ = prepare(folder)
    manifest = yaml.safe_load(path.read_text())
    manifest["spec"]["explainer"].pop("timeoutSeconds", None)
    manifest["spec"].pop("detector", None)
    manifest["spec"]["graph"] = {"routes": ["predict", "explain"]}
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def settings_of(manifest: Path) -> list[Setting]:
    """Before #25, and what the builders write now under Knative (Serverless)."""
    name, spec = read_manifest(manifest)
    target = PredictTarget("http://predictor.ml.svc.cluster.local", MODEL, spec.predictor.protocol_to_deploy)
    component = build_explainer_isvc(Parent(name, "ml", "u"), spec, target, OperatorConfig())["spec"]["predictor"]
    args = component["containers"][0]["args"]
    now_flags = [a for a in args if a.startswith(("--explain_workers=", "--max_waiting_explanations="))]
    timeout = float(component["timeout"])
    return [
        Setting("before", 0, 100.0, ["--explain_workers=4", "--max_waiting_explanations=0"], timeout),
        Setting("now", int(component["containerConcurrency"]), float(component["scaleTarget"]), now_flags, timeout),
    ]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


class Replicas:
    """Explainer processes, started by local mode with a setting's flags against a predictor (ready when
    KServe's probe says so) and each stopped on its own."""

    def __init__(self, deployment: LocalDeployment):
        self.deployment = deployment
        self.count = 0

    def start(self, predictor_host: str, flags: list[str]) -> Replica:
        self.count += 1
        port = free_port()
        command, env = self.deployment.explainer_command(port, predictor_host)
        explainer = self.deployment.spec.explainer
        anchors = [m for m in explainer.methods if m.type is MethodType.AnchorTabular]
        env[EXPLAINER_SPEC_ENV] = ExplainerFit(reference_data=explainer.reference_data, methods=anchors).model_dump_json(
            by_alias=True, exclude_none=True
        )
        started = self.deployment.spawn(f"explainer-{self.count}", [*command, *flags], env, f"http://127.0.0.1:{port}")
        process = started.process

        def stop() -> None:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()

        try:
            self.deployment.wait_ready(started, f"/v2/models/{MODEL}/ready")
        except BaseException:
            stop()
            raise
        return Replica(started.url, stop, ready=True)


def held_out_rows(count: int = 64) -> list[list[float]]:
    """Patients the scenarios ask about, in a fixed order (the demo's data; the first rows of each class alternate)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return [[float(v) for v in row] for row in data.data[::7][:count]]


ROWS = held_out_rows()


def body(i: int) -> bytes:
    return json.dumps({"instances": [ROWS[i % len(ROWS)]], "method": "anchors"}).encode()


async def run_scenario(
    setting: Setting,
    replicas: Replicas,
    predictor_host: str,
    arrivals: list[float],
    after_start: Callable[[float], Coroutine[Any, Any, None]] | None = None,
) -> dict[str, Any]:
    """One replica ready, then requests at `arrivals` (seconds from the start) through the activator while
    the autoscaler runs; every answer, and the replicas over time."""
    activator = Activator(setting.container_concurrency, setting.revision_timeout)
    kpa = KpaSettings(target=setting.target, max_replicas=MAX_REPLICAS).scaled(TIME_SCALE)
    first = await asyncio.to_thread(replicas.start, predictor_host, setting.flags)
    activator.replicas.append(first)
    started_at: list[float] = []

    async def start_replica() -> Replica:
        began = time.monotonic()
        replica = await asyncio.to_thread(replicas.start, predictor_host, setting.flags)
        started_at.append(time.monotonic() - began)
        return replica

    stop = asyncio.Event()
    timeline: list[tuple[float, int, int, float]] = []
    began = time.monotonic()
    scaler = asyncio.create_task(autoscale(activator, kpa, start_replica, timeline, stop, began))
    side = asyncio.create_task(after_start(began)) if after_start else None

    async def one(i: int, at: float) -> tuple[float, Answer]:
        await asyncio.sleep(max(0.0, began + at - time.monotonic()))
        return at, await activator.send(PATH, body(i))

    answers = await asyncio.gather(*(one(i, at) for i, at in enumerate(arrivals)))
    stop.set()
    await scaler
    if side is not None:
        side.cancel()
    for replica in list(activator.replicas):
        await asyncio.to_thread(replica.stop)
    await activator.close()
    statuses: dict[str, int] = {}
    for _, answer in answers:
        statuses[str(answer.status)] = statuses.get(str(answer.status), 0) + 1
    answered = [a.seconds for _, a in answers if a.status == 200]
    return {
        "sent": len(answers),
        "answered": len(answered),
        "statuses": statuses,
        "refused_503": statuses.get("503", 0),
        "timed_out_504": statuses.get("504", 0),
        "p50_s": percentile(answered, 0.5),
        "p99_s": percentile(answered, 0.99),
        "retry_after_seen": sorted({a.retry_after for _, a in answers if a.retry_after}),
        "most_replicas": max((total for _, _, total, _ in timeline), default=1),
        "replica_start_s": [round(s, 1) for s in started_at],
        "timeline": timeline,
        "answers": [(round(at, 2), a.status, round(a.seconds, 3)) for at, a in answers],
    }


async def closed_loop(urls: list[str], clients: int, seconds: float) -> float:
    """Explanations per second from `clients` that each send the next as soon as one is answered, spread over `urls`."""
    done = 0
    until = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120) as client:

        async def loop(k: int) -> None:
            nonlocal done
            i = k
            while time.monotonic() < until:
                response = await client.post(
                    urls[k % len(urls)] + PATH, content=body(i), headers={"content-type": "application/json"}
                )
                if response.status_code == 200:
                    done += 1
                i += clients

        began = time.monotonic()
        await asyncio.gather(*(loop(k) for k in range(clients)))
        return done / (time.monotonic() - began)


async def unloaded_seconds(url: str) -> float:
    """The median time of one explanation with nothing else running (the rows the scenarios send)."""
    times = []
    async with httpx.AsyncClient(timeout=120) as client:
        for i in range(12):
            began = time.monotonic()
            response = await client.post(url + PATH, content=body(i), headers={"content-type": "application/json"})
            response.raise_for_status()
            times.append(time.monotonic() - began)
    return float(percentile(times, 0.5) or 0.0)


def ramp(peak_per_second: float, seconds: float) -> list[float]:
    """Arrival times of a rate rising evenly from 0 to `peak_per_second` over `seconds`."""
    total = int(peak_per_second * seconds / 2)
    return [(2 * i * seconds / peak_per_second) ** 0.5 for i in range(total)]


def compact_json(results: dict[str, Any]) -> str:
    """Indented JSON with each innermost list (an answer, a tick of the timeline) on one line."""
    text = json.dumps(results, indent=1)
    return re.sub(r"\[\s*([^\[\]{}]*?)\s*\]", lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text) + "\n"


def write_report(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale.json").write_text(compact_json(results))
    unloaded = results["unloaded_s"]
    lines = [
        f"# Scale-out ({results['machine']})",
        "",
        f"One unloaded AnchorTabular explanation: {unloaded:.2f} s. One replica's capacity: "
        f"{results['one_replica_per_s']:.2f} explanations/s; two replicas (two processes): {results['two_replicas_per_s']:.2f}/s.",
        f"Ramp peak: {results['ramp_peak_per_s']:.1f} requests/s over {results['ramp_seconds']:.0f} s. Replicas at most "
        f"{MAX_REPLICAS}; Knative's windows {TIME_SCALE:g}x shorter.",
        "",
        "| scenario | setting | sent | answered | refused (503) | 504 | p50 s | p99 s | p99 / unloaded | most replicas |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, by_setting in results["scenarios"].items():
        for setting, r in by_setting.items():
            p50 = f"{r['p50_s']:.2f}" if r["p50_s"] is not None else "-"
            p99 = f"{r['p99_s']:.2f}" if r["p99_s"] is not None else "-"
            ratio = f"{r['p99_s'] / unloaded:.1f}x" if r["p99_s"] is not None else "-"
            lines.append(
                f"| {scenario} | {setting} | {r['sent']} | {r['answered']} | {r['refused_503']} | {r['timed_out_504']} | "
                f"{p50} | {p99} | {ratio} | {r['most_replicas']} |"
            )
    (out / "scale.md").write_text("\n".join(lines) + "\n")
    plot(results, out / "scale.png")


def plot(results: dict[str, Any], path: Path) -> None:
    """Per scenario: ready replicas over time (solid) and requests in flight or buffered (thin, right axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(results["scenarios"])
    figure, axes = plt.subplots(len(scenarios), 1, figsize=(8, 3 * len(scenarios)), squeeze=False)
    colours = {"before": "tab:orange", "now": "tab:blue"}
    for row, scenario in enumerate(scenarios):
        axis = axes[row][0]
        load = axis.twinx()
        for setting, r in results["scenarios"][scenario].items():
            times = [t for t, *_ in r["timeline"]]
            colour = colours.get(setting, "tab:gray")
            axis.step(
                times,
                [ready for _, ready, _, _ in r["timeline"]],
                where="post",
                color=colour,
                linewidth=2,
                label=f"{setting}: ready replicas",
            )
            load.plot(
                times,
                [c for *_, c in r["timeline"]],
                color=colour,
                linewidth=0.8,
                alpha=0.6,
                label=f"{setting}: requests in flight or buffered",
            )
        axis.set_title(scenario)
        axis.set_ylabel("replicas")
        axis.set_ylim(0, MAX_REPLICAS + 0.5)
        load.set_ylabel("requests")
        handles = axis.get_legend_handles_labels()[0] + load.get_legend_handles_labels()[0]
        axis.legend(handles=handles, loc="upper right", fontsize=7)
    axes[-1][0].set_xlabel("seconds since the first request")
    figure.tight_layout()
    figure.savefig(path, dpi=90)


def replica_capacity(replicas: Replicas, predictor_host: str, setting: Setting) -> dict[str, float]:
    """One replica's unloaded time and capacity, and two replicas' (two processes on this machine's cores)."""
    pair = [replicas.start(predictor_host, setting.flags) for _ in range(2)]
    try:
        workers = int(setting.flags[0].split("=")[1])
        return {
            "unloaded_s": asyncio.run(unloaded_seconds(pair[0].url)),
            "one_replica_per_s": asyncio.run(closed_loop([pair[0].url], workers, 15.0)),
            "two_replicas_per_s": asyncio.run(closed_loop([r.url for r in pair], 2 * workers, 15.0)),
        }
    finally:
        for replica in pair:
            replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="a 20 s ramp instead of 60 s (a smoke run)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="glassbox-scale-"))
    manifest = demo_manifest(folder)
    deployment = LocalDeployment(manifest, log_dir=folder / "logs", keep_records=False)
    replicas = Replicas(deployment)
    ramp_seconds = 20.0 if args.quick else 60.0
    proxy: FaultProxy | None = None
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "ramp_seconds": ramp_seconds,
        "scenarios": {},
    }
    try:
        predictor_host = deployment.start_predictor()
        proxy = FaultProxy(f"http://{predictor_host}")
        settings = settings_of(manifest)
        results["settings"] = {
            s.name: {"containerConcurrency": s.container_concurrency, "target": s.target, "flags": s.flags} for s in settings
        }
        results.update(replica_capacity(replicas, predictor_host, settings[1]))
        peak = 10 * results["one_replica_per_s"]
        results["ramp_peak_per_s"] = peak
        print(json.dumps({k: v for k, v in results.items() if k != "scenarios"}), flush=True)

        async def slow_later(began: float) -> None:
            assert proxy is not None
            await asyncio.sleep(max(0.0, began + ramp_seconds / 3 - time.monotonic()))
            proxy.delay, proxy.mode = SLOW_PREDICTOR_SECONDS, "slow"

        proxied = proxy.url.split("://")[1]
        for scenario, arrivals, host, side in (
            ("burst of 24", [0.0] * 24, predictor_host, None),
            ("ramp to 10x", ramp(peak, ramp_seconds), predictor_host, None),
            ("ramp, predictor turns slow", ramp(peak, ramp_seconds), proxied, slow_later),
        ):
            for setting in settings:
                proxy.mode = "pass"
                result = asyncio.run(run_scenario(setting, replicas, host, arrivals, side))
                results["scenarios"].setdefault(scenario, {})[setting.name] = result
                summary = {k: v for k, v in result.items() if k not in ("timeline", "answers")}
                print(f"{scenario} / {setting.name}: {json.dumps(summary)}", flush=True)
    finally:
        deployment.stop()
        if proxy is not None:
            proxy.close()
    write_report(results, args.out)
    print((args.out / "scale.md").read_text())
    print(f"wrote {args.out / 'scale.md'}, scale.json and scale.png")


if __name__ == "__main__":
    main()
