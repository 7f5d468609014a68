"""Control-plane figures on the local Kubernetes API server.

    python bench/control_plane.py [--objects 200] [--memory-objects 500] [--out bench/results]

- children written: from each ExplainedModel's create call to the watch event
  of its last child (explainer InferenceService and InferenceGraph), for N
  objects created at once (median, 99th percentile);
- converge: from a spec change to the changed child's watch event;
- memory: the operator's peak resident size with M ExplainedModels.

The operator runs as `glassbox operator` with the admin kubeconfig; timings
are taken by a watch in this process, so they include the API server's
latency, not only the operator's.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from glassbox.contract.api import ExplainedModelSpec, explained_model
from glassbox_testing import localcluster
from glassbox_testing.measure import peak_rss_mb
from glassbox_testing.operator_process import start_operator, stop_operator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


SAMPLE = yaml.safe_load((REPO / "crds" / "samples" / "tabular-pytorch-gpu.yaml").read_text())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


class ChildWatch:
    """Records when each child kind/name is first seen, and when it is next modified. It also plays
    KServe's part the operator waits for: each new InferenceService gets its in-cluster address on its
    status at once (KServe's ingress reconciler; the explainer needs the predictor's, the graph both)."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.seen: dict[tuple[str, str], float] = {}
        self.modified: dict[tuple[str, str], float] = {}
        self._reporters = concurrent.futures.ThreadPoolExecutor(8)
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(group, version, plural), daemon=True)
            for group, version, plural in (
                ("serving.kserve.io", "v1beta1", "inferenceservices"),
                ("serving.kserve.io", "v1alpha1", "inferencegraphs"),
            )
        ]
        for thread in self._threads:
            thread.start()

    def _run(self, group: str, version: str, plural: str) -> None:
        stream = watch.Watch()
        while not self._stop.is_set():
            for event in stream.stream(
                self.objects.list_namespaced_custom_object, group, version, self.namespace, plural, timeout_seconds=5
            ):
                key = (plural, event["object"]["metadata"]["name"])
                now = time.perf_counter()
                if event["type"] == "ADDED":
                    self.seen.setdefault(key, now)
                    if plural == "inferenceservices":
                        self._reporters.submit(self._report_address, key[1])
                elif event["type"] == "MODIFIED":
                    self.modified[key] = now

    def _report_address(self, name: str) -> None:
        status = {"status": {"address": {"url": f"http://{name}.{self.namespace}.svc.cluster.local"}}}
        self.objects.patch_namespaced_custom_object_status(
            "serving.kserve.io", "v1beta1", self.namespace, "inferenceservices", name, status
        )

    def stop(self) -> None:
        self._stop.set()
        self._reporters.shutdown(wait=False)


def manifest(name: str, max_replicas: int = 4) -> dict[str, Any]:
    spec = ExplainedModelSpec.model_validate(SAMPLE["spec"])
    assert spec.predictor.autoscaling is not None
    spec.predictor.autoscaling = spec.predictor.autoscaling.model_copy(update={"max_replicas": max_replicas})
    return explained_model(name, spec)


def create_all(objects: client.CustomObjectsApi, namespace: str, names: list[str]) -> dict[str, float]:
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.perf_counter()
        objects.create_namespaced_custom_object("glassbox.dev", "v1alpha1", namespace, "explainedmodels", manifest(name))

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        list(pool.map(create, names))
    return created


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def last_child(children: ChildWatch, name: str) -> float | None:
    """When the last of an ExplainedModel's three children was first seen, or None before all three were."""
    keys = [("inferenceservices", name), ("inferenceservices", f"{name}-explainer"), ("inferencegraphs", f"{name}-graph")]
    times = [children.seen.get(k) for k in keys]
    return None if None in times else max(t for t in times if t is not None)


def converge_after_change(objects: Any, children: ChildWatch, namespace: str, sample: list[str]) -> list[float]:
    """Change maxReplicas on every object of `sample` at once; each one's seconds to its predictor's MODIFIED event."""
    changed_at: dict[str, float] = {}
    children.modified.clear()

    def change(name: str) -> None:
        changed_at[name] = time.perf_counter()
        objects.patch_namespaced_custom_object(
            "glassbox.dev",
            "v1alpha1",
            namespace,
            "explainedmodels",
            name,
            {"spec": {"predictor": {"autoscaling": {"maxReplicas": 6}}}},
        )

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(change, sample))
    wait_for(lambda: all(("inferenceservices", n) in children.modified for n in sample), 120)
    return [
        children.modified[("inferenceservices", n)] - changed_at[n]
        for n in sample
        if ("inferenceservices", n) in children.modified
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--memory-objects", type=int, default=500)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cluster = localcluster.LocalCluster(out / "work" / "cluster")
    info = cluster.up()
    operator = None
    try:
        localcluster.kubectl(["apply", "-f", str(REPO / "crds")], kubeconfig=info.kubeconfig)
        localcluster.wait_established(["explainedmodels.glassbox.dev"], info.kubeconfig)
        api = config.new_client_from_config(config_file=str(info.kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
        namespace = "bench"
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
        operator = start_operator(info.kubeconfig, out / "work" / "operator.log")
        children = ChildWatch(api, namespace)
        time.sleep(1)

        names = [f"model-{i:04d}" for i in range(args.objects)]
        created = create_all(objects, namespace, names)

        complete = wait_for(lambda: all(last_child(children, n) is not None for n in names), 300)
        written = [last_child(children, n) - created[n] for n in names if last_child(children, n) is not None]  # type: ignore[operator]
        sample = names[:50]
        converge = converge_after_change(objects, children, namespace, sample)

        more = [f"model-{i:04d}" for i in range(args.objects, args.memory_objects)]
        create_all(objects, namespace, more)
        everything = names + more
        wait_for(lambda: all(last_child(children, n) is not None for n in everything), 600)
        time.sleep(5)
        memory = peak_rss_mb(operator.process.pid)
        children.stop()
        results = {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "objects": args.objects,
            "all_children_written": complete,
            "children_written_s": {"median": statistics.median(written), "p99": percentile(written, 0.99), "max": max(written)},
            "converge_after_change_s": {
                "median": statistics.median(converge),
                "p99": percentile(converge, 0.99),
                "changed": len(sample),
            },
            "memory_objects": len(everything),
            "operator_peak_rss_mb": memory,
        }
    finally:
        if operator is not None:
            stop_operator(operator)
        cluster.down(quiet=True)
    (out / "control-plane.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    (out / "control-plane.md").write_text(report)
    print(report)
    return 0


def render(results: dict[str, Any]) -> str:
    written, converge = results["children_written_s"], results["converge_after_change_s"]
    return (
        "\n".join(
            [
                f"# Control plane ({results['when']})",
                "",
                f"Machine: {results['machine']}; Kubernetes 1.20.2 API server, etcd and operator on the same cores; the benchmark "
                "reports each InferenceService's address as KServe would, as soon as it appears. Command: `make bench`.",
                "",
                "| measure | median | p99 | goal |",
                "| --- | ---: | ---: | --- |",
                f"| create to children written, {results['objects']} ExplainedModels at once | {written['median']:.2f} s | {written['p99']:.2f} s | p99 < 1 s |",
                f"| spec change to child updated, {converge['changed']} at once | {converge['median']:.2f} s | {converge['p99']:.2f} s | |",
                f"| operator peak resident memory, {results['memory_objects']} ExplainedModels | {results['operator_peak_rss_mb']:.0f} MB | | < 250 MB |",
            ]
        )
        + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
