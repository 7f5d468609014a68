"""Small measuring helpers shared by the benchmark scripts."""

from __future__ import annotations

from pathlib import Path


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (Linux: VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
