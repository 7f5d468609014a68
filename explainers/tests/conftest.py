"""Real servers on loopback: each deployment is `glassbox up` of a model trained here on data with a known answer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from glassbox.explainers.records.store import PostgresRecords, SqliteRecords, SqlRecords
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import FaultProxy, build_image, build_tabular, build_text
from glassbox_testing.postgres import LocalPostgres


@pytest.fixture(scope="session")
def tabular_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tabular")
    build_tabular(folder)
    return folder


@pytest.fixture(scope="session")
def tabular(tabular_folder: Path) -> Iterator[tuple[LocalDeployment, FaultProxy]]:
    """Predictor, explainer and detector for the synthetic tabular model, with a fault proxy between predictor and explainer."""
    deployment = LocalDeployment(
        tabular_folder / "synthetic.yaml",
        log_dir=tabular_folder / "logs",
        extra_explainer_args=["--predictor_request_timeout_seconds=2", "--predictor_request_retries=2"],
        keep_records=False,  # these tests ask for explanations to be computed; test_records_http tests records
    )
    proxy: FaultProxy | None = None
    try:
        deployment.start_detector()
        predictor_host = deployment.start_predictor()
        proxy = FaultProxy(f"http://{predictor_host}")
        deployment.start_explainer(proxy.url.split("://")[1])
        yield deployment, proxy
    finally:
        deployment.stop()
        if proxy is not None:
            proxy.close()


@pytest.fixture
def proxy(tabular: tuple[LocalDeployment, FaultProxy]) -> Iterator[FaultProxy]:
    """The fault proxy, back to passing requests after the test."""
    yield tabular[1]
    tabular[1].mode = "pass"


@pytest.fixture(scope="session")
def text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    folder = tmp_path_factory.mktemp("text")
    with LocalDeployment(build_text(folder, detector=True), log_dir=folder / "logs", keep_records=False) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    folder = tmp_path_factory.mktemp("image")
    with LocalDeployment(build_image(folder), log_dir=folder / "logs", keep_records=False) as deployment:
        yield deployment


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL server on loopback for the records' tests (Debian's package, its own folder)."""
    server = LocalPostgres()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def records_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlRecords]:
    """The same store tests on a SQLite file and on a real PostgreSQL (a fresh database each)."""
    if request.param == "sqlite":
        opened: SqlRecords = SqliteRecords(tmp_path / "records.sqlite")
    else:
        server = request.getfixturevalue("postgres")
        opened = PostgresRecords(server.create_database(f"records_{uuid.uuid4().hex[:12]}"))
    yield opened
    opened.close()
