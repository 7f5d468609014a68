"""Explanation records, measured: an AnchorTabular explanation of the demo's model served from its record
against computed (`fresh`), over loopback HTTP in local mode; and the cost of one record's write on the
computed path, on a SQLite file and on a real PostgreSQL (started here as the tests start it).

    python bench/records.py [--out bench/results] [--quick]

Then job throughput: the same explanation of 40 different patients asked as jobs at once, run by one
and then by two explainer replicas sharing one PostgreSQL store (each replica runs one job at a time,
its default).

Goals (issue #27): served from its record at least 100x faster than computed; a record's write p99
under 5 ms on SQLite and under 10 ms on PostgreSQL. Writes bench/results/records.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from glassbox.contract.api import ExplainerFit, MethodType
from glassbox.contract.wire import EXPLAINER_SPEC_ENV, RECORDS_POSTGRES_ENV
from glassbox.demo import prepare
from glassbox.explainers.records.store import PostgresRecords, Record, RecordQuery, SqliteRecords, SqlRecords
from glassbox.local import LocalDeployment, free_port
from glassbox_testing.postgres import LocalPostgres

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def served_against_computed(folder: Path, repeats: int) -> dict[str, Any]:
    """Median and p99 seconds of the same explanation computed (`fresh`) and served from its record."""
    manifest, rows, _ = prepare(folder)
    store = folder / "records.sqlite"
    with LocalDeployment(manifest, log_dir=folder / "logs", records_path=store) as deployment:
        url = deployment.urls()["explain"]
        body = {"instances": [rows[0].tolist()], "method": "anchors"}
        with httpx.Client(timeout=120) as client:
            assert client.post(url, json=body).status_code == 200  # the record the served requests find
            timings: dict[str, list[float]] = {"computed": [], "served": []}
            for _ in range(repeats):
                for kind, extra in (("computed", {"fresh": True}), ("served", {})):
                    began = time.perf_counter()
                    answer = client.post(url, json={**body, **extra})
                    timings[kind].append(time.perf_counter() - began)
                    assert answer.status_code == 200 and answer.json()["record"]["reused"] is (kind == "served"), answer.text
    summary = {kind: {"median_s": statistics.median(t), "p99_s": percentile(t, 0.99), "n": len(t)} for kind, t in timings.items()}
    summary["speedup_median"] = summary["computed"]["median_s"] / summary["served"]["median_s"]
    return summary


def example_explanation(folder: Path) -> dict[str, Any]:
    """A realistic record body: the demo's anchors explanation, as the explainer keeps it."""
    store = SqliteRecords(folder / "records.sqlite")
    kept = store.query("breast-cancer", RecordQuery(limit=1))
    store.close()
    assert kept and kept[0].explanation is not None
    return kept[0].explanation


def write_cost(store: SqlRecords, explanation: dict[str, Any], writes: int) -> dict[str, float]:
    """Seconds per record write (one transaction each), as the computed path pays it."""
    seconds = []
    for i in range(writes):
        record = Record(
            model="bench",
            method="anchors",
            settings={"type": "AnchorTabular", "seed": 0},
            input_digest=f"{i:064x}",
            answer_key=f"{i:064x}",
            outcome="ok",
            seconds=1.0,
            explanation=explanation,
        )
        began = time.perf_counter()
        store.write(record)
        seconds.append(time.perf_counter() - began)
    return {"median_ms": statistics.median(seconds) * 1000, "p99_ms": percentile(seconds, 0.99) * 1000, "n": writes}


def job_throughput(folder: Path, postgres: LocalPostgres, jobs: int) -> dict[str, Any]:
    """Jobs done per second by one and by two replicas sharing a PostgreSQL store, `jobs` submitted at once
    (to the first replica; their states read from each replica in turn: any replica answers any job)."""
    manifest, rows, _ = prepare(folder / "jobs")
    deployment = LocalDeployment(manifest, log_dir=folder / "jobs" / "logs", keep_records=False)
    answers: dict[str, Any] = {}
    try:
        predictor_host = deployment.start_predictor()
        for replicas in (1, 2):
            url = postgres.create_database(f"jobs_{replicas}")
            bases = [start_replica(deployment, predictor_host, url, f"{replicas}-{i}") for i in range(replicas)]
            # Different patients (a row scaled a little each time): every job is computed, none found in a record.
            bodies = [
                {"instances": [(rows[0] * (1 + i * 1e-3)).tolist()], "method": "anchors", "async": True} for i in range(jobs)
            ]
            began = time.perf_counter()
            with httpx.Client(timeout=60) as client:
                pending = [
                    client.post(bases[0] + "/v1/models/breast-cancer:explain", json=body).headers["location"] for body in bodies
                ]
                polls = 0
                while pending:
                    location = pending.pop(0)
                    polls += 1
                    state = client.get(bases[polls % replicas] + location).json()
                    if state["state"] in ("queued", "running"):
                        pending.append(location)
                        time.sleep(0.05)
                    else:
                        assert state["state"] == "done", state
            seconds = time.perf_counter() - began
            answers[str(replicas)] = {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}
            for process in [p for p in deployment.processes if p.name.startswith("explainer-")]:
                os.killpg(process.process.pid, signal.SIGTERM)
                process.process.wait(60)
                deployment.processes.remove(process)
    finally:
        deployment.stop()
    return answers


