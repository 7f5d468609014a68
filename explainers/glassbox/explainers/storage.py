"""Where files come from: a local path, file://, http(s)://, or a cloud URI.

In a cluster, KServe's storage initializer fetches the model artifact into
/mnt/models; the explainer fetches its reference data itself. Cloud schemes
(s3://, gs://, azure://, pvc:// is local in a pod) need the `storage` extra
(kserve-storage), which the explainer image installs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx


class StorageError(RuntimeError):
    pass


def _cache_dir() -> Path:
    folder = Path(os.environ.get("GLASSBOX_DATA_CACHE", Path(tempfile.gettempdir()) / "glassbox-data"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def resolve(uri: str, base: Path | None = None) -> Path:
    """A local path holding what `uri` names, fetching it first if it is remote."""
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
            try:
                with httpx.stream("GET", uri, timeout=60, follow_redirects=True) as response:
                    response.raise_for_status()
                    with open(target.with_suffix(".part"), "wb") as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
            except httpx.HTTPError as error:
                raise StorageError(f"{uri}: download failed: {error}") from error
            target.with_suffix(".part").rename(target)
        return target
    if parsed.scheme == "pvc":
        # In a pod, KServe mounts PVCs under /mnt/pvc/<claim>/<path>.
        return resolve(f"/mnt/pvc/{parsed.netloc}{parsed.path}")
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
