"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

    python -m glassbox_testing.localcluster up      # start (or reuse) it; prints the kubeconfig path
    python -m glassbox_testing.localcluster down    # stop it and delete its state
    python -m glassbox_testing.localcluster status

The API server authenticates with a static admin token and service-account
tokens, authorizes with RBAC, and the controller manager runs the garbage
collector, namespace, service-account and token controllers. There are no nodes
and no kubelet: objects are stored, validated, watched and garbage-collected,
which is everything an operator's tests need. KServe's CRDs are installed from
../shared/kserve-crds (or stand-ins generated from the kserve SDK's models when that folder is absent).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from glassbox_testing.kserve_stand_in_crds import stand_in_crds

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("GLASSBOX_CLUSTER_DIR", REPO / ".glassbox" / "cluster"))
CACHE = Path(os.environ.get("GLASSBOX_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"))
KUBE_BIN = CACHE / "kubernetes-1.20.2" / "bin"
TOOLS_BIN = CACHE / "tools" / "bin"
KSERVE_CRDS = Path(os.environ.get("GLASSBOX_KSERVE_CRDS", REPO.parent / "shared" / "kserve-crds"))
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")


class ClusterError(RuntimeError):
    pass


def tool(name: str) -> str:
    """kubectl or helm: the one on PATH if it runs, else the cached one from PyPI."""
    on_path = shutil.which(name)
    if on_path:
        probe = [on_path, "version", "--client"] if name == "kubectl" else [on_path, "version"]
        try:
            if subprocess.run(probe, capture_output=True, timeout=30).returncode == 0:
                return on_path
        except (OSError, subprocess.TimeoutExpired):
            pass
    cached = TOOLS_BIN / name
    if cached.exists():
        return str(cached)
    raise ClusterError(f"{name} not found on PATH or in {TOOLS_BIN}: run `make cluster-tools`")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return True


@dataclass
class ClusterInfo:
    server: str
    token: str
    kubeconfig: Path


def write_kubeconfig(
    path: Path, server: str, token: str, ca_file: Path, user: str = "admin", namespace: str | None = None
) -> Path:
    """A kubeconfig for a cluster with the given bearer token (used for the operator's ServiceAccount too)."""
    ca = base64.b64encode(ca_file.read_bytes()).decode()
    context: dict[str, Any] = {"cluster": "glassbox-local", "user": user}
    if namespace:
        context["namespace"] = namespace
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "glassbox-local", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "glassbox-local", "context": context}],
        "current-context": "glassbox-local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def kubectl(args: list[str], kubeconfig: Path, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run([tool("kubectl"), *args], capture_output=True, text=True, input=input, env=env, timeout=120)
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _drop_empty_string_defaults(node: Any) -> Any:
    # 1.20 servers reject `default: ""` in CRD schemas ("must be of type string").
    if isinstance(node, dict):
        return {k: _drop_empty_string_defaults(v) for k, v in node.items() if not (k == "default" and v == "")}
    if isinstance(node, list):
        return [_drop_empty_string_defaults(v) for v in node]
    return node


