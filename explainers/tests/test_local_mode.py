"""`glassbox up` as a user runs it, stopped as `timeout`, systemd, CI (SIGTERM) and a terminal (SIGINT) stop it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from glassbox_testing.dataplane import build_text


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def server_logs(output: str) -> str:
    """The ends of the servers' logs, from the folder `glassbox up` named: what a failure needs to be read."""
    match = re.search(r"\(logs in (\S+)\)", output)
    if match is None:
        return ""
    return "".join(
        f"\n--- {log.name}\n" + log.read_text(errors="replace")[-2000:] for log in sorted(Path(match[1]).glob("*.log"))
    )


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_text(tmp_path_factory.mktemp("up"))


@pytest.mark.parametrize(("stop", "when"), [(signal.SIGTERM, "ready"), (signal.SIGINT, "starting")])
def test_glassbox_up_stops_both_servers_on_a_signal(manifest: Path, stop: signal.Signals, when: str) -> None:
    up = subprocess.Popen(
        [sys.executable, "-m", "glassbox.cli", "up", str(manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert up.stdout is not None
    output = []
    deadline = time.monotonic() + 300
    servers: list[int] = []
    while time.monotonic() < deadline:
        line = up.stdout.readline()
        output.append(line)
        if not line:
            break
        servers = children_of(up.pid)
        if (when == "starting" and servers) or (when == "ready" and "Ctrl-C stops both" in line):
            break
    assert servers, "".join(output)
    servers = children_of(up.pid)
    up.send_signal(stop)
    rest, _ = up.communicate(timeout=60)
    assert up.returncode == 0, "".join(output) + rest + server_logs("".join(output))
    assert "stopped both servers" in rest
    assert "killed it" not in rest  # each server stopped on its own, on SIGTERM
    for pid in servers:
        assert not alive(pid), f"server {pid} outlived `glassbox up` after {stop.name}"


def test_a_stop_signal_handled_inside_code_run_by_exec_still_ends_the_process_cleanly(tmp_path: Path) -> None:
    """The cause of a rare exit -2 after "stopped both servers": CPython remembers a KeyboardInterrupt that passed
    through exec() of a string (dataclasses and named tuples define methods that way, in modules imported while the
    servers start) and ends a `python -m` process by SIGINT even though the exception was caught. `glassbox up`'s
    handlers raise StopSignal instead; here the signal lands inside exec'd code, deterministically."""
    (tmp_path / "stopped_in_exec.py").write_text(
        "import os, signal, sys\n"
        "from glassbox.local import StopSignal, install_stop_handlers\n"
        "install_stop_handlers()\n"
        "try:\n"
        "    exec('import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor _ in range(10**6): pass')\n"
        "except StopSignal:\n"
        "    print('stopped', flush=True)\n"
        "sys.exit(0)\n"
    )
    run = subprocess.run([sys.executable, "-m", "stopped_in_exec"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout.strip()) == (0, "stopped"), run.stdout + run.stderr
