"""Glassbox's images run with podman as a cluster runs them (`make images-test`).

A container is started from the same container spec a cluster gets (the
operator's builders for the servers, the chart's Deployment as the API server
holds it for the operator): its
command, args, env and securityContext become podman's flags. Stricter than the
specs ask: the root filesystem is always read-only, with /tmp the only writable
place (a pod's emptyDir), so an image that writes anywhere else fails here.

Containers share the network namespace of the test (podman's host network):
`make images-test` runs the tests in a private one (`unshare -n`), where each
server takes its own port, as in local mode, and KServe's router has :8080.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# runc, not crun: crun cannot set the rlimits podman asks for on some machines; the limits a kubelet's
# containers typically get.
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
# What a pod's emptyDir at /tmp gives (Glassbox's images keep every cache and temporary file there).
TMPFS = ["--tmpfs", "/tmp:rw,size=1g,mode=1777"]


def image_exists(tag: str) -> bool:
    return subprocess.run([*PODMAN, "image", "exists", tag]).returncode == 0


def image_user(tag: str) -> str:
    return subprocess.run(
        [*PODMAN, "image", "inspect", tag, "--format", "{{.Config.User}}"], capture_output=True, text=True, check=True
    ).stdout.strip()


def image_size_bytes(tag: str) -> int:
    out = subprocess.run([*PODMAN, "image", "inspect", tag, "--format", "{{.Size}}"], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def security_flags(context: dict[str, Any]) -> list[str]:
    """podman's flags for a Kubernetes container securityContext (the fields Glassbox's specs set)."""
    flags: list[str] = []
    user, group = context.get("runAsUser"), context.get("runAsGroup")
    if user is not None:
        flags += ["--user", f"{user}:{group if group is not None else user}"]
    if "ALL" in ((context.get("capabilities") or {}).get("drop") or []):
        flags.append("--cap-drop=all")
    if context.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    # runAsNonRoot: the kubelet refuses a container whose user is root; so does podman_command (below).
    # seccompProfile RuntimeDefault: podman's default profile.
    return flags


@dataclass
class Container:
    """One running container: its name, log and how it was started."""

    name: str
    command: list[str]
    started_at: float
    exit_code: int | None = None
    stopped_in: float | None = None

    def logs(self, characters: int = 6000) -> str:
        out = subprocess.run([*PODMAN, "logs", self.name], capture_output=True, text=True)
        return (out.stdout + out.stderr)[-characters:]

    def running(self) -> bool:
        out = subprocess.run([*PODMAN, "inspect", self.name, "--format", "{{.State.Running}}"], capture_output=True, text=True)
        return out.stdout.strip() == "true"

    def wait_ready(self, url: str, timeout: float = 600) -> float:
        """Seconds from `podman run` to the first 200 from url; fails with the container's log if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"container {self.name} exited before it was ready; its log ends:\n{self.logs()}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - self.started_at
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise AssertionError(f"container {self.name} was not ready within {timeout:g} s; its log ends:\n{self.logs()}")

    def stop(self, grace_seconds: int) -> int:
        """SIGTERM, then SIGKILL after grace_seconds (as the kubelet does); the exit code, and stopped_in."""
        began = time.monotonic()
        subprocess.run([*PODMAN, "stop", "--time", str(grace_seconds), self.name], capture_output=True)
        self.stopped_in = time.monotonic() - began
        out = subprocess.run([*PODMAN, "inspect", self.name, "--format", "{{.State.ExitCode}}"], capture_output=True, text=True)
        self.exit_code = int(out.stdout.strip() or -1)
        return self.exit_code

    def remove(self) -> None:
        subprocess.run([*PODMAN, "rm", "--force", "--time", "0", self.name], capture_output=True)


def podman_command(
    spec: dict[str, Any],
    image: str,
    name: str,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
) -> list[str]:
    """`podman run` for a Kubernetes container spec: its command, args, env and securityContext, the root
    filesystem read-only with a tmpfs /tmp, host network (the test's namespace), read-only bind mounts, and
    each of the spec's volumeMounts a writable tmpfs, as the emptyDir (or volume claim) a pod mounts there."""
    context = spec.get("securityContext") or {}
    flags = [*LIMITS, *TMPFS, "--read-only", "--network", "host", *security_flags(context)]
    for source, target in mounts:
        flags += ["--volume", f"{source}:{target}:ro,Z"]
    taken = {"/tmp", *(target for _, target in mounts)}  # mounted already, above
    for volume in spec.get("volumeMounts") or []:
        if volume["mountPath"] not in taken:
            taken.add(volume["mountPath"])
            flags += ["--tmpfs", f"{volume['mountPath']}:rw,size=256m,mode=1777"]
    values = {e["name"]: e["value"] for e in spec.get("env") or [] if "value" in e}
    for key, value in {**values, **(env or {})}.items():
        flags += ["--env", f"{key}={value}"]
    if spec.get("command"):
        flags += ["--entrypoint", json.dumps(spec["command"])]
    return [*PODMAN, "run", "--detach", "--pull", "never", "--name", name, *flags, image, *(spec.get("args") or []), *extra_args]


def start(
    spec: dict[str, Any],
    image: str,
    role: str,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
) -> Container:
    user = image_user(image)
    if not user or user.split(":")[0] in ("0", "root"):
        raise AssertionError(f"{image} runs as root ({user!r}); runAsNonRoot would refuse it")
    name = f"glassbox-test-{role}-{secrets.token_hex(3)}"
    command = podman_command(spec, image, name, extra_args, env, mounts)
    started_at = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"podman run of {image} failed: {result.stderr.strip()}\n{' '.join(command)}")
    return Container(name=name, command=command, started_at=started_at)
