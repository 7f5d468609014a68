"""`glassbox operator` as a child process, healthy before it is handed out (tests and the demo)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningOperator:
    process: subprocess.Popen[bytes]
    log: Path
    kubeconfig: Path
    health_url: str


def start_operator(kubeconfig: Path, log: Path, extra: list[str] | None = None) -> RunningOperator:
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "GLASSBOX_HEALTH_ADDRESS": f"127.0.0.1:{port}"}
    handle = open(log, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "glassbox.cli", "operator", *(extra or [])],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=env,
    )
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return RunningOperator(
                        process=process, log=log, kubeconfig=kubeconfig, health_url=f"http://127.0.0.1:{port}/healthz"
                    )
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the operator did not become healthy in 60 s:\n{log.read_text()[-4000:]}")


def stop_operator(operator: RunningOperator) -> None:
    operator.process.terminate()
    try:
        operator.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        operator.process.kill()
        operator.process.wait()
