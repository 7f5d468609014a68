"""Where the explainer runs its jobs: a few slots on the server's event loop, each claiming the oldest job
of its model from the records store whenever a worker is free (so jobs never crowd out the explanations
asked for now), running it as any explanation runs, with a deadline of its own, and finishing it with its
record's id, or failed with the reason.

While a job runs its lease is renewed; a renewal that finds the job no longer this replica's (cancelled,
or claimed again after this replica stalled past its lease) cancels the computation, whose worker stops
at its next predictor call. A replica that stops leaves its running jobs to be claimed again when their
leases run out: no job is silently lost.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from glassbox.contract.server_args import ExplainerServerArgs
from glassbox.explainers.records.errors import RecordStoreError
from glassbox.explainers.records.jobs import Job, JobQueue

log = logging.getLogger(__name__)
LEASE_SECONDS: float = ExplainerServerArgs.model_fields["job_lease_seconds"].default
IDLE_POLL_SECONDS = 0.5

RunJob = Callable[[dict[str, Any], dict[str, str]], Coroutine[Any, Any, dict[str, Any]]]


def replica_identity() -> str:
    """Who holds a job's lease: the pod's name (its hostname) and this process's own suffix."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


def failure_reason(error: BaseException) -> str:
    """What a failed job says: the HTTP error's message as a client would have read it, or the error."""
    detail = getattr(error, "detail", None)
    status = getattr(error, "status_code", None)
    if detail is not None and status is not None:
        return f"{status}: {detail}"
    return f"{type(error).__name__}: {error}"[:2000]


class JobRunner:
    def __init__(
        self,
        queue: JobQueue,
        run: RunJob,
        may_start: Callable[[], bool],
        slots: int = 1,
        lease_seconds: float = LEASE_SECONDS,
        idle_poll_seconds: float = IDLE_POLL_SECONDS,
    ):
        self.queue = queue
        self.run = run
        self.may_start = may_start
        self.slots = slots
        self.lease_seconds = lease_seconds
        self.idle_poll_seconds = idle_poll_seconds
        self.owner = replica_identity()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the slots on the running event loop (the server's, at its start-up)."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._slot(), name=f"job-slot-{i}") for i in range(self.slots)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _slot(self) -> None:
        while True:
            job = None
            if self.may_start():
                try:
                    job = await asyncio.to_thread(self.queue.claim, self.owner, self.lease_seconds)
                except RecordStoreError as error:
                    log.warning("could not claim a job: %s", error)
            if job is None:
                await asyncio.sleep(self.idle_poll_seconds)
                continue
            await self.run_one(job)

    async def run_one(self, job: Job) -> None:
        log.info("running job %s (attempt %d)", job.id, job.attempts)
        work: asyncio.Task[dict[str, Any]] = asyncio.create_task(self.run(job.request, {}))
        while not work.done():
            done, _ = await asyncio.wait({work}, timeout=self.lease_seconds / 3)
            if done:
                break
            try:
                still_ours = await asyncio.to_thread(self.queue.renew, job, self.lease_seconds)
            except RecordStoreError as error:
                log.warning("could not renew job %s's lease: %s", job.id, error)
                continue
            if not still_ours:
                log.info("job %s is no longer this replica's (cancelled, or claimed again): stopping it", job.id)
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                return
        try:
            answer = work.result()
        except Exception as error:
            await self._finish(job, reason=failure_reason(error))
            return
        record = answer.get("record")
        if isinstance(record, dict) and "id" in record:
            await self._finish(job, record_id=str(record["id"]))
        else:
            await self._finish(job, reason="the explanation was computed, but the records store could not keep it")

    async def _finish(self, job: Job, record_id: str | None = None, reason: str | None = None) -> None:
        try:
            if not await asyncio.to_thread(self.queue.finish, job, record_id, reason):
                log.info("job %s was cancelled or claimed again before it finished; its answer is not the job's", job.id)
        except RecordStoreError as error:  # left running: claimed again when its lease runs out
            log.warning("could not finish job %s: %s", job.id, error)
