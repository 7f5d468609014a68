"""The control plane against the fastest the API server allows, in one run on the local Kubernetes API server.

    python bench/control_plane.py [--counts 50,200,1000] [--out bench/results]
    python bench/control_plane.py --restart-only 1000    (the restart alone, twice; prints its figures)

For each count N, in namespaces of their own:

- the operator: N ExplainedModels created at once; for each, the seconds from its create call to the watch
  event of its last child (the explainer InferenceService or the InferenceGraph);
- the floor: a minimal client that makes the same writes for N objects, concurrently, as fast as the API
  server takes them: the create, then the predictor's server-side apply, the explainer's once the predictor's
  address is reported, the graph's once the explainer's is, and one status patch of the operator's shape. No
  reads, no retries, no framework: what no operator can beat on this machine at this moment.

Both wait for the addresses KServe would report: the benchmark plays KServe's part, reporting each new
InferenceService's address on its status as soon as it appears. The report gives the operator's median and
99th percentile as ratios to the floor's, and the time per object (from the first create to the last child,
over N) as N grows. Then: a spec change to 50 objects at once (seconds to the changed child); the operator's
peak resident memory; where py-spy is installed, where the operator's time goes with the second count created
once more, in a run of its own (its threads' samples by what they were doing); and, the operator restarted with
every object in place, the seconds until one newly created ExplainedModel has its children. Before any of it,
the benchmark waits until Kubernetes' garbage collector watches ExplainedModels (`wait_for_garbage_collector`). The operator acts in its namespaces only, so it never sees the
floor's objects. Where the API server's own work goes, per object: the requests it served, by verb and
resource, counted on its /metrics (`apiserver_request_total`) across each run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch

from glassbox.contract.api import ExplainedModelSpec, explained_model
from glassbox.operator.builders import (
    OperatorConfig,
    Parent,
    build_explainer_isvc,
    build_inference_graph,
    build_predictor_isvc,
    explainer_name,
    graph_name,
    predictor_name,
    predictor_target_of_own,
)
from glassbox_testing import localcluster
from glassbox_testing.measure import peak_rss_mb
from glassbox_testing.operator_process import start_operator, stop_operator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = yaml.safe_load((REPO / "crds" / "samples" / "tabular-pytorch-gpu.yaml").read_text())
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
GRAPHS = ("serving.kserve.io", "v1alpha1", "inferencegraphs")
XM = ("glassbox.dev", "v1alpha1", "explainedmodels")
CLIENT_THREADS = 32


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def spec_of(max_replicas: int = 4) -> ExplainedModelSpec:
    spec = ExplainedModelSpec.model_validate(SAMPLE["spec"])
    assert spec.predictor.autoscaling is not None
    spec.predictor.autoscaling = spec.predictor.autoscaling.model_copy(update={"max_replicas": max_replicas})
    return spec


def address(namespace: str, name: str) -> str:
    return f"http://{name}.{namespace}.svc.cluster.local"


class ChildWatch:
    """Cluster-wide: when each InferenceService and InferenceGraph (namespace, name) is first seen and next
    modified. It plays KServe's part: each new InferenceService gets its in-cluster address on its status at
    once (KServe's ingress reconciler), and `wait_reported` tells when that report is written."""

    def __init__(self, api: client.ApiClient):
        self.objects = client.CustomObjectsApi(api)
        self.seen: dict[tuple[str, str, str], float] = {}
        self.modified: dict[tuple[str, str, str], float] = {}
        self.reported: set[tuple[str, str]] = set()
        self._reporting: set[tuple[str, str, str]] = set()
        # Called (namespace, name) once an InferenceService's address is reported: the floor's next step.
        self.on_reported: Callable[[str, str], None] | None = None
        self._changed = threading.Condition()
        self._reporters = concurrent.futures.ThreadPoolExecutor(8)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=kind, daemon=True) for kind in (KSERVE, GRAPHS)]
        for thread in self._threads:
            thread.start()

    def _run(self, group: str, version: str, plural: str) -> None:
        """One watch, resumed from the last resourceVersion it saw each time its short server timeout ends it
        (so that `stop` is noticed): a new listing of every object each time would load the API server and
        this process with thousands of objects every few seconds, and miss no less."""
        stream = watch.Watch()
        resource_version: str | None = None
        while not self._stop.is_set():
            resume = {"resource_version": resource_version} if resource_version else {}
            try:
                for event in stream.stream(
                    self.objects.list_cluster_custom_object, group, version, plural, timeout_seconds=5, **resume
                ):
                    self._saw(plural, event)
                resource_version = stream.resource_version
            except client.ApiException as error:  # 410: too old to resume; watch again from a fresh listing
                if error.status != 410:
                    raise
                resource_version = None

    def _saw(self, plural: str, event: dict[str, Any]) -> None:
        if event["type"] not in ("ADDED", "MODIFIED"):
            return
        meta = event["object"]["metadata"]
        key = (plural, meta["namespace"], meta["name"])
        now = time.perf_counter()
        if event["type"] == "ADDED":
            self.seen.setdefault(key, now)
            # Once per object: a listing after a watch too old to resume sends every object again.
            if plural == "inferenceservices" and key not in self._reporting:
                self._reporting.add(key)
                self._reporters.submit(self._report_address, meta["namespace"], meta["name"])
        else:
            self.modified[key] = now

    def _report_address(self, namespace: str, name: str) -> None:
        status = {"status": {"url": address(namespace, name), "address": {"url": address(namespace, name)}}}
        self.objects.patch_namespaced_custom_object_status(*KSERVE[:2], namespace, KSERVE[2], name, status)
        with self._changed:
            self.reported.add((namespace, name))
            self._changed.notify_all()
        if self.on_reported is not None:
            self.on_reported(namespace, name)

    def last_child(self, namespace: str, name: str) -> float | None:
        """When the last of an ExplainedModel's three children was first seen, or None before all three were."""
        keys = [
            ("inferenceservices", namespace, name),
            ("inferenceservices", namespace, explainer_name(name)),
            ("inferencegraphs", namespace, graph_name(name)),
        ]
        times = [self.seen.get(k) for k in keys]
        return None if None in times else max(t for t in times if t is not None)

    def stop(self) -> None:
        self._stop.set()
        self._reporters.shutdown(wait=False)


