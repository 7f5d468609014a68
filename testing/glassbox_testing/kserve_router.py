"""KServe's own InferenceGraph router, built once from `../shared/kserve-router` and cached.

The router listens on a fixed :8080, so it runs, with the servers it calls, in a
private network namespace (`unshare -n`). `router_or_reason()` gives the binary,
or one line saying what is missing (a newcomer's clone has no `../shared`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(os.environ.get("GLASSBOX_KSERVE_ROUTER_SRC", REPO.parent / "shared" / "kserve-router"))
CACHE = Path(os.environ.get("GLASSBOX_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"))
BINARY = CACHE / "kserve-router" / "router"


def can_unshare_network() -> str | None:
    """None when `unshare -n` works here, else why not."""
    if shutil.which("unshare") is None:
        return "the router tests need `unshare` (util-linux) for a private network namespace"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"the router tests need a private network namespace (`unshare -n` as root): {probe.stderr.strip()}"
    return None


def router_or_reason() -> tuple[Path | None, str]:
    """The router binary (building it on first use, about 90 s), or None and the reason it cannot be had."""
    reason = can_unshare_network()
    if reason:
        return None, reason
    if BINARY.exists():
        return BINARY, ""
    build = SOURCE / "build.sh"
    if not build.exists():
        return None, f"KServe's router source is not here ({SOURCE}: the shared/kserve-router folder beside the repository)"
    work = CACHE / "kserve-router" / "work"
    log = CACHE / "kserve-router" / "build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:
        result = subprocess.run(["bash", str(build), str(work)], stdout=handle, stderr=subprocess.STDOUT, timeout=900)
    if result.returncode != 0 or not (work / "router").exists():
        return None, f"building KServe's router failed; see {log}"
    shutil.copy2(work / "router", BINARY)
    return BINARY, ""


if __name__ == "__main__":
    # `make images-test` builds the router here, before its tests enter a network namespace with no way out.
    binary, why = router_or_reason()
    print(f"KServe's router: {binary}" if binary else f"KServe's router: not available ({why}); the graph tests skip")
