"""The wheels an image installs, fetched once and kept by their SHA-256.

    python3 images/wheelhouse.py LOCK DEST [FIND_LINKS]

Every requirement of LOCK (a `make lock` file: each package pinned, with hashes) is
looked up in a pool of wheels named by their digest (GLASSBOX_CACHE, by default
~/.cache/glassbox, under wheels/); those missing are downloaded in one `pip
download` with the host's own pip configuration (index, mirror, certificates),
for the images' platform (linux x86_64, CPython 3.11, glibc 2.36), and checked
against the lock's hashes. DEST then holds exactly the lock's wheels, linked
from the pool, and the image's build installs them with no network. FIND_LINKS
is one more place pip looks (the -cpu locks' torch: a folder or an index page).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The images' platform: Debian bookworm and python:3.11-slim both have glibc 2.36.
GLIBC_MINOR = 36
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)] + [
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
]
REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")


@dataclass(frozen=True)
class Pinned:
    """One requirement of a lock: its line as written and the digests any of its files may have."""

    name: str
    version: str
    text: str
    hashes: frozenset[str]


def read_lock(path: Path) -> list[Pinned]:
    """The lock's requirements, each with its continuation lines (its hashes)."""
    pinned: list[Pinned] = []
    block: list[str] = []

    def close() -> None:
        if not block:
            return
        text = "\n".join(line for line in block if not line.lstrip().startswith("#"))
        match = REQUIREMENT.match(block[0])
        hashes = frozenset(HASH.findall(text))
        if match is None or not hashes:
            raise SystemExit(f"{path}: '{block[0]}' is not a pinned requirement with hashes; regenerate it with `make lock`")
        pinned.append(Pinned(match.group(1), match.group(2), text.rstrip(" \\"), hashes))
        block.clear()

    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line[0].isspace():
            close()
        block.append(line)
    close()
    return pinned


def pool_dir() -> Path:
    cache = os.environ.get("GLASSBOX_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"
    return Path(cache) / "wheels"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def in_pool(pool: Path, requirement: Pinned) -> Path | None:
    """A wheel of the requirement already in the pool (pool/SHA256/FILE), if any."""
    for digest in sorted(requirement.hashes):
        files = list((pool / digest).glob("*.whl")) if (pool / digest).is_dir() else []
        if files:
            return files[0]
    return None


def download(missing: list[Pinned], pool: Path, find_links: str | None) -> None:
    """One `pip download` of the missing requirements (hash-checked by pip), each file then moved into the pool."""
    with tempfile.TemporaryDirectory(dir=pool) as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("\n".join(r.text for r in missing) + "\n")
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        command = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes", "--only-binary=:all:",
            *platforms, "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
            "--dest", str(Path(scratch) / "files"), "-r", str(requirements),
            *(["--find-links", find_links] if find_links else []),
        ]  # fmt: skip
        result = subprocess.run(command)
        if result.returncode != 0:
            raise SystemExit(f"pip download of {len(missing)} wheels failed (exit {result.returncode}); see pip's message above")
        for wheel in (Path(scratch) / "files").iterdir():
            target = pool / sha256_of(wheel) / wheel.name
            target.parent.mkdir(exist_ok=True)
            os.replace(wheel, target)


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copy2(source, target)


def fill(lock: Path, dest: Path, find_links: str | None = None) -> int:
    requirements = read_lock(lock)
    pool = pool_dir()
    pool.mkdir(parents=True, exist_ok=True)
    missing = [r for r in requirements if in_pool(pool, r) is None]
    if missing:
        print(f"wheelhouse: downloading {len(missing)} of {len(requirements)} wheels of {lock} into {pool}", flush=True)
        download(missing, pool, find_links)
    still = [r.name for r in requirements if in_pool(pool, r) is None]
    if still:
        raise SystemExit(f"wheelhouse: pip fetched no wheel with a locked hash for {', '.join(still)}")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for requirement in requirements:
        wheel = in_pool(pool, requirement)
        assert wheel is not None
        link_or_copy(wheel, dest / wheel.name)
    print(f"wheelhouse: {dest} holds the {len(requirements)} wheels of {lock} ({len(requirements) - len(missing)} were cached)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    raise SystemExit(fill(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) == 4 else None))