def wait_for(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def request_counts(api: client.ApiClient) -> Counter[str]:
    """The API server's served requests so far, by verb and resource (its own /metrics)."""
    request = api.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    text = api.call_api(*request).read().decode()
    counts: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
        resource = labels.get("resource", '""').strip('"')
        subresource = labels.get("subresource", '""').strip('"')
        verb = labels.get("verb", '""').strip('"')
        if resource in ("explainedmodels", "inferenceservices", "inferencegraphs", "events", "poddisruptionbudgets"):
            counts[f"{verb} {resource}{'/' + subresource if subresource else ''}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def per_object(before: Counter[str], after: Counter[str], count: int) -> dict[str, float]:
    return {key: round((after[key] - before[key]) / count, 2) for key in sorted(after) if after[key] > before[key]}


def create_all(objects: client.CustomObjectsApi, namespace: str, names: list[str], spec: ExplainedModelSpec) -> dict[str, float]:
    created: dict[str, float] = {}

    def create(name: str) -> None:
        created[name] = time.perf_counter()
        objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], explained_model(name, spec))

    with concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, names))
    return created


def start_profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the operator for `seconds` (where py-spy is installed: `pip install py-spy`), or None."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("no py-spy: the profile is left out (pip install py-spy)", flush=True)
        return None
    command = [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "50", "-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def where_the_time_goes(raw: Path) -> dict[str, float]:
    """Shares of the operator's samples (all threads, waiting included), by what each thread was doing: an API
    call of the reconciler's (by kind), the reconciler's own work, the watches', or kopf's (its idle loop, the rest)."""
    shares: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        if not line.strip():
            continue
        stack, count = line.rsplit(" ", 1)
        frames = [frame.split(" (", 1)[0] for frame in stack.split(";")]
        call = next((f for f in frames if f.startswith("KubeApi.")), None)
        if call is not None:
            category = f"waiting on the API server: {call.removeprefix('KubeApi.')}"
        elif any("reconcile" in f.lower() for f in frames):
            category = "the reconciler's own work (builders, validation, status)"
        elif "operator/informer.py" in stack:
            category = "the operator's watches (listing, decoding, caches, queueing)"
        elif frames[-1] == "EpollSelector.select":
            category = "idle (kopf's event loop waiting)"
        elif any("kopf" in f for f in stack.split(";")):
            category = "kopf (its start-up, event loop and probe)"
        else:
            category = "other"
        shares[category] += int(count)
    total = sum(shares.values()) or 1
    return {category: round(value / total, 3) for category, value in shares.most_common()}


def operator_run(objects: Any, children: ChildWatch, namespace: str, count: int) -> dict[str, Any]:
    names = [f"model-{i:04d}" for i in range(count)]
    began = time.perf_counter()
    created = create_all(objects, namespace, names, spec_of())
    complete = wait_for(lambda: all(children.last_child(namespace, n) is not None for n in names), 60 + count)
    return timings(children, namespace, names, created, began, complete)


def floor_run(objects: Any, children: ChildWatch, namespace: str, count: int, status: dict[str, Any]) -> dict[str, Any]:
    """What the operator writes for `count` objects, by a client that does nothing else, pipelined as the operator
    is: every create and predictor apply at once, each explainer's apply as soon as its predictor's address is
    reported, each graph's and the status patch as soon as the explainer's is (no thread waits for a report)."""
    names = [f"model-{i:04d}" for i in range(count)]
    spec, operator = spec_of(), OperatorConfig()
    created: dict[str, float] = {}
    parents: dict[str, Parent] = {}
    explainers = {explainer_name(n): n for n in names}
    failures: list[BaseException] = []
    pool = concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS)

    def target_of(name: str) -> Any:
        reported = {"metadata": {"name": name}, "status": {"address": {"url": address(namespace, name)}}}
        return predictor_target_of_own(parents[name], spec, reported)

    def first(name: str) -> None:
        created[name] = time.perf_counter()
        body = objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], explained_model(name, spec))
        parents[name] = Parent(name=name, namespace=namespace, uid=body["metadata"]["uid"], generation=1)
        apply(objects, build_predictor_isvc(parents[name], spec, operator))

    def after_predictor(name: str) -> None:
        apply(objects, build_explainer_isvc(parents[name], spec, target_of(name), operator, 1))

    def after_explainer(name: str) -> None:
        explainer = address(namespace, explainer_name(name))
        apply(objects, build_inference_graph(parents[name], spec, target_of(name), explainer))
        objects.patch_namespaced_custom_object_status(*XM[:2], namespace, XM[2], name, {"status": status})

    def step(work: Callable[[str], None], name: str) -> None:
        try:
            work(name)
        except BaseException as error:  # noqa: BLE001  (reported below)
            failures.append(error)

    def reported(report_namespace: str, isvc: str) -> None:
        if report_namespace != namespace:
            return
        if isvc in parents and predictor_name(isvc, spec) == isvc:
            pool.submit(step, after_predictor, isvc)
        elif isvc in explainers:
            pool.submit(step, after_explainer, explainers[isvc])

    children.on_reported = reported
    began = time.perf_counter()
    for name in names:
        pool.submit(step, first, name)
    complete = wait_for(lambda: all(children.last_child(namespace, n) is not None for n in names), 60 + count)
    children.on_reported = None
    pool.shutdown(wait=True)
    if failures:
        raise RuntimeError(f"the floor's client failed {len(failures)} times; the first: {failures[0]!r}")
    return timings(children, namespace, names, created, began, complete)


