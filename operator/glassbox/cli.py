"""The `glassbox` command: the operator, the CRD, local mode and the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the operator's modules load only when the operator runs
    import threading

    from glassbox.operator.kube import KubeApi
    from glassbox.operator.leader import LeaderElector


def _standby_health(address: str) -> Callable[[], None]:
    """While this replica waits for the Lease it is alive: answer the health probe until kopf's own takes the port."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = b'{"standby": true}'
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    host, _, port = address.rpartition(":")
    server = http.server.ThreadingHTTPServer((host, int(port)), Handler)
    threading.Thread(target=server.serve_forever, name="glassbox-standby-health", daemon=True).start()

    def close() -> None:
        server.shutdown()
        server.server_close()

    return close


def _operator(args: argparse.Namespace) -> int:
    import threading

    import kopf

    from glassbox.contract.api import API_VERSION, KIND
    from glassbox.operator import handlers  # registers kopf's start-up, clean-up and probe
    from glassbox.operator.builders import OperatorConfig
    from glassbox.operator.informer import Informer, informers_for
    from glassbox.operator.kube import KubeApi, load_api_client
    from glassbox.operator.reconcile import CHILD_KINDS, STATUS_HOLD_SECONDS, Reconciler
    from glassbox.operator.resync import PeriodicResync
    from glassbox.operator.watch_cache import WatchCache
    from glassbox.operator.workqueue import Workers, WorkQueue

    kopf.configure(verbose=args.verbose)
    config = OperatorConfig(
        explainer_image=args.explainer_image,
        predictor_image=args.predictor_image,
        allow_service_account_names=args.allow_service_account_names,
    )
    api = KubeApi(load_api_client())
    stop = threading.Event()
    lost = threading.Event()
    elector = None
    if args.leader_election_namespace:
        elector = _lead(api, args, stop, lost)
        if elector is None:
            return 0  # stopped while standing by

    children, parents = WatchCache(), WatchCache()
    children_watched: list[Informer] = []
    queue = WorkQueue(backlog_ready=lambda: all(informer.synced.is_set() for informer in children_watched))
    events = handlers.EventPoster(api)
    reconciler = Reconciler(
        api,
        config,
        handlers.utc_now,
        events.warning,
        events.normal,
        cache=None if args.read_children_from_api else children,
        parents=parents,
        status_hold_seconds=STATUS_HOLD_SECONDS,
        behind=queue.behind,
    )
    workers = Workers(queue, handlers.reconcile_queued(reconciler), count=args.workers)
    existing = handlers.ExistingPredictors()
    children_watched += informers_for(api, CHILD_KINDS, args.namespace, children, handlers.ChildEvents(queue, existing))
    parents_watched = informers_for(
        api,
        [(API_VERSION, KIND)],
        args.namespace,
        parents,
        handlers.ExplainedModelEvents(queue, existing, reconciler),
        hand_on_first_listing=True,
    )

    def check(body: dict[str, Any]) -> None:  # the periodic check: the listed copy kept, the name in the backlog
        parents.observe(None, body)
        queue.add((body["metadata"]["namespace"], body["metadata"]["name"]), urgent=False)

    resync = PeriodicResync(api.list_explained_models, check, args.namespace)
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            standalone=True,
            liveness_endpoint=f"http://{args.health_address}/healthz" if args.health_address else None,
            memo=kopf.Memo(
                resync=resync,
                informers=parents_watched + children_watched,
                parents=parents,
                queue=queue,
                workers=workers,
                existing=existing,
            ),
        )
    finally:
        stop.set()
    if lost.is_set():
        return 1  # the pod restarts and stands by
    if elector is not None:
        elector.release()  # a clean stop: a standby takes over at once
    return 0


def _lead(api: KubeApi, args: argparse.Namespace, stop: threading.Event, lost: threading.Event) -> LeaderElector | None:
    """Stand by until this replica holds the Lease (answering its liveness probe meanwhile), then keep
    renewing it; a lost Lease sets `lost` and stops the operator. None when stopped while standing by."""
    import signal
    import socket
    import uuid

    from glassbox.operator.leader import LeaderElector

    identity = f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    elector = LeaderElector(api, args.leader_election_namespace, args.leader_election_name, identity)
    close_health = _standby_health(args.health_address) if args.health_address else (lambda: None)
    try:
        if not elector.acquire(stop):
            return None
    except KeyboardInterrupt:
        return None
    finally:
        close_health()

    def on_lost() -> None:
        lost.set()
        stop.set()
        # kopf stops as on a rollout; a stop flag would be waited on by a thread its own shutdown waits for.
        os.kill(os.getpid(), signal.SIGTERM)

    elector.keep_renewing(stop, on_lost)
    return elector


