"""Where files come from: a local path, file://, http(s)://, or a cloud URI.

Downloads are bounded (size, total time, redirects) and never reach link-local
or cloud metadata addresses; a SHA-256 in the spec pins the file that is loaded.

In a cluster, KServe's storage initializer fetches the model artifact into
/mnt/models; the explainer fetches its reference data itself. Cloud schemes
(s3://, gs://, hf://, ...; pvc:// is local in a pod) need the `storage` extra
(kserve-storage), which the explainer image installs.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from glassbox.contract.api import (
    DEFAULT_DOWNLOAD_TIMEOUT_SECONDS,
    DEFAULT_MAX_DOWNLOAD_BYTES,
    MAX_DOWNLOAD_BYTES,
    MAX_TIMEOUT_SECONDS,
    storage_scheme_problem,
)
from glassbox.explainers.data.errors import StorageError

# Cloud metadata services answer on these addresses with the node's or the pod's credentials.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
MAX_REDIRECTS = 3
READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class DownloadLimits:
    """Bounds on one download over http(s): its size, its total time, and the digest it must have."""

    max_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    timeout_seconds: float = DEFAULT_DOWNLOAD_TIMEOUT_SECONDS
    sha256: str | None = None


# A model artifact fetched over http(s) (local mode; in a cluster KServe's storage initializer fetches it).
ARTIFACT_LIMITS = DownloadLimits(max_bytes=MAX_DOWNLOAD_BYTES, timeout_seconds=MAX_TIMEOUT_SECONDS)


def forbidden_address(address: str) -> str | None:
    """Why an address must not be fetched from, or None: link-local (cloud metadata, the node's own
    services), metadata, unspecified and multicast addresses are never a data store."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified or ip.is_multicast:
        return "not a host address"
    return None


def _check_host(url: str) -> None:
    host = urlparse(url).hostname
    if not host:
        raise StorageError(f"{url}: no host to download from")
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError as error:
        raise StorageError(f"{url}: cannot resolve host '{host}': {error}") from error
    for address in sorted(addresses):
        reason = forbidden_address(str(address))
        if reason:
            raise StorageError(
                f"{url}: '{host}' resolves to {address}, {reason}; reference data and artifacts come from a data store"
            )


def _check_peer(url: str, response: httpx.Response) -> None:
    """The address actually connected to (a name may resolve differently the second time)."""
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer:
        reason = forbidden_address(str(peer[0]))
        if reason:
            raise StorageError(f"{url}: connected to {peer[0]}, {reason}; refused")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_sha256(path: Path) -> str:
    """A file's SHA-256; a folder's over its files' relative names and SHA-256s (what identifies its content)."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for member in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{member.relative_to(path).as_posix()}\0{file_sha256(member)}\n".encode())
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None, what: str) -> None:
    """Refuse a file whose SHA-256 is not `expected` (when one is given)."""
    if expected is None:
        return
    actual = file_sha256(path)
    if actual != expected.lower():
        raise StorageError(
            f"{what}: SHA-256 is {actual}, the spec pins {expected}; refusing to load a file that is not the pinned one"
        )


def _download(uri: str, target: Path, limits: DownloadLimits) -> None:
    """Fetch over http(s) into `target`, within the limits, checking every hop's address."""
    deadline = time.monotonic() + limits.timeout_seconds
    part = target.with_suffix(target.suffix + ".part")
    url = uri
    try:
        with httpx.Client(follow_redirects=False, timeout=httpx.Timeout(READ_TIMEOUT_SECONDS)) as client:
            for _ in range(MAX_REDIRECTS + 1):
                _check_host(url)
                with client.stream("GET", url) as response:
                    _check_peer(url, response)
                    if response.is_redirect:
                        url = str(response.url.join(response.headers.get("location", "")))
                        if urlparse(url).scheme not in ("http", "https"):
                            raise StorageError(f"{uri}: redirected to {url}; only http(s) redirects are followed")
                        continue
                    response.raise_for_status()
                    declared = int(response.headers.get("content-length") or 0)
                    if declared > limits.max_bytes:
                        raise StorageError(
                            f"{uri}: {declared} bytes, more than the limit of {limits.max_bytes} (referenceData.maxBytes for reference data); raise it or use a smaller file"
                        )
                    received = 0
                    with open(part, "wb") as out:
                        for chunk in response.iter_bytes():
                            received += len(chunk)
                            if received > limits.max_bytes:
                                raise StorageError(
                                    f"{uri}: more than the limit of {limits.max_bytes} bytes (referenceData.maxBytes for reference data); raise it or use a smaller file"
                                )
                            if time.monotonic() > deadline:
                                raise StorageError(
                                    f"{uri}: not downloaded within {limits.timeout_seconds:.0f} s (referenceData.downloadTimeoutSeconds for reference data)"
                                )
                            out.write(chunk)
                    verify_sha256(part, limits.sha256, uri)
                    part.rename(target)
                    return
            raise StorageError(f"{uri}: more than {MAX_REDIRECTS} redirects")
    except httpx.HTTPError as error:
        raise StorageError(f"{uri}: download failed: {error}") from error
    finally:
        part.unlink(missing_ok=True)


def _cache_dir() -> Path:
    folder = Path(os.environ.get("GLASSBOX_DATA_CACHE", Path(tempfile.gettempdir()) / "glassbox-data"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resolve(uri: str, base: Path | None = None, limits: DownloadLimits = DownloadLimits()) -> Path:
    """A local path holding what `uri` names, fetching it first if it is remote; a pinned digest is
    checked before the path is handed out."""
    path = _resolve(uri, base, limits)
    if path.is_file():
        verify_sha256(path, limits.sha256, uri)
    elif limits.sha256 is not None:
        raise StorageError(f"{uri}: names a folder, but a SHA-256 pins one file; name the file itself")
    return path


def _resolve(uri: str, base: Path | None, limits: DownloadLimits) -> Path:
    problem = storage_scheme_problem(uri)
    if problem:
        raise StorageError(f"{uri}: {problem}")
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        if not path.exists():
            raise StorageError(f"{uri}: no such file or folder ({path})")
        return path
    if parsed.scheme in ("http", "https"):
        name = Path(parsed.path).name or "download"
        target = _cache_dir() / hashlib.sha256(uri.encode()).hexdigest()[:16] / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            _download(uri, target, limits)
        return target
    if parsed.scheme == "pvc":
        # In a pod, KServe mounts PVCs under /mnt/pvc/<claim>/<path>.
        return _resolve(f"/mnt/pvc/{parsed.netloc}{parsed.path}", None, limits)
    try:
        from kserve_storage import Storage
    except ImportError:
        raise StorageError(
            f"{uri}: reading {parsed.scheme}:// needs the storage extra (pip install 'glassbox[storage]'); "
            "local paths, file:// and http(s):// work without it"
        ) from None
    target = _cache_dir() / hashlib.sha256(uri.encode()).hexdigest()[:16]
    downloaded = Path(Storage.download(uri, str(target)))
    candidates = [p for p in downloaded.iterdir()] if downloaded.is_dir() else [downloaded]
    return candidates[0] if len(candidates) == 1 else downloaded