def settle(api: client.ApiClient, quiet_seconds: float = 3.0, longest: float = 300.0) -> None:
    """Wait until the API server has served no request of the kinds counted for `quiet_seconds` (the operator's
    last status patches done), so that one run's requests are not counted in the next."""
    deadline = time.monotonic() + longest
    last, since = request_counts(api), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = request_counts(api)
        changed = {k: v for k, v in now.items() if not k.startswith("WATCH")} != {
            k: v for k, v in last.items() if not k.startswith("WATCH")
        }
        if changed:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_seconds:
            return


def apply(objects: Any, body: dict[str, Any] | None) -> None:
    assert body is not None
    group, version = body["apiVersion"].split("/")
    plural = "inferencegraphs" if body["kind"] == "InferenceGraph" else "inferenceservices"
    objects.patch_namespaced_custom_object(
        group,
        version,
        body["metadata"]["namespace"],
        plural,
        body["metadata"]["name"],
        body,
        field_manager="bench-floor",
        force=True,
        _content_type="application/apply-patch+yaml",
        _preload_content=False,
    )


def timings(
    children: ChildWatch, namespace: str, names: list[str], created: dict[str, float], began: float, complete: bool
) -> dict[str, Any]:
    last = {n: children.last_child(namespace, n) for n in names}
    written = [t - created[n] for n, t in last.items() if t is not None]
    finished = max(t for t in last.values() if t is not None)
    return {
        "complete": complete,
        "median": statistics.median(written),
        "p99": percentile(written, 0.99),
        "per_object_ms": 1000 * (finished - began) / len(names),
    }


