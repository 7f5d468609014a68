"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

    python e2e/cluster/localcluster.py up      # start (or reuse) it; prints the kubeconfig path
    python e2e/cluster/localcluster.py down    # stop it and delete its state
    python e2e/cluster/localcluster.py status

The API server authenticates with a static admin token and service-account
tokens, authorizes with RBAC, and the controller manager runs the garbage
collector, namespace, service-account and token controllers. There are no nodes
and no kubelet: objects are stored, validated, watched and garbage-collected,
which is everything an operator's tests need. KServe's CRDs are installed from
../shared/kserve-crds (or permissive stand-ins when that folder is absent).
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

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("GLASSBOX_CLUSTER_DIR", REPO / ".glassbox" / "cluster"))
CACHE = Path(os.environ.get("GLASSBOX_CACHE", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "glassbox"))
KUBE_BIN = CACHE / "kubernetes-1.20.2" / "bin"
TOOLS_BIN = CACHE / "tools" / "bin"
KSERVE_CRDS = Path(os.environ.get("GLASSBOX_KSERVE_CRDS", REPO.parent / "shared" / "kserve-crds"))
KUBECONFIG = STATE / "kubeconfig"
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


def _read_info() -> ClusterInfo | None:
    path = STATE / "cluster.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return ClusterInfo(server=data["server"], token=data["token"], kubeconfig=KUBECONFIG)


def _pids() -> dict[str, int]:
    pids = {}
    for name in COMPONENTS:
        pid_file = STATE / f"{name}.pid"
        if pid_file.exists():
            pids[name] = int(pid_file.read_text())
    return pids


def _ready(info: ClusterInfo) -> bool:
    context = ssl.create_default_context(cafile=str(STATE / "certs" / "apiserver.crt"))
    request = urllib.request.Request(f"{info.server}/readyz", headers={"Authorization": f"Bearer {info.token}"})
    try:
        with urllib.request.urlopen(request, context=context, timeout=3) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError, ssl.SSLError):
        return False


def running() -> ClusterInfo | None:
    """The running local cluster, if all of its processes are up and the API server is ready."""
    info = _read_info()
    pids = _pids()
    if info is None or set(pids) != set(COMPONENTS) or not all(_alive(pid) for pid in pids.values()):
        return None
    return info if _ready(info) else None


def _start(name: str, argv: list[str]) -> int:
    log = open(STATE / f"{name}.log", "ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    (STATE / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def _wait(what: str, check: Any, timeout: float, pid: int, log_name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not _alive(pid):
            break
        time.sleep(0.5)
    tail = (STATE / f"{log_name}.log").read_text(errors="replace")[-3000:]
    raise ClusterError(f"{what} did not become ready within {timeout:.0f}s; last lines of {STATE / log_name}.log:\n{tail}")


def _kubeconfig(server: str, token: str) -> dict[str, Any]:
    ca = base64.b64encode((STATE / "certs" / "apiserver.crt").read_bytes()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "glassbox-local", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "admin", "user": {"token": token}}],
        "contexts": [{"name": "glassbox-local", "context": {"cluster": "glassbox-local", "user": "admin"}}],
        "current-context": "glassbox-local",
    }


