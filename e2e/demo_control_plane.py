"""`make demo-cluster`: start the local API server, install the CRD,
run the operator, apply a sample and print the KServe objects it created.

    python e2e/demo_control_plane.py [SAMPLE.yaml] [--keep]

With --keep the control plane and the operator keep running for you to explore
with kubectl; otherwise everything stops at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from glassbox_testing import localcluster
from glassbox_testing.operator_process import start_operator, stop_operator

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sample", nargs="?", default=str(REPO / "crds" / "samples" / "tabular-pytorch-gpu.yaml"))
    parser.add_argument("--keep", action="store_true", help="leave the control plane and the operator running")
    args = parser.parse_args()

    cluster = localcluster.LocalCluster()
    started_here = cluster.running() is None
    print("1. starting the local Kubernetes 1.20 control plane (etcd, kube-apiserver, kube-controller-manager)")
    kubeconfig = cluster.up().kubeconfig
    print("2. kubectl apply -f crds/")
    print("   " + _kubectl(kubeconfig, "apply", "-f", str(REPO / "crds")).strip())
    localcluster.wait_established(["explainedmodels.glassbox.dev"], kubeconfig)
    log = REPO / ".glassbox" / "demo-operator.log"
    print(f"3. glassbox operator (log: {log})")
    operator = start_operator(kubeconfig, log)
    try:
        sample = Path(args.sample)
        print(f"4. kubectl apply -f {sample.relative_to(REPO) if sample.is_relative_to(REPO) else sample}")
        print("   " + _kubectl(kubeconfig, "apply", "-n", "default", "-f", str(sample)).strip())
        manifest = yaml.safe_load(sample.read_text())
        name = str(manifest["metadata"]["name"])
        existing = (manifest["spec"]["predictor"] or {}).get("inferenceServiceName")
        if existing:
            print(f"   (the sample explains an existing InferenceService '{existing}': the explainer waits for it)")
        else:
            _report_address(kubeconfig, name)
            _report_address(kubeconfig, f"{name}-explainer")
        if manifest["spec"].get("detector") is not None:
            _report_address(kubeconfig, f"{name}-detector")
        _show_what_the_operator_created(kubeconfig, name, bool(existing))
    finally:
        if args.keep:
            print(
                f"\nstill running: export KUBECONFIG={kubeconfig}; stop with `make cluster-down` and kill {operator.process.pid}"
            )
        else:
            stop_operator(operator)
            if started_here:
                cluster.down(quiet=True)
                print("\nstopped the operator and the control plane (`make demo-cluster ARGS=--keep` leaves them running)")
            else:
                print("\nstopped the operator; the control plane you started is still running")
    return 0


def _kubectl(kubeconfig: Path, *argv: str) -> str:
    return localcluster.kubectl(list(argv), kubeconfig=kubeconfig).stdout


def _report_address(kubeconfig: Path, isvc: str) -> None:
    """KServe's part (no KServe controller runs here): the in-cluster address its ingress reconciler reports."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _kubectl(
        kubeconfig, "get", "inferenceservices", "-n", "default", "-o", "name"
    ).count(f"/{isvc}\n"):
        time.sleep(0.3)
    url = f"http://{isvc}.default.svc.cluster.local"
    status = json.dumps({"status": {"address": {"url": url}}})
    _kubectl(kubeconfig, "patch", "inferenceservice", isvc, "-n", "default", "--subresource=status", "--type=merge", "-p", status)
    print(f"   playing KServe: InferenceService {isvc} gets status.address.url {url}")


def _status(kubeconfig: Path, name: str) -> dict[str, Any]:
    return json.loads(_kubectl(kubeconfig, "get", "xm", name, "-n", "default", "-o", "json")).get("status") or {}


def _show_what_the_operator_created(kubeconfig: Path, name: str, existing: bool) -> None:
    """Steps 5 to 7: the children, the graph's spec, and the ExplainedModel's conditions."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _status(kubeconfig, name).get("observedGeneration"):
        time.sleep(0.5)
    print("\n5. what the operator created:\n")
    print(_kubectl(kubeconfig, "get", "explainedmodels,inferenceservices,inferencegraphs", "-n", "default", "-o", "wide"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and f"{name}-graph" not in _kubectl(
        kubeconfig, "get", "inferencegraphs", "-n", "default", "-o", "name"
    ):
        time.sleep(0.3)
    if f"{name}-graph" in _kubectl(kubeconfig, "get", "inferencegraphs", "-n", "default", "-o", "name"):
        print(f"6. kubectl get inferencegraph {name}-graph -o yaml (spec):\n")
        graph = json.loads(_kubectl(kubeconfig, "get", "inferencegraph", f"{name}-graph", "-n", "default", "-o", "json"))
        print(yaml.safe_dump({"spec": graph["spec"]}, sort_keys=False))
    # The operator writes the status after the children it built: wait for one that no longer waits on addresses.
    deadline = time.monotonic() + (5 if existing else 30)
    while True:
        status = _status(kubeconfig, name)
        waiting = [c for c in status.get("conditions") or [] if str(c.get("reason", "")).startswith("Waiting")]
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    print("7. the ExplainedModel's conditions (no KServe controller runs here, so children stay Pending):\n")
    for condition in status.get("conditions") or []:
        print(f"   {condition['type']:<15} {condition['status']:<8} {condition['reason']}: {condition['message'][:110]}")


if __name__ == "__main__":
    sys.exit(main())