def converge_after_change(objects: Any, children: ChildWatch, namespace: str, sample: list[str]) -> list[float]:
    """Change maxReplicas on every object of `sample` at once; each one's seconds to its predictor's MODIFIED event."""
    changed_at: dict[str, float] = {}
    children.modified.clear()

    def change(name: str) -> None:
        changed_at[name] = time.perf_counter()
        patch = {"spec": {"predictor": {"autoscaling": {"maxReplicas": 6}}}}
        objects.patch_namespaced_custom_object(*XM[:2], namespace, XM[2], name, patch)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(change, sample))
    key = lambda n: ("inferenceservices", namespace, n)  # noqa: E731
    wait_for(lambda: all(key(n) in children.modified for n in sample), 120)
    return [children.modified[key(n)] - changed_at[n] for n in sample if key(n) in children.modified]


def restart_run(
    objects: Any,
    children: ChildWatch,
    info: Any,
    flags: list[str],
    namespace: str,
    log: Path,
    running: Any,
    name: str = "model-after-restart",
    profile: tuple[int, Path] | None = None,
) -> tuple[float | None, Any]:
    """Stop the operator, start it again over every object in place, create one more: seconds to its children.
    With `profile` (seconds, file), py-spy samples the restarted operator from its start."""
    stop_operator(running)
    running = start_operator(info.kubeconfig, log, flags)
    profiling = start_profile(running.process.pid, profile[0], profile[1]) if profile else None
    created = create_all(objects, namespace, [name], spec_of())[name]
    wait_for(lambda: children.last_child(namespace, name) is not None, 300)
    if profiling is not None:
        profiling.wait()
    last = children.last_child(namespace, name)
    return (None if last is None else last - created), running


