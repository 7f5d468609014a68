"""Fetching reference data and artifacts from servers that misbehave: real HTTP servers on loopback."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from glassbox.explainers.data.errors import ArtifactError, StorageError
from glassbox.explainers.data.storage import DownloadLimits, forbidden_address, resolve
from glassbox.explainers.data.torch_artifacts import load_module

PAYLOAD = b"a,b\n" + b"1,2\n" * 200_000  # 800 kB


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/redirect-to/"):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect-to/"))
            self.end_headers()
            return
        if self.path == "/chunked":  # no Content-Length: the cap counts bytes as they come
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(PAYLOAD), 65536):
                chunk = PAYLOAD[start : start + 65536]
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/drip":  # a byte every 0.2 s, never finishing within the test's limit
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.2)
            except OSError:
                pass
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, format: str, *args: object) -> None:
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gives up mid-answer is what these tests do


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("GLASSBOX_DATA_CACHE", str(tmp_path / "cache"))
    httpd = QuietServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_download_within_its_limits_and_pinned_digest(server: str) -> None:
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    path = resolve(f"{server}/data.csv", limits=DownloadLimits(sha256=digest))
    assert path.read_bytes() == PAYLOAD
    assert resolve(f"{server}/data.csv", limits=DownloadLimits(sha256=digest)) == path  # cached, checked again


def test_a_file_that_is_not_the_pinned_one_is_refused(server: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="the spec pins 0{64}"):
        resolve(f"{server}/data.csv", limits=DownloadLimits(sha256="0" * 64))
    local = tmp_path / "data.csv"
    local.write_bytes(PAYLOAD)
    with pytest.raises(StorageError, match="refusing to load"):
        resolve(str(local), limits=DownloadLimits(sha256="1" * 64))
    assert not list((tmp_path / "cache").rglob("*.csv")), "a refused download must not stay in the cache"


@pytest.mark.parametrize("path", ["/data.csv", "/chunked"])
def test_a_file_larger_than_the_cap_is_refused(server: str, path: str) -> None:
    with pytest.raises(StorageError, match=r"the limit of 100000 (bytes )?\(referenceData.maxBytes"):
        resolve(f"{server}{path}", limits=DownloadLimits(max_bytes=100_000))


def test_a_dripping_server_is_given_up_on_at_the_total_timeout(server: str) -> None:
    with pytest.raises(
        StorageError, match=r"not downloaded within 1 s \(referenceData.downloadTimeoutSeconds for reference data\)"
    ):
        resolve(f"{server}/drip", limits=DownloadLimits(timeout_seconds=1))


@pytest.mark.parametrize(
    "target,message",
    [
        ("http://169.254.169.254/latest/meta-data/iam/", "a cloud metadata address"),
        ("http://169.254.10.1/x", "a link-local address"),
        ("http://[fe80::1]/x", "a link-local address"),
        ("file:///etc/passwd", "only http\\(s\\) redirects"),
    ],
)
def test_redirects_never_reach_metadata_link_local_or_local_files(server: str, target: str, message: str) -> None:
    with pytest.raises(StorageError, match=message):
        resolve(f"{server}/redirect-to/{target}")


def test_schemes_outside_the_allowlist_are_refused() -> None:
    for uri in ("ftp://example.net/data.csv", "gopher://example.net/x", "dict://127.0.0.1:11211/x"):
        with pytest.raises(StorageError, match="not a storage scheme Glassbox reads"):
            resolve(uri)


def test_addresses_that_are_never_a_data_store() -> None:
    assert forbidden_address("169.254.169.254") == "a cloud metadata address"
    assert forbidden_address("fd00:ec2::254") == "a cloud metadata address"
    assert forbidden_address("169.254.1.1") == "a link-local address"
    assert forbidden_address("0.0.0.0") == "not a host address"
    # In-cluster object stores live on private addresses; local mode serves from loopback.
    assert forbidden_address("10.0.0.7") is None and forbidden_address("127.0.0.1") is None


def test_an_artifact_that_is_not_the_pinned_one_is_never_handed_to_torch(tmp_path: Path) -> None:
    artifact = tmp_path / "model.pt"
    artifact.write_bytes(b"not a TorchScript archive: torch would fail differently")
    with pytest.raises(ArtifactError, match="the spec pins a{64}"):
        load_module(tmp_path, "cpu", sha256="a" * 64)
    with pytest.raises(ArtifactError, match="could not load"):  # the right digest reaches torch, which refuses the bytes
        load_module(tmp_path, "cpu", sha256=hashlib.sha256(artifact.read_bytes()).hexdigest())
