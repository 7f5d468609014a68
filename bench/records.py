"""Explanation records, measured: an AnchorTabular explanation of the demo's model served from its record
against computed (`fresh`), over loopback HTTP in local mode; and the cost of one record's write on the
computed path, on a SQLite file and on a real PostgreSQL (started here as the tests start it).

    python bench/records.py [--out bench/results] [--quick]

Goals (issue #27): served from its record at least 100x faster than computed; a record's write p99
under 5 ms on SQLite and under 10 ms on PostgreSQL. Writes bench/results/records.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from glassbox.demo import prepare
from glassbox.explainers.records.store import PostgresRecords, Record, RecordQuery, SqliteRecords, SqlRecords
from glassbox.local import LocalDeployment
from glassbox_testing.postgres import LocalPostgres

HERE = Path(__file__).resolve().parent


def percentile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def served_against_computed(folder: Path, repeats: int) -> dict[str, Any]:
    """Median and p99 seconds of the same explanation computed (`fresh`) and served from its record."""
    manifest, rows, _ = prepare(folder)
    store = folder / "records.sqlite"
    with LocalDeployment(manifest, log_dir=folder / "logs", extra_explainer_args=[f"--records_path={store}"]) as deployment:
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
    kept = SqliteRecords(folder / "records.sqlite").query("breast-cancer", RecordQuery(limit=1))
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
        f"Record size: {results['record_bytes']:,} bytes of explanation JSON. Job throughput with two replicas is "
        "not measured yet: jobs are not built.",
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
    finally:
        postgres.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "records.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    (args.out / "records.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
