"""Explanation records on a real SQLite file: what identifies an answer, the answer found again, audit
queries paged, retention, the schema migrated and a newer one refused, concurrent writers, a full store."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from glassbox.explainers.explainer.recording import Recorder, RecordSettings
from glassbox.explainers.records.errors import RecordQueryError, RecordStoreError
from glassbox.explainers.records.jobs import JobQueue
from glassbox.explainers.records.keys import answer_key, input_digest
from glassbox.explainers.records.schema import LATEST, MIGRATIONS, VERSION_TABLE
from glassbox.explainers.records.store import COLUMNS, Record, RecordQuery, SqliteRecords, SqlRecords

SETTINGS = {"type": "AnchorTabular", "name": "anchors", "anchorTabular": {"threshold": 0.95, "seed": 0}}


def record(key: str = "k" * 64, **fields: object) -> Record:
    values: dict[str, object] = {
        "model": "credit",
        "method": "anchors",
        "settings": SETTINGS,
        "input_digest": "d" * 64,
        "answer_key": key,
        "outcome": "ok",
        "seconds": 0.5,
        "explanation": {"data": {"anchor": ["x > 1"]}},
    }
    values.update(fields)
    return Record(**values)  # type: ignore[arg-type]


def test_an_inputs_digest_is_its_values_and_shape_not_how_they_were_sent() -> None:
    as_ints = input_digest(np.array([[1, 2], [3, 4]]))
    assert as_ints == input_digest(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    assert as_ints != input_digest(np.array([1, 2, 3, 4]))  # the same numbers, another shape
    assert as_ints != input_digest(np.array([[1, 2], [3, 5]]))
    assert input_digest(["a good film"]) != input_digest(["a bad film"])
    assert input_digest(["1"]) != input_digest(np.array([1]))


def test_the_answer_key_changes_with_everything_the_answer_depends_on() -> None:
    base = {"model": "credit", "model_digest": "m1", "method_settings": SETTINGS, "input_sha256": "d" * 64}
    key = answer_key(**base, targets=None, picture=False)  # type: ignore[arg-type]
    assert key == answer_key(**base, targets=None, picture=False)  # type: ignore[arg-type]
    reseeded = {**SETTINGS, "anchorTabular": {"threshold": 0.95, "seed": 1}}
    others = [
        answer_key(**{**base, "model_digest": "m2"}, targets=None, picture=False),  # type: ignore[arg-type]
        answer_key(**{**base, "method_settings": reseeded}, targets=None, picture=False),  # type: ignore[arg-type]
        answer_key(**{**base, "input_sha256": "e" * 64}, targets=None, picture=False),  # type: ignore[arg-type]
        answer_key(**base, targets=[1], picture=False),  # type: ignore[arg-type]
        answer_key(**base, targets=None, picture=True),  # type: ignore[arg-type]
        answer_key(**{**base, "model": "other"}, targets=None, picture=False),  # type: ignore[arg-type]
    ]
    assert len({key, *others}) == 7


def test_a_written_record_answers_its_key_and_only_a_good_one_does(records_store: SqlRecords) -> None:
    assert records_store.answer("credit", "k" * 64) is None
    failed = record(outcome="timeout", explanation=None, seconds=60.0)
    records_store.write(failed)
    assert records_store.answer("credit", "k" * 64) is None, "a failed explanation is no answer"
    older = record(created=1000.0)
    newer = record(created=2000.0, explanation={"data": {"anchor": ["x > 2"]}})
    records_store.write(older)
    records_store.write(newer)
    found = records_store.answer("credit", "k" * 64)
    assert found == newer
    assert records_store.answer("another-model", "k" * 64) is None
    assert records_store.get("credit", failed.id) == failed


def test_a_record_keeps_its_input_only_when_given_one(records_store: SqlRecords) -> None:
    without, with_input = record(), record(input=[[1.5, 2.0]])
    records_store.write(without)
    records_store.write(with_input)
    assert records_store.get("credit", without.id).input is None  # type: ignore[union-attr]
    assert records_store.get("credit", with_input.id).input == [[1.5, 2.0]]  # type: ignore[union-attr]


def test_a_record_id_is_checked_and_another_models_record_is_not_found(records_store: SqlRecords) -> None:
    kept = record()
    records_store.write(kept)
    assert records_store.get("another-model", kept.id) is None
    with pytest.raises(RecordQueryError, match="is not a record id") as raised:
        records_store.get("credit", "'; DROP TABLE explanation_records; --")
    assert raised.value.status == 400
    assert records_store.get("credit", kept.id) == kept


def test_audit_queries_filter_and_page_in_order(records_store: SqlRecords) -> None:
    written = [
        record(
            key=f"{i:064x}",
            created=1000.0 + i // 2,  # pairs share a time: paging must not lose or repeat either
            request_id=f"req-{i % 3}",
            method="anchors" if i % 2 else "shap",
            outcome="ok" if i % 5 else "timeout",
        )
        for i in range(25)
    ]
    for one in reversed(written):
        records_store.write(one)
    pages, after = [], None
    while True:
        page = records_store.query("credit", RecordQuery(limit=10, after=after))
        if not page:
            break
        pages.append(page)
        after = page[-1].id
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [r for p in pages for r in p]
    assert sorted(r.id for r in seen) == sorted(r.id for r in written) and len(set(r.id for r in seen)) == 25
    assert [r.created for r in seen] == sorted(r.created for r in seen)
    assert {r.id for r in records_store.query("credit", RecordQuery(request_id="req-1"))} == {
        r.id for r in written if r.request_id == "req-1"
    }
    assert {r.id for r in records_store.query("credit", RecordQuery(method="shap", outcome="timeout"))} == {
        r.id for r in written if r.method == "shap" and r.outcome == "timeout"
    }
    in_range = records_store.query("credit", RecordQuery(since=1003.0, until=1005.0))
    assert {r.created for r in in_range} == {1003.0, 1004.0} and len(in_range) == 4
    assert records_store.query("another-model", RecordQuery()) == []


@pytest.mark.parametrize(
    "fields,words",
    [
        ({"limit": 0}, "limit must be between 1 and 1000"),
        ({"limit": 1001}, "limit must be between 1 and 1000"),
        ({"since": 10.0, "until": 5.0}, "is before since"),
        ({"after": "not-an-id"}, "is not a record id"),
        ({"input_digest": "abc"}, "input_digest must be a sha256"),
    ],
)
def test_a_query_past_its_limits_names_the_problem(fields: dict[str, object], words: str) -> None:
    with pytest.raises(RecordQueryError, match=words):
        RecordQuery(**fields)  # type: ignore[arg-type]


def test_a_page_after_a_record_that_does_not_exist_is_refused(records_store: SqlRecords) -> None:
    with pytest.raises(RecordQueryError, match="after names no record"):
        records_store.query("credit", RecordQuery(after="0" * 32))


def test_retention_deletes_only_older_records_of_that_model(records_store: SqlRecords) -> None:
    old, recent, other = record(created=100.0), record(created=900.0), record(model="other", created=100.0)
    for one in (old, recent, other):
        records_store.write(one)
    assert records_store.delete_older_than("credit", 500.0) == 1
    assert records_store.get("credit", old.id) is None and records_store.get("credit", recent.id) == recent
    assert records_store.get("other", other.id) == other


def test_the_schema_is_migrated_once_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    first = SqliteRecords(path)
    kept = record()
    first.write(kept)
    assert first.migrate() == LATEST
    first.close()
    again = SqliteRecords(path)  # reopening migrates nothing and loses nothing
    assert again.get("credit", kept.id) == kept
    again.close()
    versions = sqlite3.connect(path).execute(f"SELECT version FROM {VERSION_TABLE}").fetchall()
    assert versions == [(version,) for version in range(1, LATEST + 1)], "each migration ran once"
    with sqlite3.connect(path) as connection:
        connection.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", (LATEST + 1,))
    with pytest.raises(RecordStoreError, match=f"schema version {LATEST + 1}, newer than this explainer's {LATEST}"):
        SqliteRecords(path)


def test_concurrent_writers_lose_nothing(records_store: SqlRecords) -> None:
    written: list[Record] = []
    lock = threading.Lock()

    def write_some(worker: int) -> None:
        for i in range(25):
            one = record(key=f"{worker:032x}{i:032x}")
            records_store.write(one)
            with lock:
                written.append(one)

    threads = [threading.Thread(target=write_some, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(written) == 200
    assert all(records_store.answer("credit", one.answer_key) == one for one in written)


def test_a_full_store_fails_with_a_store_error_and_keeps_what_it_had(tmp_path: Path) -> None:
    store = SqliteRecords(tmp_path / "records.sqlite")
    kept = record()
    store.write(kept)
    store._connection.execute("PRAGMA max_page_count = " + str(store._connection.execute("PRAGMA page_count").fetchone()[0]))
    big = record(explanation={"data": {"blob": "x" * 1_000_000}})
    with pytest.raises(RecordStoreError, match="full"):
        store.write(big)
    assert store.get("credit", kept.id) == kept and store.get("credit", big.id) is None
    store.close()


def test_a_store_that_cannot_be_opened_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    with pytest.raises(RecordStoreError, match="cannot open the records store"):
        SqliteRecords(blocker / "records.sqlite")


async def test_identical_requests_together_are_computed_once_and_share_a_failure(tmp_path: Path) -> None:
    recorder = Recorder("credit", RecordSettings(path=tmp_path / "records.sqlite"))
    release, calls = asyncio.Event(), []

    async def compute() -> dict[str, object]:
        calls.append(1)
        await release.wait()
        return {"data": {"anchor": ["x > 1"]}}

    first = asyncio.create_task(recorder.once("k", compute))
    second = asyncio.create_task(recorder.once("k", compute))
    other = asyncio.create_task(recorder.once("another key", compute))
    await asyncio.sleep(0.05)
    release.set()
    assert await first == ({"data": {"anchor": ["x > 1"]}}, False)
    assert await second == ({"data": {"anchor": ["x > 1"]}}, True)
    assert (await other)[1] is False and len(calls) == 2

    async def fails() -> dict[str, object]:
        await asyncio.sleep(0.05)
        raise RuntimeError("the predictor went away")

    failing = [asyncio.create_task(recorder.once("f", fails)) for _ in range(2)]
    for task in failing:
        with pytest.raises(RuntimeError, match="went away"):
            await task
    assert (await recorder.once("f", compute))[1] is False, "a failure is not kept: the next request computes"
    recorder.close()


def test_a_store_an_older_explainer_wrote_is_migrated_and_keeps_its_records(tmp_path: Path) -> None:
    path = tmp_path / "records.sqlite"
    with sqlite3.connect(path) as older:  # what the first schema's explainer left behind
        older.execute(f"CREATE TABLE {VERSION_TABLE} (version BIGINT NOT NULL)")
        for statement in MIGRATIONS[0][1]:
            older.execute(statement)
        older.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (1)")
        kept = record()
        first_columns = COLUMNS[: COLUMNS.index("input") + 1]
        marks = ", ".join("?" for _ in first_columns)
        older.execute(
            f"INSERT INTO explanation_records ({', '.join(first_columns)}) VALUES ({marks})", kept.row()[: len(first_columns)]
        )
    store = SqliteRecords(path)
    assert store.get("credit", kept.id) == kept
    assert JobQueue(store, "credit").submit({"instances": [[1]]}).state == "queued", "the jobs table came with the migration"
    # Schema 3: a record names its ExplainedModel and the generation of the spec its explainer was deployed from.
    named = record(explained_model="ml/credit", generation=7)
    store.write(named)
    assert store.get("credit", named.id) == named
    store.close()