def _crd(_: argparse.Namespace) -> int:
    from glassbox.operator.crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def _up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from glassbox.local import LocalModeError, run_up

    try:
        return run_up(Path(args.manifest), args.predictor_url, Path(args.records) if args.records else None)
    except LocalModeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from glassbox.demo import run_demo

    return run_demo(Path(args.out))


def _add_operator_command(commands: Any) -> None:
    """`glassbox operator`: each flag also read from its environment variable, as the chart sets them."""
    from glassbox.operator.builders import OperatorConfig

    defaults = OperatorConfig()
    operator = commands.add_parser("operator", help="run the ExplainedModel operator (all namespaces unless --namespace)")
    operator.add_argument(
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    operator.add_argument(
        "--explainer-image",
        default=os.environ.get("GLASSBOX_EXPLAINER_IMAGE", defaults.explainer_image),
        help="image of the explainer server (env GLASSBOX_EXPLAINER_IMAGE)",
    )
    operator.add_argument(
        "--predictor-image",
        default=os.environ.get("GLASSBOX_PREDICTOR_IMAGE", defaults.predictor_image),
        help="image of the PyTorch predictor server (env GLASSBOX_PREDICTOR_IMAGE)",
    )
    operator.add_argument(
        "--health-address",
        default=os.environ.get("GLASSBOX_HEALTH_ADDRESS", ""),
        metavar="HOST:PORT",
        help="serve liveness and readiness at http://HOST:PORT/healthz (env GLASSBOX_HEALTH_ADDRESS)",
    )
    operator.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("GLASSBOX_LEADER_ELECTION_NAMESPACE", ""),
        metavar="NS",
        help="run as one of several replicas: only the holder of a Lease in NS acts (env GLASSBOX_LEADER_ELECTION_NAMESPACE); "
        "default: no election, this process acts alone",
    )
    operator.add_argument(
        "--leader-election-name",
        default=os.environ.get("GLASSBOX_LEADER_ELECTION_NAME", "glassbox-operator"),
        metavar="NAME",
        help="the Lease's name (env GLASSBOX_LEADER_ELECTION_NAME)",
    )
    operator.add_argument(
        "--allow-service-account-names",
        action="store_true",
        default=os.environ.get("GLASSBOX_ALLOW_SERVICE_ACCOUNT_NAMES", "").lower() in ("1", "true", "yes"),
        help="let ExplainedModels choose their pods' ServiceAccount (spec.*.serviceAccountName); by default they run as "
        "their namespace's default ServiceAccount (env GLASSBOX_ALLOW_SERVICE_ACCOUNT_NAMES)",
    )
    operator.add_argument(
        "--read-children-from-api",
        action="store_true",
        help="read each child from the API server at every reconcile, as before the watches' cache (a diagnostic; the "
        "children are still watched, for their events)",
    )
    operator.add_argument(
        "--workers",
        type=int,
        default=16,
        help="threads that reconcile ExplainedModels from the work queue, each one object at a time (default 16)",
    )
    operator.add_argument("--verbose", action="store_true", help="log every API call kopf makes")
    operator.set_defaults(run=_operator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glassbox", description="Glassbox: explainable models on KServe.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_operator_command(commands)

    crd = commands.add_parser("crd", help="print the ExplainedModel CustomResourceDefinition (YAML)")
    crd.set_defaults(run=_crd)

    up = commands.add_parser("up", help="run an ExplainedModel's predictor, explainer and detector locally, on loopback")
    up.add_argument("manifest", help="an ExplainedModel manifest (YAML); relative paths in it are read from its folder")
    up.add_argument("--predictor-url", default=None, help="an already running predictor, for spec.predictor.inferenceServiceName")
    up.add_argument(
        "--records",
        default=None,
        help="the SQLite file of the explanation records (default: .glassbox/NAME.records.sqlite beside the manifest; "
        "spec.explainer.records.enabled: false keeps none)",
    )
    up.set_defaults(run=_up)

    demo = commands.add_parser("demo", help="train a model, serve and explain it locally, print the explanations and write PNGs")
    demo.add_argument("--out", default=".glassbox/demo", help="where the model, data, manifest and pictures go")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "operator":  # kopf configures logging for the operator
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