def wait_for_garbage_collector(api: client.ApiClient, core: client.CoreV1Api, objects: Any, longest: float = 120.0) -> float:
    """Waits until kube-controller-manager's garbage collector watches ExplainedModels; the seconds waited.

    Until it does (it takes a new CRD in at a later discovery, every 30 s), a child that names an ExplainedModel
    as owner makes it read that owner from the API server: 1.5 to 2 reads per object, measured, landing in
    whichever run (the operator's or the floor's) came in that window, and slowing it. The probe: every few
    seconds a ConfigMap owned by an ExplainedModel made at the start. The collector reads the owner once it can
    map the kind, and stops reading once it watches the kind (the owner is then in its own graph): ready once a
    probe child made no read after one did, or after `longest` seconds with no read at all."""
    namespace = "gc-probe"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    owner = objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], explained_model("owner", spec_of()))
    reference = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": "owner", "uid": owner["metadata"]["uid"]}
    began = time.monotonic()
    read_once = False
    attempt = 0
    while time.monotonic() - began < longest:
        attempt += 1
        before = request_counts(api)["LIST explainedmodels"]
        meta = client.V1ObjectMeta(name=f"child-{attempt}", owner_references=[reference])
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=meta))
        time.sleep(5)
        read = request_counts(api)["LIST explainedmodels"] > before
        if read_once and not read:
            break
        read_once = read_once or read
    return time.monotonic() - began


@contextlib.contextmanager
def local_api_server(out: Path) -> Iterator[tuple[Any, client.ApiClient, client.CoreV1Api, client.CustomObjectsApi]]:
    """The local API server with Glassbox's CRD established, and a client sized for the benchmark's threads:
    (the cluster's connection info, the client, its core API, its custom-objects API). Stopped on leaving."""
    cluster = localcluster.LocalCluster(out / "work" / "cluster")
    info = cluster.up()
    try:
        localcluster.kubectl(["apply", "-f", str(REPO / "crds")], kubeconfig=info.kubeconfig)
        localcluster.wait_established(["explainedmodels.glassbox.dev"], info.kubeconfig)
        api = config.new_client_from_config(config_file=str(info.kubeconfig))
        api.configuration.connection_pool_maxsize = CLIENT_THREADS + 8
        yield info, api, client.CoreV1Api(api), client.CustomObjectsApi(api)
    finally:
        cluster.down(quiet=True)