def start_replica(deployment: LocalDeployment, predictor_host: str, postgres_url: str, name: str) -> str:
    """One explainer process with the demo's AnchorTabular, its records and jobs in PostgreSQL; its URL when ready."""
    port = free_port()
    command, env = deployment.explainer_command(port, predictor_host)
    explainer = deployment.spec.explainer
    anchors = [m for m in explainer.methods if m.type is MethodType.AnchorTabular]
    env[EXPLAINER_SPEC_ENV] = ExplainerFit(reference_data=explainer.reference_data, methods=anchors).model_dump_json(
        by_alias=True, exclude_none=True
    )
    env[RECORDS_POSTGRES_ENV] = postgres_url
    started = deployment.spawn(f"explainer-{name}", [*command, "--records_postgres=true"], env, f"http://127.0.0.1:{port}")
    deployment.wait_ready(started, "/v2/models/breast-cancer/ready")
    return started.url


def render(results: dict[str, Any]) -> str:
    served = results["served_against_computed"]
    writes = results["write_cost"]
    goals = {
        "served": served["speedup_median"] >= 100,
        "sqlite": writes["sqlite"]["p99_ms"] < 5,
        "postgres": writes["postgres"]["p99_ms"] < 10,
    }
    lines = [
        f"# Explanation records ({results['when']})",
        "",
        f"Machine: {results['machine']}. Command: `python bench/records.py`. The demo's breast cancer model, "
        "AnchorTabular of one held-out patient over loopback HTTP (local mode).",
        "",
        "| measure | median | p99 | goal | met |",
        "| --- | ---: | ---: | --- | --- |",
        f"| explanation computed (`fresh`), {served['computed']['n']} times | {served['computed']['median_s'] * 1000:.0f} ms "
        f"| {served['computed']['p99_s'] * 1000:.0f} ms | | |",
        f"| the same served from its record, {served['served']['n']} times | {served['served']['median_s'] * 1000:.1f} ms "
        f"| {served['served']['p99_s'] * 1000:.1f} ms | {served['speedup_median']:.0f}x faster (median); goal 100x | "
        f"{'yes' if goals['served'] else 'no'} |",
        f"| a record's write, SQLite file, {writes['sqlite']['n']} writes | {writes['sqlite']['median_ms']:.2f} ms "
        f"| {writes['sqlite']['p99_ms']:.2f} ms | p99 < 5 ms | {'yes' if goals['sqlite'] else 'no'} |",
        f"| a record's write, PostgreSQL 15 on loopback, {writes['postgres']['n']} writes | {writes['postgres']['median_ms']:.2f} ms "
        f"| {writes['postgres']['p99_ms']:.2f} ms | p99 < 10 ms | {'yes' if goals['postgres'] else 'no'} |",
        "",
        f"Record size: {results['record_bytes']:,} bytes of explanation JSON.",
        "",
        "| jobs at once, AnchorTabular | replicas | seconds until all done | jobs per second |",
        "| ---: | ---: | ---: | ---: |",
        *[
            f"| {cell['jobs']} | {replicas} | {cell['seconds']:.1f} | {cell['jobs_per_s']:.2f} |"
            for replicas, cell in results["jobs"].items()
        ],
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    args = parser.parse_args()
    repeats, writes = (5, 200) if args.quick else (30, 2000)
    folder = Path(tempfile.mkdtemp(prefix="glassbox-records-"))
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    results["served_against_computed"] = served_against_computed(folder, repeats)
    explanation = example_explanation(folder)
    results["record_bytes"] = len(json.dumps(explanation))
    postgres = LocalPostgres()
    try:
        postgres.start()
        stores: dict[str, SqlRecords] = {
            "sqlite": SqliteRecords(folder / "write-cost.sqlite"),
            "postgres": PostgresRecords(postgres.create_database("bench_records")),
        }
        results["write_cost"] = {name: write_cost(store, explanation, writes) for name, store in stores.items()}
        for store in stores.values():
            store.close()
        results["jobs"] = job_throughput(folder, postgres, 10 if args.quick else 40)
    finally:
        postgres.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "records.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    (args.out / "records.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
