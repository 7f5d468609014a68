"""The records' tables, as numbered migrations the explainer applies at start (the same SQL on SQLite and
PostgreSQL: TEXT, BIGINT and DOUBLE PRECISION mean the same to both). A store at version N runs every
migration above N in one transaction and records the new version; one newer than this code is refused."""

from __future__ import annotations

VERSION_TABLE = "glassbox_records_schema"

# (version, statements). Never edit a released migration: add the next one.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE explanation_records (
                id TEXT PRIMARY KEY,
                created DOUBLE PRECISION NOT NULL,
                model TEXT NOT NULL,
                model_digest TEXT,
                method TEXT NOT NULL,
                settings TEXT NOT NULL,
                input_digest TEXT NOT NULL,
                answer_key TEXT NOT NULL,
                request_id TEXT,
                outcome TEXT NOT NULL,
                seconds DOUBLE PRECISION NOT NULL,
                predictor_calls BIGINT NOT NULL,
                predictor_rows BIGINT NOT NULL,
                explanation TEXT,
                input TEXT
            )""",
            "CREATE INDEX explanation_records_answer ON explanation_records (model, answer_key, created)",
            "CREATE INDEX explanation_records_created ON explanation_records (model, created, id)",
            "CREATE INDEX explanation_records_request ON explanation_records (model, request_id)",
            "CREATE INDEX explanation_records_input ON explanation_records (model, input_digest)",
        ),
    ),
    (
        2,
        (
            """CREATE TABLE explanation_jobs (
                id TEXT PRIMARY KEY,
                model TEXT NOT NULL,
                created DOUBLE PRECISION NOT NULL,
                state TEXT NOT NULL,
                request TEXT NOT NULL,
                owner TEXT,
                lease_until DOUBLE PRECISION,
                attempts BIGINT NOT NULL,
                reason TEXT,
                record_id TEXT
            )""",
            "CREATE INDEX explanation_jobs_claim ON explanation_jobs (model, state, created)",
        ),
    ),
    (
        3,
        (
            "ALTER TABLE explanation_records ADD COLUMN explained_model TEXT",
            "ALTER TABLE explanation_records ADD COLUMN generation BIGINT",
        ),
    ),
)
LATEST = MIGRATIONS[-1][0]


def pending(current: int) -> list[tuple[int, tuple[str, ...]]]:
    """The migrations a store at `current` still needs, in order; a store newer than this code is refused."""
    if current > LATEST:
        raise ValueError(
            f"the records store is at schema version {current}, newer than this explainer's {LATEST}: "
            "run the explainer version that wrote it (or newer), never an older one against it"
        )
    return [(version, statements) for version, statements in MIGRATIONS if version > current]