def kserve_crd_documents() -> list[dict[str, Any]]:
    """KServe's real CRDs, made acceptable to a 1.20 server; when they are absent, stand-ins whose schemas
    come from the kserve SDK's models (so unknown fields are pruned as KServe's CRDs prune them)."""
    if not KSERVE_CRDS.is_dir():
        print(f"note: {KSERVE_CRDS} is absent: installing KServe CRDs generated from the kserve SDK's models", file=sys.stderr)
        return stand_in_crds()
    documents = []
    for path in sorted(KSERVE_CRDS.glob("serving.kserve.io_*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append(_drop_empty_string_defaults(document))
    return documents


def install_kserve_crds(kubeconfig: Path) -> None:
    """Server-side apply (the InferenceService CRD is too large for client-side apply's annotation)."""
    documents = kserve_crd_documents()
    for document in documents:
        kubectl(
            ["apply", "--server-side", "--force-conflicts", "--field-manager=glassbox-e2e", "-f", "-"],
            kubeconfig=kubeconfig,
            input=json.dumps(document),
        )
    wait_established([document["metadata"]["name"] for document in documents], kubeconfig)


def wait_established(crd_names: list[str], kubeconfig: Path, timeout: float = 60) -> None:
    """Wait until the API server serves these CRDs (a fresh CRD has no conditions yet, so `kubectl wait` can fail)."""
    deadline = time.monotonic() + timeout
    pending = list(crd_names)
    while pending and time.monotonic() < deadline:
        jsonpath = '{.status.conditions[?(@.type=="Established")].status}'
        result = kubectl(["get", f"crd/{pending[0]}", "-o", f"jsonpath={jsonpath}"], kubeconfig=kubeconfig, check=False)
        if result.stdout.strip() == "True":
            pending.pop(0)
        else:
            time.sleep(0.3)
    if pending:
        raise ClusterError(f"CRDs not established after {timeout:.0f}s: {', '.join(pending)}")


class LocalCluster:
    """One control plane whose state (certificates, etcd data, logs, pids, kubeconfig) lives in `state`."""

    def __init__(self, state: Path = STATE):
        self.state = state
        self.kubeconfig = state / "kubeconfig"
        self.ca_file = state / "certs" / "apiserver.crt"

    def _read_info(self) -> ClusterInfo | None:
        path = self.state / "cluster.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return ClusterInfo(server=data["server"], token=data["token"], kubeconfig=self.kubeconfig)

    def _pids(self) -> dict[str, int]:
        pids = {}
        for name in COMPONENTS:
            pid_file = self.state / f"{name}.pid"
            if pid_file.exists():
                pids[name] = int(pid_file.read_text())
        return pids

    def _ready(self, info: ClusterInfo) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(f"{info.server}/readyz", headers={"Authorization": f"Bearer {info.token}"})
        try:
            with urllib.request.urlopen(request, context=context, timeout=3) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def running(self) -> ClusterInfo | None:
        """The running cluster, if all of its processes are up and the API server is ready."""
        info = self._read_info()
        pids = self._pids()
        if info is None or set(pids) != set(COMPONENTS) or not all(_alive(pid) for pid in pids.values()):
            return None
        return info if self._ready(info) else None

    def _start(self, name: str, argv: list[str]) -> int:
        with open(self.state / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        (self.state / f"{name}.pid").write_text(str(process.pid))
        return process.pid

    def _wait(self, what: str, check: Any, timeout: float, pid: int) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not _alive(pid):
                break
            time.sleep(0.5)
        log = self.state / f"{what}.log"
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise ClusterError(f"{what} did not become ready within {timeout:.0f}s; last lines of {log}:\n{tail}")

    def restart_api_server(self, down_seconds: float) -> None:
        """An outage: kill the API server (clients get refused connections, as after a crash) and start it
        again with the same arguments `down_seconds` later; etcd keeps the state."""
        pid = self._pids()["kube-apiserver"]
        argv = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(down_seconds)
        info = self._read_info()
        assert info is not None
        new_pid = self._start("kube-apiserver", argv)
        self._wait("kube-apiserver", lambda: self._ready(info), 90, new_pid)

    def up(self, with_kserve: bool = True) -> ClusterInfo:
        """Start the control plane, or return the one already running."""
        existing = self.running()
        if existing is not None:
            if with_kserve:
                install_kserve_crds(self.kubeconfig)
            return existing
        self.down(quiet=True)
        etcd = self._tools()
        certs, token = self._credentials()
        etcd_port = self._start_etcd(etcd)
        info = self._start_apiserver(etcd_port, certs, token)
        self._start_controller_manager(certs)
        if with_kserve:
            install_kserve_crds(self.kubeconfig)
        return info

    def _tools(self) -> str:
        """The path of etcd, once every binary the control plane runs is there."""
        for binary in (KUBE_BIN / "kube-apiserver", KUBE_BIN / "kube-controller-manager"):
            if not binary.exists():
                raise ClusterError(
                    f"{binary} is missing: run `make cluster-tools` (builds Kubernetes 1.20.2 once, about 8 minutes)"
                )
        etcd = shutil.which("etcd")
        if etcd is None:
            raise ClusterError("etcd is not installed: run `make cluster-tools` (installs Debian's etcd-server)")
        return etcd

    def _credentials(self) -> tuple[Path, str]:
        """The service-account signing key pair, and the admin's token (in the token file the API server reads)."""
        certs = self.state / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", str(certs / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(
            ["openssl", "rsa", "-in", str(certs / "sa.key"), "-pubout", "-out", str(certs / "sa.pub")],
            check=True,
            capture_output=True,
        )
        token = secrets.token_hex(24)
        (self.state / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
        return certs, token

    def _start_etcd(self, etcd: str) -> int:
        """etcd on loopback ports, healthy; its client port."""
        etcd_port, peer_port = _free_port(), _free_port()
        etcd_pid = self._start(
            "etcd",
            [
                etcd,
                "--name=glassbox",
                f"--data-dir={self.state / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=glassbox=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
        )

        def etcd_healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{etcd_port}/health", timeout=2) as answer:
                    return bool(json.loads(answer.read()).get("health") == "true")
            except (urllib.error.URLError, OSError, ValueError):
                return False

        self._wait("etcd", etcd_healthy, 30, etcd_pid)
        return etcd_port

    def _start_apiserver(self, etcd_port: int, certs: Path, token: str) -> ClusterInfo:
        """kube-apiserver on a loopback port, ready, with the kubeconfig written for it."""
        api_port = _free_port()
        server = f"https://127.0.0.1:{api_port}"
        api_pid = self._start(
            "kube-apiserver",
            [
                str(KUBE_BIN / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                "--insecure-port=0",
                f"--cert-dir={certs}",
                f"--token-auth-file={self.state / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                # OwnerReferencesPermissionEnforcement, as on OpenShift: proves the chart's RBAC covers blockOwnerDeletion.
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,ResourceQuota,OwnerReferencesPermissionEnforcement",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        # The serving certificate appears once the server starts; the kubeconfig needs it.
        self._wait("kube-apiserver", self.ca_file.exists, 60, api_pid)
        info = ClusterInfo(server=server, token=token, kubeconfig=self.kubeconfig)
        (self.state / "cluster.json").write_text(json.dumps({"server": server, "token": token}))
        self._wait("kube-apiserver", lambda: self._ready(info), 90, api_pid)
        write_kubeconfig(self.kubeconfig, server, token, self.ca_file)
        return info

    def _start_controller_manager(self, certs: Path) -> None:
        """The garbage collector, namespace and service-account controllers, working."""
        manager_pid = self._start(
            "kube-controller-manager",
            [
                str(KUBE_BIN / "kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig}",
                "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token",
                f"--service-account-private-key-file={certs / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                "--use-service-account-credentials=false",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                "--v=1",
            ],
        )

        def default_service_account_has_token() -> bool:
            result = kubectl(["get", "secrets", "-n", "default", "-o", "name"], kubeconfig=self.kubeconfig, check=False)
            return result.returncode == 0 and "default-token" in result.stdout

        # The controllers work once the default ServiceAccount has its token Secret.
        self._wait("kube-controller-manager", default_service_account_has_token, 90, manager_pid)

    def down(self, quiet: bool = False) -> None:
        """Stop every component and delete the cluster's state."""
        pids = self._pids()
        for name in reversed(COMPONENTS):
            pid = pids.get(name)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for pid in pids.values():
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        if self.state.exists():
            shutil.rmtree(self.state)
        self.state.mkdir(parents=True, exist_ok=True)
        if not quiet and pids:
            print("local control plane stopped")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    cluster = LocalCluster()
    try:
        if command == "up":
            info = cluster.up()
            print(f"local Kubernetes 1.20 control plane ready at {info.server}")
            print(f"kubeconfig: {info.kubeconfig}")
            print(f"  export KUBECONFIG={info.kubeconfig}")
        elif command == "down":
            cluster.down()
        elif command == "status":
            info = cluster.running()
            print(f"running at {info.server}, kubeconfig {info.kubeconfig}" if info else "not running")
            return 0 if info else 1
        else:
            print(__doc__)
            return 2
    except ClusterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