def write_kubeconfig(path: Path, server: str, token: str, user: str = "admin", namespace: str | None = None) -> Path:
    """A kubeconfig for this cluster with the given bearer token (used for the operator's ServiceAccount too)."""
    config = _kubeconfig(server, token)
    config["users"][0]["name"] = user
    config["contexts"][0]["context"]["user"] = user
    if namespace:
        config["contexts"][0]["context"]["namespace"] = namespace
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def up(quiet: bool = False) -> ClusterInfo:
    """Start the control plane, or return the one already running."""
    existing = running()
    if existing is not None:
        install_kserve_crds(existing)
        return existing
    down(quiet=True)
    for binary in (KUBE_BIN / "kube-apiserver", KUBE_BIN / "kube-controller-manager"):
        if not binary.exists():
            raise ClusterError(f"{binary} is missing: run `make cluster-tools` (builds Kubernetes 1.20.2 once, about 8 minutes)")
    etcd = shutil.which("etcd")
    if etcd is None:
        raise ClusterError("etcd is not installed: run `make cluster-tools` (installs Debian's etcd-server)")

    certs = STATE / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "genrsa", "-out", str(certs / "sa.key"), "2048"], check=True, capture_output=True)
    subprocess.run(["openssl", "rsa", "-in", str(certs / "sa.key"), "-pubout", "-out", str(certs / "sa.pub")], check=True, capture_output=True)
    token = secrets.token_hex(24)
    (STATE / "tokens.csv").write_text(f'{token},admin,admin-uid,"system:masters"\n')
    etcd_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
    server = f"https://127.0.0.1:{api_port}"

    etcd_pid = _start(
        "etcd",
        [
            etcd, "--name=glassbox", f"--data-dir={STATE / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}", f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=glassbox=http://127.0.0.1:{peer_port}", "--log-level=warn",
        ],
    )

    def etcd_healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{etcd_port}/health", timeout=2) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (urllib.error.URLError, OSError, ValueError):
            return False

    _wait("etcd", etcd_healthy, 30, etcd_pid, "etcd")

    api_pid = _start(
        "kube-apiserver",
        [
            str(KUBE_BIN / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}", "--insecure-port=0",
            f"--cert-dir={certs}",
            f"--token-auth-file={STATE / 'tokens.csv'}",
            "--authorization-mode=RBAC", "--anonymous-auth=false",
            f"--service-account-key-file={certs / 'sa.pub'}",
            f"--service-account-signing-key-file={certs / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass,ResourceQuota,OwnerReferencesPermissionEnforcement",
            "--allow-privileged=true", "--v=1",
        ],
    )
    # The serving certificate appears once the server starts; the kubeconfig needs it.
    _wait("kube-apiserver", lambda: (certs / "apiserver.crt").exists(), 60, api_pid, "kube-apiserver")
    info = ClusterInfo(server=server, token=token, kubeconfig=KUBECONFIG)
    (STATE / "cluster.json").write_text(json.dumps({"server": server, "token": token}))
    _wait("kube-apiserver", lambda: _ready(info), 90, api_pid, "kube-apiserver")
    write_kubeconfig(KUBECONFIG, server, token)

    _start(
        "kube-controller-manager",
        [
            str(KUBE_BIN / "kube-controller-manager"),
            f"--kubeconfig={KUBECONFIG}",
            "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token",
            f"--service-account-private-key-file={certs / 'sa.key'}",
            f"--root-ca-file={certs / 'apiserver.crt'}",
            "--use-service-account-credentials=false",
            "--leader-elect=false", "--port=0", "--secure-port=0", "--v=1",
        ],
    )
    # The token controller is working once the default namespace's ServiceAccount has its token Secret.
    _wait(
        "kube-controller-manager",
        lambda: _kubectl_ok(["get", "secrets", "-n", "default", "-o", "name"], contains="default-token"),
        90, _pids()["kube-controller-manager"], "kube-controller-manager",
    )
    install_kserve_crds(info)
    if not quiet:
        print(f"local Kubernetes 1.20 control plane ready at {server}")
    return info


def kubectl(args: list[str], kubeconfig: Path = KUBECONFIG, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    result = subprocess.run([tool("kubectl"), *args], capture_output=True, text=True, input=input, env=env, timeout=120)
    if check and result.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result


def _kubectl_ok(args: list[str], contains: str) -> bool:
    try:
        result = kubectl(args, check=False)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and contains in result.stdout


def _drop_empty_string_defaults(node: Any) -> Any:
    # 1.20 servers reject `default: ""` in CRD schemas ("must be of type string").
    if isinstance(node, dict):
        return {k: _drop_empty_string_defaults(v) for k, v in node.items() if not (k == "default" and v == "")}
    if isinstance(node, list):
        return [_drop_empty_string_defaults(v) for v in node]
    return node


def _stand_in_crds() -> list[dict[str, Any]]:
    def crd(kind: str, plural: str, version: str) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.serving.kserve.io"},
            "spec": {
                "group": "serving.kserve.io",
                "scope": "Namespaced",
                "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                "versions": [{
                    "name": version, "served": True, "storage": True, "subresources": {"status": {}},
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }],
            },
        }

    return [crd("InferenceService", "inferenceservices", "v1beta1"), crd("InferenceGraph", "inferencegraphs", "v1alpha1")]


def kserve_crd_documents() -> list[dict[str, Any]]:
    """KServe's real CRDs, made acceptable to a 1.20 server; stand-ins that accept any spec when they are absent."""
    if not KSERVE_CRDS.is_dir():
        print(f"warning: {KSERVE_CRDS} is absent: installing KServe stand-in CRDs that accept any spec", file=sys.stderr)
        return _stand_in_crds()
    documents = []
    for path in sorted(KSERVE_CRDS.glob("serving.kserve.io_*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                documents.append(_drop_empty_string_defaults(document))
    return documents


def install_kserve_crds(info: ClusterInfo, kubeconfig: Path | None = None) -> None:
    """Server-side apply (the InferenceService CRD is too large for client-side apply's annotation)."""
    kubeconfig = kubeconfig or info.kubeconfig
    for document in kserve_crd_documents():
        kubectl(["apply", "--server-side", "--force-conflicts", "--field-manager=glassbox-e2e", "-f", "-"],
                kubeconfig=kubeconfig, input=json.dumps(document))
    names = [document["metadata"]["name"] for document in kserve_crd_documents()]
    kubectl(["wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{name}" for name in names]], kubeconfig=kubeconfig)


def down(quiet: bool = False) -> None:
    """Stop every component and delete the cluster's state."""
    pids = _pids()
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
    if STATE.exists():
        shutil.rmtree(STATE)
    STATE.mkdir(parents=True, exist_ok=True)
    if not quiet and pids:
        print("local control plane stopped")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    try:
        if command == "up":
            info = up()
            print(f"kubeconfig: {info.kubeconfig}")
            print(f"  export KUBECONFIG={info.kubeconfig}")
        elif command == "down":
            down()
        elif command == "status":
            info = running()
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
