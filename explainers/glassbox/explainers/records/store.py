"""Where records live: one table, read and written through a DB-API connection. `SqliteRecords` is the
store of one explainer replica and of local mode (a file, WAL, one writer at a time); the same SQL serves
PostgreSQL when replicas share one store.

Each call is one short transaction. Every failure of the database is raised as RecordStoreError, so the
explainer can answer the explanation anyway and count the failure.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glassbox.explainers.records.errors import RecordQueryError, RecordStoreError
from glassbox.explainers.records.schema import VERSION_TABLE, pending

# What an explanation's record says of how it ended (the explainer's outcomes).
OK = "ok"
COLUMNS = (
    "id",
    "created",
    "model",
    "model_digest",
    "method",
    "settings",
    "input_digest",
    "answer_key",
    "request_id",
    "outcome",
    "seconds",
    "predictor_calls",
    "predictor_rows",
    "explanation",
    "input",
    "explained_model",
    "generation",
)
RECORD_ID = re.compile(r"^[0-9a-f]{32}$")
MOST_PER_PAGE = 1000


def new_record_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Record:
    """One explanation: what identifies its answer, who asked, how it ended, and (when it ended well) the answer."""

    model: str
    method: str
    settings: dict[str, Any]
    input_digest: str
    answer_key: str
    outcome: str
    seconds: float
    model_digest: str | None = None
    request_id: str | None = None
    predictor_calls: int = 0
    predictor_rows: int = 0
    explanation: dict[str, Any] | None = None
    input: Any = None  # only when the spec asks to store inputs: they may be personal data
    # The ExplainedModel (namespace/name) and the generation of its spec the explainer was deployed from.
    explained_model: str | None = None
    generation: int | None = None
    id: str = field(default_factory=new_record_id)
    created: float = field(default_factory=time.time)

    def row(self) -> tuple[Any, ...]:
        values = {
            **self.__dict__,
            "settings": json.dumps(self.settings, sort_keys=True),
            "explanation": None if self.explanation is None else json.dumps(self.explanation),
            "input": None if self.input is None else json.dumps(self.input),
        }
        return tuple(values[column] for column in COLUMNS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Record:
        values = dict(zip(COLUMNS, row, strict=True))
        values["settings"] = json.loads(values["settings"])
        for column in ("explanation", "input"):
            if values[column] is not None:
                values[column] = json.loads(values[column])
        return cls(**values)


@dataclass(frozen=True)
class RecordQuery:
    """Records of one model, newest last, filtered by any of: a time range (unix seconds), the caller's
    request id, the input's digest, the method and the outcome; `after` is the id of the last record of
    the previous page."""

    since: float | None = None
    until: float | None = None
    request_id: str | None = None
    input_digest: str | None = None
    method: str | None = None
    outcome: str | None = None
    limit: int = 100
    after: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MOST_PER_PAGE:
            raise RecordQueryError(f"limit must be between 1 and {MOST_PER_PAGE}, got {self.limit}")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise RecordQueryError(f"until ({self.until}) is before since ({self.since}); ask for a range that exists")
        if self.after is not None:
            check_record_id(self.after)
        if self.input_digest is not None and not re.fullmatch(r"[0-9a-f]{64}", self.input_digest):
            raise RecordQueryError("input_digest must be a sha256 in hex (64 characters 0-9a-f)")


def check_record_id(record_id: str) -> str:
    if not RECORD_ID.match(record_id):
        raise RecordQueryError(f"{record_id[:40]!r} is not a record id (32 hex characters, as a record's id reads)", 400)
    return record_id


class SqlRecords:
    """The records table on a DB-API connection whose placeholders are `?` (SQLite) or `%s` (PostgreSQL);
    calls are serialised on one connection, opened again by `connect` after one failed (a server restart)."""

    placeholder = "?"

    def __init__(self, connect: Callable[[], Any]):
        self._connect = connect
        self._connection: Any = None
        self._lock = threading.Lock()
        self.migrate()

    # ------------------------------------------------------------------ schema

    def migrate(self) -> int:
        """Bring the schema to this code's version; the version it is at."""
        with self.transaction() as cursor:
            self._lock_schema(cursor)
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)")
            cursor.execute(f"SELECT MAX(version) FROM {VERSION_TABLE}")
            current = cursor.fetchone()[0] or 0
            try:
                steps = pending(current)
            except ValueError as error:
                raise RecordStoreError(str(error)) from None
            for version, statements in steps:
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute(self.sql(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)"), (version,))
                current = version
        return int(current)

    # ------------------------------------------------------------------ records

    def write(self, record: Record) -> None:
        columns = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        with self.transaction() as cursor:
            cursor.execute(self.sql(f"INSERT INTO explanation_records ({columns}) VALUES ({marks})"), record.row())

    def answer(self, model: str, answer_key: str) -> Record | None:
        """The newest record of this model that answered this key well, or None."""
        found = self._select(
            "WHERE model = ? AND answer_key = ? AND outcome = ? ORDER BY created DESC LIMIT 1", (model, answer_key, OK)
        )
        return found[0] if found else None

    def get(self, model: str, record_id: str) -> Record | None:
        found = self._select("WHERE model = ? AND id = ?", (model, check_record_id(record_id)))
        return found[0] if found else None

    def query(self, model: str, query: RecordQuery) -> list[Record]:
        clauses: list[str] = ["model = ?"]
        values: list[Any] = [model]
        for column, value in (
            ("request_id", query.request_id),
            ("input_digest", query.input_digest),
            ("method", query.method),
            ("outcome", query.outcome),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                values.append(value)
        if query.since is not None:
            clauses.append("created >= ?")
            values.append(query.since)
        if query.until is not None:
            clauses.append("created < ?")
            values.append(query.until)
        if query.after is not None:
            last = self.get(model, query.after)
            if last is None:
                raise RecordQueryError(f"after names no record of model {model!r}: pass the id of the last record you were given")
            clauses.append("(created > ? OR (created = ? AND id > ?))")
            values += [last.created, last.created, last.id]
        return self._select(f"WHERE {' AND '.join(clauses)} ORDER BY created, id LIMIT {int(query.limit)}", tuple(values))

    def delete_older_than(self, model: str, cutoff: float) -> int:
        """Delete this model's records created before `cutoff` (unix seconds); how many."""
        with self.transaction() as cursor:
            cursor.execute(self.sql("DELETE FROM explanation_records WHERE model = ? AND created < ?"), (model, cutoff))
            return int(cursor.rowcount)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    # ------------------------------------------------------------------ plumbing

    def _select(self, where: str, values: tuple[Any, ...]) -> list[Record]:
        with self.transaction() as cursor:
            cursor.execute(self.sql(f"SELECT {', '.join(COLUMNS)} FROM explanation_records {where}"), values)
            return [Record.from_row(tuple(row)) for row in cursor.fetchall()]

    def sql(self, statement: str) -> str:
        """`statement` with `?` placeholders, in this database's placeholder style."""
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    # PostgreSQL lets a claim pass over rows another replica is claiming; SQLite has one writer at a time.
    skip_locked = ""

    def _lock_schema(self, cursor: Any) -> None:
        """Hold off other replicas migrating the same store until this transaction ends (PostgreSQL)."""

    def _broken(self, error: Exception) -> bool:
        """Whether `error` means the connection is lost (then the next call opens a new one)."""
        return False

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor in one transaction, committed when the block ends (RecordStoreError when the store fails);
        the job queue (records.jobs) runs its statements through it too."""
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                connection = self._connection
                cursor = connection.cursor()
                try:
                    yield cursor
                    connection.commit()
                except BaseException:
                    try:
                        connection.rollback()
                    except Exception:  # a lost connection cannot roll back; the server already did
                        pass
                    raise
                finally:
                    try:
                        cursor.close()
                    except Exception:
                        pass
            except (RecordQueryError, RecordStoreError):
                raise
            except Exception as error:
                if self._broken(error) and self._connection is not None:
                    try:
                        self._connection.close()
                    except Exception:
                        pass
                    self._connection = None
                raise RecordStoreError(f"the records store failed: {type(error).__name__}: {error}") from error


class SqliteRecords(SqlRecords):
    """Records in a SQLite file: one explainer replica, or local mode.

    Write-ahead log, and no checkpoint on the writer's path: SQLite's automatic checkpoint (every 1000
    pages) would make every ~250th write of a 16 kB record pay the file's fsync (measured: p99 8 ms
    against 0.4 ms). A thread of its own checkpoints every `checkpoint_seconds` on its own connection,
    passively, so it never blocks a write."""

    def __init__(self, path: Path, busy_timeout_seconds: float = 5.0, checkpoint_seconds: float = 1.0):
        self.path = path

        def connect() -> sqlite3.Connection:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                connection = sqlite3.connect(path, timeout=busy_timeout_seconds, check_same_thread=False)
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                connection.execute("PRAGMA wal_autocheckpoint=0")
            except (OSError, sqlite3.Error) as error:
                raise RecordStoreError(f"cannot open the records store {path}: {error}") from error
            return connection

        super().__init__(connect)
        self._stop = threading.Event()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_every, args=(checkpoint_seconds,), name="records-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint_every(self, seconds: float) -> None:
        try:
            connection = sqlite3.connect(self.path, timeout=0.1)
        except sqlite3.Error:
            return
        try:
            while not self._stop.wait(seconds):
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error:
                    pass  # busy or gone: the next period tries again; the log only grows meanwhile
        finally:
            connection.close()

    def close(self) -> None:
        self._stop.set()
        super().close()


class PostgresRecords(SqlRecords):
    """Records in PostgreSQL, shared by every explainer replica: any replica answers any record. The
    connection string is a libpq one (`postgresql://user:password@host:5432/db?sslmode=require`, or
    `key=value` pairs); it is never logged, and errors name the store without it."""

    placeholder = "%s"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    # pg_advisory_xact_lock's key for migrations: one replica migrates, the others wait and find it done.
    MIGRATION_LOCK = 0x676C617373626F78  # "glassbox"

    def __init__(self, url: str, connect_timeout_seconds: int = 5):
        import psycopg

        self._psycopg = psycopg

        def connect() -> Any:
            try:
                return psycopg.connect(url, connect_timeout=connect_timeout_seconds)
            except psycopg.Error as error:
                # libpq's message names the host and the reason, never the password.
                raise RecordStoreError(f"cannot reach the PostgreSQL records store: {str(error).strip()[:300]}") from None

        super().__init__(connect)

    def _lock_schema(self, cursor: Any) -> None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (self.MIGRATION_LOCK,))

    def _broken(self, error: Exception) -> bool:
        return isinstance(error, self._psycopg.OperationalError) or bool(getattr(self._connection, "closed", False))
