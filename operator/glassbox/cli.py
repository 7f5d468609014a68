"""The `glassbox` command: the operator, the CRD, local mode and the demo."""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _operator(args: argparse.Namespace) -> int:
    import kopf

    from glassbox.operator import handlers  # noqa: F401  (registers the handlers)
    from glassbox.operator.builders import OperatorConfig
    from glassbox.operator.kube import KubeApi, load_api_client
    from glassbox.operator.reconcile import Reconciler
    from glassbox.operator.resync import PeriodicResync

    config = OperatorConfig(
        explainer_image=args.explainer_image,
        predictor_image=args.predictor_image,
    )
    api = KubeApi(load_api_client())
    reconciler = Reconciler(api, config, handlers.utc_now, handlers.post_warning)
    resync = PeriodicResync(api.list_explained_models, reconciler.reconcile, args.namespace)
    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        standalone=True,
        liveness_endpoint=f"http://{args.health_address}/healthz" if args.health_address else None,
        memo=kopf.Memo(reconciler=reconciler, resync=resync),
    )
    return 0


def _crd(_: argparse.Namespace) -> int:
    from glassbox.operator.crd import render_crd

    sys.stdout.write(render_crd())
    return 0


def _up(args: argparse.Namespace) -> int:
    from pathlib import Path

    from glassbox.explainers.local import LocalModeError, run_up

    try:
        return run_up(Path(args.manifest), args.predictor_url)
    except LocalModeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from glassbox.explainers.demo import run_demo

    return run_demo(Path(args.out))


def build_parser() -> argparse.ArgumentParser:
    from glassbox.operator.builders import OperatorConfig

    defaults = OperatorConfig()
    parser = argparse.ArgumentParser(prog="glassbox", description="Glassbox: explainable models on KServe.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    operator = commands.add_parser("operator", help="run the ExplainedModel operator (all namespaces unless --namespace)")
    operator.add_argument(
        "--namespace", action="append", default=[], metavar="NS",
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    operator.add_argument(
        "--explainer-image", default=os.environ.get("GLASSBOX_EXPLAINER_IMAGE", defaults.explainer_image),
        help="image of the explainer server (env GLASSBOX_EXPLAINER_IMAGE)",
    )
    operator.add_argument(
        "--predictor-image", default=os.environ.get("GLASSBOX_PREDICTOR_IMAGE", defaults.predictor_image),
        help="image of the PyTorch predictor server (env GLASSBOX_PREDICTOR_IMAGE)",
    )
    operator.add_argument(
        "--health-address", default=os.environ.get("GLASSBOX_HEALTH_ADDRESS", ""), metavar="HOST:PORT",
        help="serve liveness and readiness at http://HOST:PORT/healthz (env GLASSBOX_HEALTH_ADDRESS)",
    )
    operator.add_argument("--verbose", action="store_true", help="log every API call kopf makes")
    operator.set_defaults(run=_operator)

    crd = commands.add_parser("crd", help="print the ExplainedModel CustomResourceDefinition (YAML)")
    crd.set_defaults(run=_crd)

    up = commands.add_parser("up", help="run an ExplainedModel's predictor and explainer locally, on loopback")
    up.add_argument("manifest", help="an ExplainedModel manifest (YAML); relative paths in it are read from its folder")
    up.add_argument("--predictor-url", default=None, help="an already running predictor, for spec.predictor.inferenceServiceName")
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