def restart_only(count: int, out: Path, operator_args: list[str], restarts: int = 2, profile_seconds: int = 0) -> int:
    """`--restart-only N`: N ExplainedModels made by the operator alone (no floor), then `restarts` times: the
    operator restarted and one more object created, the seconds to its children printed. What a change to the
    start-up is measured with, in a third of the full run's time. With `profile_seconds`, py-spy samples each
    restarted operator that long; where its time went is printed (the samples are kept in the work folder)."""
    running = None
    with local_api_server(out) as (info, api, core, objects):
        try:
            namespace = "restart"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            flags = [f"--namespace={namespace}", *operator_args]
            log = out / "work" / "operator.log"
            running = start_operator(info.kubeconfig, log, flags)
            children = ChildWatch(api)
            time.sleep(1)
            made = operator_run(objects, children, namespace, count)
            print(f"{count} objects: median {made['median']:.2f} s, p99 {made['p99']:.2f} s", flush=True)
            settle(api)
            for attempt in range(1, restarts + 1):
                raw = out / "work" / f"restart-{attempt}-profile.txt"
                seconds, running = restart_run(
                    objects,
                    children,
                    info,
                    flags,
                    namespace,
                    log,
                    running,
                    name=f"model-after-restart-{attempt}",
                    profile=(profile_seconds, raw) if profile_seconds else None,
                )
                shown = "not written in 300 s" if seconds is None else f"{seconds:.2f} s"
                print(f"restart {attempt} with {count + attempt - 1} in place: a new one's children after {shown}", flush=True)
                if profile_seconds and raw.exists():
                    print(json.dumps(where_the_time_goes(raw), indent=1), flush=True)
                settle(api)
            print(f"operator peak resident memory: {peak_rss_mb(running.process.pid):.0f} MB", flush=True)
            children.stop()
        finally:
            if running is not None:
                stop_operator(running)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="50,200,1000", help="object counts, comma-separated")
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--profile-seconds", type=int, default=20, help="py-spy's sampling of the operator's second run")
    parser.add_argument("--operator-args", default="", help="more flags for `glassbox operator` (e.g. --read-children-from-api)")
    parser.add_argument(
        "--restart-only", type=int, metavar="N", help="only the restart: N objects by the operator alone, two restarts"
    )
    parser.add_argument(
        "--profile-restart", action="store_true", help="with --restart-only: py-spy samples each restarted operator"
    )
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.restart_only:
        profile_seconds = args.profile_seconds if args.profile_restart else 0
        return restart_only(args.restart_only, out, args.operator_args.split(), profile_seconds=profile_seconds)

    running = None
    with local_api_server(out) as (info, api, core, objects):
        try:
            # The comparison's requests are counted per run: the collector's reads must not land in one of them.
            waited = wait_for_garbage_collector(api, core, objects)
            print(f"Kubernetes' garbage collector knew ExplainedModels after {waited:.0f} s", flush=True)
            profiled = counts[min(1, len(counts) - 1)]
            # The profiled run has its own namespace and is not one of the runs against the floor: py-spy takes
            # some of the two cores, and would slow the operator's side of a comparison only.
            operated = [f"operator-{c}" for c in counts] + ["operator-profiled"]
            for namespace in operated + [f"floor-{c}" for c in counts]:
                core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
            log = out / "work" / "operator.log"
            flags = [f"--namespace={n}" for n in operated] + args.operator_args.split()
            running = start_operator(info.kubeconfig, log, flags)
            children = ChildWatch(api)
            time.sleep(1)

            rows: list[dict[str, Any]] = []
            status: dict[str, Any] | None = None
            for count in counts:
                print(f"{count} objects: the operator", flush=True)
                before = request_counts(api)
                operated_run = operator_run(objects, children, f"operator-{count}", count)
                settle(api)
                operator_requests = per_object(before, request_counts(api), count)
                if status is None:  # the floor writes one status of the operator's own shape
                    written = objects.get_namespaced_custom_object(*XM[:2], f"operator-{count}", XM[2], "model-0000")
                    status = {k: v for k, v in (written.get("status") or {}).items() if k != "observedGeneration"}
                print(f"{count} objects: the floor", flush=True)
                before = request_counts(api)
                floor = floor_run(objects, children, f"floor-{count}", count, status)
                settle(api)
                floor_requests = per_object(before, request_counts(api), count)
                rows.append(
                    {
                        "objects": count,
                        "operator": operated_run,
                        "floor": floor,
                        "ratio_median": operated_run["median"] / floor["median"],
                        "ratio_p99": operated_run["p99"] / floor["p99"],
                        "operator_requests_per_object": operator_requests,
                        "floor_requests_per_object": floor_requests,
                    }
                )
                print(json.dumps(rows[-1], indent=1), flush=True)

            middle = f"operator-{counts[min(1, len(counts) - 1)]}"
            converge = converge_after_change(objects, children, middle, [f"model-{i:04d}" for i in range(min(50, counts[0]))])
            memory = peak_rss_mb(running.process.pid)
            print(f"{profiled} objects, profiled", flush=True)
            profile = {}
            profiling = start_profile(running.process.pid, args.profile_seconds, out / "work" / "operator-profile.txt")
            operator_run(objects, children, "operator-profiled", profiled)
            if profiling is not None:
                profiling.wait()
                profile = where_the_time_goes(out / "work" / "operator-profile.txt")
            settle(api)
            print("restart", flush=True)
            restarted_log = out / "work" / "operator-restarted.log"  # the first run's log is kept as it was
            restart_s, running = restart_run(objects, children, info, flags, operated[-1], restarted_log, running)
            children.stop()
            results = {
                "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                "operator_args": args.operator_args,
                "rows": rows,
                "converge_after_change_s": {
                    "median": statistics.median(converge),
                    "p99": percentile(converge, 0.99),
                    "changed": len(converge),
                },
                "memory_objects": sum(counts),
                "operator_peak_rss_mb": memory,
                "restart_new_object_s": restart_s,
                "restart_objects": sum(counts) + profiled,
                "profile": {"objects": profiled, "seconds": args.profile_seconds, "shares": profile},
            }
        finally:
            if running is not None:
                stop_operator(running)
    (out / "control-plane.json").write_text(json.dumps(results, indent=1))
    report = render(results)
    (out / "control-plane.md").write_text(report)
    print(report)
    return 0


