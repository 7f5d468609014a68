"""Explanation jobs in the records store, on SQLite and on a real PostgreSQL: queued, claimed by one replica
only, renewed, finished, cancelled, and claimed again (then failed) when the replica running them stopped."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from glassbox.explainers.records.errors import RecordQueryError
from glassbox.explainers.records.jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobQueue
from glassbox.explainers.records.store import PostgresRecords, SqliteRecords, SqlRecords
from glassbox_testing.postgres import LocalPostgres

REQUEST = {"instances": [[0.1, 0.2]], "method": "anchors"}


def test_a_job_is_queued_claimed_renewed_and_finished(records_store: SqlRecords) -> None:
    jobs = JobQueue(records_store, "credit")
    job = jobs.submit(REQUEST)
    assert jobs.get(job.id) == job and job.state == QUEUED
    claimed = jobs.claim("replica-a", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id and claimed.state == RUNNING and claimed.attempts == 1
    assert claimed.request == REQUEST
    assert jobs.claim("replica-b", lease_seconds=30) is None, "a running job with a live lease is no one else's"
    assert jobs.renew(claimed, lease_seconds=30)
    assert jobs.finish(claimed, record_id="a" * 32)
    done = jobs.get(job.id)
    assert done is not None and done.state == DONE and done.record_id == "a" * 32
    assert JobQueue(records_store, "another-model").get(job.id) is None


def test_jobs_are_claimed_oldest_first_and_a_failure_keeps_its_reason(records_store: SqlRecords) -> None:
    jobs = JobQueue(records_store, "credit")
    first, second = jobs.submit(REQUEST), jobs.submit({**REQUEST, "method": "shap"})
    claimed = jobs.claim("replica-a", 30)
    assert claimed is not None and claimed.id == first.id
    assert jobs.finish(claimed, reason="the predictor answered garbage")
    failed = jobs.get(first.id)
    assert failed is not None and failed.state == FAILED and failed.reason == "the predictor answered garbage"
    next_one = jobs.claim("replica-a", 30)
    assert next_one is not None and next_one.id == second.id


def test_a_job_whose_replica_stopped_is_run_again_then_failed_with_the_reason(records_store: SqlRecords) -> None:
    jobs = JobQueue(records_store, "credit", max_attempts=2)
    job = jobs.submit(REQUEST)
    first = jobs.claim("replica-a", lease_seconds=10, now=1000.0)
    assert first is not None
    assert jobs.claim("replica-b", lease_seconds=10, now=1005.0) is None, "the lease still holds"
    again = jobs.claim("replica-b", lease_seconds=10, now=2000.0)
    assert again is not None and again.owner == "replica-b" and again.attempts == 2
    assert not jobs.renew(first, 10), "replica-a lost it: its work should stop"
    assert not jobs.finish(first, record_id="b" * 32), "and its answer is not the job's"
    assert jobs.claim("replica-c", lease_seconds=10, now=3000.0) is None
    failed = jobs.get(job.id)
    assert failed is not None and failed.state == FAILED and "stopped while running it, 2 times" in (failed.reason or "")


def test_cancelling_a_queued_or_running_job_and_a_finished_one(records_store: SqlRecords) -> None:
    jobs = JobQueue(records_store, "credit")
    queued = jobs.submit(REQUEST)
    assert jobs.cancel(queued.id).state == CANCELLED
    assert jobs.claim("replica-a", 30) is None, "a cancelled job is not run"
    running_job = jobs.submit(REQUEST)
    running = jobs.claim("replica-a", 30)
    assert running is not None and running.id == running_job.id
    assert jobs.cancel(running.id).state == CANCELLED
    assert not jobs.renew(running, 30) and not jobs.finish(running, record_id="c" * 32)
    finished_job = jobs.submit(REQUEST)
    finished = jobs.claim("replica-a", 30)
    assert finished is not None and jobs.finish(finished, record_id="d" * 32)
    assert jobs.cancel(finished_job.id).state == DONE, "a finished job stays as it is"
    with pytest.raises(RecordQueryError, match="has no job") as missing:
        jobs.cancel("0" * 32)
    assert missing.value.status == 404
    with pytest.raises(RecordQueryError, match="is not a record id"):
        jobs.get("../../etc")


def test_replicas_claiming_at_once_never_run_a_job_twice(postgres: LocalPostgres, tmp_path: Path) -> None:
    """Four replicas, each with its own connection to one PostgreSQL, claim 40 jobs as fast as they can."""
    url = postgres.create_database("claims")
    stores = [PostgresRecords(url) for _ in range(4)]
    for _ in range(40):
        JobQueue(stores[0], "credit").submit(REQUEST)
    claimed: dict[str, list[str]] = {f"replica-{i}": [] for i in range(4)}

    def claim_all(index: int) -> None:
        jobs = JobQueue(stores[index], "credit")
        while (job := jobs.claim(f"replica-{index}", 60)) is not None:
            claimed[f"replica-{index}"].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [job_id for ids in claimed.values() for job_id in ids]
    assert len(every) == 40 and len(set(every)) == 40
    for store in stores:
        store.close()


def test_two_processes_sharing_a_sqlite_file_never_run_a_job_twice(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    stores = [SqliteRecords(path), SqliteRecords(path)]
    for _ in range(30):
        JobQueue(stores[0], "credit").submit(REQUEST)
    claimed: list[list[str]] = [[], []]

    def claim_all(index: int) -> None:
        jobs = JobQueue(stores[index], "credit")
        while (job := jobs.claim(f"replica-{index}", 60)) is not None:
            claimed[index].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = claimed[0] + claimed[1]
    assert len(every) == 30 and len(set(every)) == 30
    for store in stores:
        store.close()
