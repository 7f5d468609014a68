"""Explanation jobs: an explanation asked for now and answered later, kept in the records store so that it
outlives the request, the replica that took it, and a restart.

A job is queued with the request it will run; a replica claims it (running, with a lease it renews while it
computes), and finishes it done (its record's id), failed (why) or finds it cancelled. A claim is a
compare-and-set on the job's row, so two replicas never run one job at once; PostgreSQL's SKIP LOCKED lets
a claim pass over rows another replica is claiming. A running job whose lease ran out (its replica stopped)
is claimed again, up to `max_attempts` runs in all, then failed with the reason.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from glassbox.explainers.records.errors import RecordQueryError
from glassbox.explainers.records.store import SqlRecords, check_record_id, new_record_id

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})
COLUMNS = ("id", "model", "created", "state", "request", "owner", "lease_until", "attempts", "reason", "record_id")
# How many of the oldest claimable jobs one claim looks at before it finds one no other replica took.
CANDIDATES = 8


@dataclass(frozen=True)
class Job:
    model: str
    request: dict[str, Any]
    id: str = field(default_factory=new_record_id)
    created: float = field(default_factory=time.time)
    state: str = QUEUED
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    reason: str | None = None
    record_id: str | None = None

    def row(self) -> tuple[Any, ...]:
        values = {**self.__dict__, "request": json.dumps(self.request)}
        return tuple(values[column] for column in COLUMNS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        values = dict(zip(COLUMNS, row, strict=True))
        values["request"] = json.loads(values["request"])
        return cls(**values)


class JobQueue:
    """One model's jobs in a records store (SQLite or PostgreSQL), shared by every replica that opens it."""

    def __init__(self, store: SqlRecords, model: str, max_attempts: int = 2):
        self.store = store
        self.model = model
        self.max_attempts = max_attempts

    def submit(self, request: dict[str, Any], job_id: str | None = None) -> Job:
        job = Job(model=self.model, request=request, id=job_id or new_record_id())
        with self.store.transaction() as cursor:
            marks = ", ".join("?" for _ in COLUMNS)
            cursor.execute(self.store.sql(f"INSERT INTO explanation_jobs ({', '.join(COLUMNS)}) VALUES ({marks})"), job.row())
        return job

    def get(self, job_id: str) -> Job | None:
        with self.store.transaction() as cursor:
            cursor.execute(
                self.store.sql(f"SELECT {', '.join(COLUMNS)} FROM explanation_jobs WHERE model = ? AND id = ?"),
                (self.model, check_record_id(job_id)),
            )
            row = cursor.fetchone()
        return None if row is None else Job.from_row(tuple(row))

    def claim(self, owner: str, lease_seconds: float, now: float | None = None) -> Job | None:
        """The oldest job this replica may run now, marked running with a lease; None when there is none.
        A running job whose lease passed after its last allowed attempt is failed on the way."""
        now = time.time() if now is None else now
        with self.store.transaction() as cursor:
            cursor.execute(
                self.store.sql(
                    f"SELECT {', '.join(COLUMNS)} FROM explanation_jobs WHERE model = ? "
                    "AND (state = ? OR (state = ? AND lease_until < ?)) ORDER BY created LIMIT ?" + self.store.skip_locked
                ),
                (self.model, QUEUED, RUNNING, now, CANDIDATES),
            )
            candidates = [Job.from_row(tuple(row)) for row in cursor.fetchall()]
        for job in candidates:
            if job.state == RUNNING and job.attempts >= self.max_attempts:
                self._set_if(
                    job,
                    state=FAILED,
                    reason=f"its replica stopped while running it, {job.attempts} times; ask again to run it again",
                )
                continue
            lease = now + lease_seconds
            if self._set_if(job, state=RUNNING, owner=owner, lease_until=lease, attempts=job.attempts + 1):
                return Job(
                    **{**job.__dict__, "state": RUNNING, "owner": owner, "lease_until": lease, "attempts": job.attempts + 1}
                )
        return None

    def renew(self, job: Job, lease_seconds: float) -> bool:
        """Extend the lease of a job this replica runs; False when it is no longer this replica's (cancelled,
        or claimed again after the lease ran out): then its work should stop."""
        return self._set_if(job, lease_until=time.time() + lease_seconds)

    def finish(self, job: Job, record_id: str | None = None, reason: str | None = None) -> bool:
        """Done with its record's id, or failed with a reason; False when the job was no longer this replica's."""
        state = DONE if reason is None else FAILED
        return self._set_if(job, state=state, record_id=record_id, reason=reason, owner=job.owner, lease_until=None)

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (its replica finds out at its next renewal); a finished one stays as it is."""
        found = self.get(job_id)
        if found is None:
            raise RecordQueryError(f"model {self.model!r} has no job {job_id!r}", 404)
        if found.state in FINISHED:
            return found
        if self._set_if(found, state=CANCELLED, reason="cancelled by the client", lease_until=None):
            return Job(**{**found.__dict__, "state": CANCELLED, "reason": "cancelled by the client", "lease_until": None})
        return self.cancel(job_id)  # it changed meanwhile (claimed, finished): decide on what it is now

    def _set_if(self, job: Job, **changes: Any) -> bool:
        """Change the job's row only if it is still as `job` read it (state, owner, attempts): compare-and-set."""
        assignments = ", ".join(f"{column} = ?" for column in changes)
        owner_test = "owner IS NULL" if job.owner is None else "owner = ?"
        values = (*changes.values(), self.model, job.id, job.state, *(() if job.owner is None else (job.owner,)), job.attempts)
        with self.store.transaction() as cursor:
            cursor.execute(
                self.store.sql(
                    f"UPDATE explanation_jobs SET {assignments} WHERE model = ? AND id = ? AND state = ? AND {owner_test} "
                    "AND attempts = ?"
                ),
                values,
            )
            return bool(cursor.rowcount == 1)