def render(results: dict[str, Any]) -> str:
    lines = [
        f"# Control plane against the floor ({results['when']})",
        "",
        f"Machine: {results['machine']}; Kubernetes 1.20.2 API server, etcd, the operator and the benchmark on the same "
        "cores; the benchmark reports each InferenceService's address as KServe would, as soon as it appears. Seconds from "
        "each ExplainedModel's create call to its last child, all created at once; the floor makes the same writes with "
        "nothing else (no reads, no framework). Command: `python bench/control_plane.py` (part of `make bench`)"
        + (f" with `--operator-args='{results['operator_args']}'`." if results.get("operator_args") else "."),
        "",
        "| objects | operator median | operator p99 | floor median | floor p99 | median ratio | p99 ratio | ms per object, operator / floor |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in results["rows"]:
        op, fl = row["operator"], row["floor"]
        lines.append(
            f"| {row['objects']} | {op['median']:.2f} s | {op['p99']:.2f} s | {fl['median']:.2f} s | {fl['p99']:.2f} s "
            f"| {row['ratio_median']:.1f}x | {row['ratio_p99']:.1f}x | {op['per_object_ms']:.0f} / {fl['per_object_ms']:.0f} |"
        )
    converge = results["converge_after_change_s"]
    restart = results["restart_new_object_s"]
    lines += [
        "",
        "| measure | value | goal |",
        "| --- | ---: | --- |",
        f"| spec change to child updated, {converge['changed']} at once | median {converge['median']:.2f} s, p99 {converge['p99']:.2f} s | |",
        f"| operator peak resident memory, {results['memory_objects']} ExplainedModels | {results['operator_peak_rss_mb']:.0f} MB | < 250 MB |",
        f"| after a restart with {results['restart_objects']} in place, a new one's children | "
        + ("not written in 300 s" if restart is None else f"{restart:.2f} s")
        + " | < 2 s |",
        "",
    ]
    profile = results.get("profile") or {}
    if profile.get("shares"):
        lines += [
            f"Where the operator's time goes, {profile['objects']} objects created at once in a run of their own (not one "
            f"of the runs above: the profiler takes some of the cores): py-spy's samples of every thread over the first "
            f"{profile['seconds']} s, by what each was doing:",
            "",
            "| doing | share of samples |",
            "| --- | ---: |",
            *[f"| {category} | {share:.0%} |" for category, share in profile["shares"].items()],
            "",
        ]
    lines += [
        "Requests the API server served per object (its `apiserver_request_total`), the operator against the floor. "
        "Kubernetes 1.20 counts a GET of one custom object as LIST (checked: ten GETs of one ExplainedModel count as ten "
        "LISTs), so LIST here is mostly the operator's reads of single objects:",
        "",
        "| objects | request | operator | floor |",
        "| ---: | --- | ---: | ---: |",
    ]
    for row in results["rows"]:
        keys = sorted(set(row["operator_requests_per_object"]) | set(row["floor_requests_per_object"]))
        for key in keys:
            lines.append(
                f"| {row['objects']} | {key} | {row['operator_requests_per_object'].get(key, 0):g} "
                f"| {row['floor_requests_per_object'].get(key, 0):g} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
