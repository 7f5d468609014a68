"""Fixtures of `make images-test`: the images `make images` built, run as a cluster runs them.

The tests run in a private network namespace (`make images-test` starts pytest
under `unshare -n`): the containers share it (podman's host network), each
server on its own port as in local mode, and KServe's router has :8080.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from glassbox.contract.api import Protocol
from glassbox.contract.wire import MODEL_DIR
from glassbox.demo import prepare
from glassbox.local import free_port, read_manifest
from glassbox.operator.builders import (
    OperatorConfig,
    Parent,
    build_detector_isvc,
    build_explainer_isvc,
    build_predictor_isvc,
    detector_name,
)
from glassbox.operator.kserve_addressing import PredictTarget
from glassbox_testing import containers
from glassbox_testing.cluster import REPO

PREFIX = os.environ.get("IMAGE_PREFIX", "ghcr.io/glassbox-dev")
VERSION = next(
    line.split(":", 1)[1].strip().strip('"')
    for line in (REPO / "charts" / "glassbox-operator" / "Chart.yaml").read_text().splitlines()
    if line.startswith("appVersion:")
)
# Each flavour of the data-plane images: the CUDA build the chart deploys by default (it runs on a CPU too)
# and the -cpu build.
FLAVOURS = {"cuda": "", "cpu": "-cpu"}
REPORT_PATH = REPO / "build" / "images-report.json"
REPORT: dict[str, dict[str, Any]] = {}


def tag(name: str, suffix: str = "") -> str:
    return f"{PREFIX}/glassbox-{name}:{VERSION}{suffix}"


def record(image: str, **values: Any) -> None:
    """Figures for the report `make images-test` prints and writes to build/images-report.json."""
    REPORT.setdefault(image, {}).update(values)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(REPORT_PATH.read_text()) if REPORT_PATH.exists() else {}
    merged = {**previous, **{image: {**previous.get(image, {}), **values} for image, values in REPORT.items()}}
    REPORT_PATH.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    terminalreporter.section("images")
    for image, values in sorted(REPORT.items()):
        shown = ", ".join(f"{key} {value}" for key, value in sorted(values.items()))
        terminalreporter.write_line(f"{image}: {shown}")
    terminalreporter.write_line(f"(written to {REPORT_PATH})")


def require_image(image: str) -> str:
    if not containers.image_exists(image):
        pytest.fail(f"no image {image} here: build it with `make images` (images-test builds them first)")
    record(image, size_mb=round(containers.image_size_bytes(image) / 1e6))
    return image


@pytest.fixture(scope="session", autouse=True)
def loopback() -> None:
    """The private network namespace starts with its loopback down."""
    if os.environ.get("GLASSBOX_IMAGES_TEST_NETNS") != "1":
        pytest.fail("run these tests with `make images-test`: they need a network namespace of their own (unshare -n)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


# ------------------------------------------------------------------ the demo's model, data and servers


@dataclass
class DemoFiles:
    folder: Path
    manifest: Path
    rows: np.ndarray
    names: list[str]
    data_url: str  # the reference data, served over HTTP as object storage would serve it


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="session")
def demo_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoFiles]:
    """make demo's model (TorchScript) and training data; the data behind an HTTP server on loopback."""
    folder = tmp_path_factory.mktemp("demo")
    manifest, rows, names = prepare(folder)
    # The containers run as uid 65532 and read the model through a bind mount.
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DemoFiles(folder, manifest, rows, names, f"http://127.0.0.1:{server.server_address[1]}/train.csv")
    finally:
        server.shutdown()


@dataclass
class DemoServers:
    """The demo's predictor, explainer and detector, each a container of one flavour's images."""

    flavour: str
    model_name: str
    predictor_url: str
    explainer_url: str
    detector_url: str
    running: dict[str, containers.Container] = field(default_factory=dict)

    def stop_all(self) -> None:
        for container in self.running.values():
            container.remove()


def container_spec(isvc: dict[str, Any] | None) -> dict[str, Any]:
    assert isvc is not None
    return dict(isvc["spec"]["predictor"]["containers"][0])


def start_demo_servers(flavour: str, files: DemoFiles) -> DemoServers:
    """The containers the operator's builders describe for the demo's ExplainedModel, started as a pod would
    start them: the model where KServe's storage initializer puts it (/mnt/models), the reference data
    fetched by the servers themselves (over HTTP here, from object storage in a cluster)."""
    suffix = FLAVOURS[flavour]
    explainer_image = require_image(tag("explainer", suffix))
    predictor_image = require_image(tag("predictor", suffix))
    document = yaml.safe_load(files.manifest.read_text())
    document["spec"]["explainer"]["referenceData"]["uri"] = files.data_url
    manifest = files.manifest.with_name(f"explainedmodel-{flavour}.yaml")
    manifest.write_text(yaml.safe_dump(document))
    name, spec = read_manifest(manifest)
    parent = Parent(name, "images-test", "images-test-uid")
    config = OperatorConfig(explainer_image=explainer_image, predictor_image=predictor_image)
    model = [(files.folder / "model", MODEL_DIR)]

    servers = DemoServers(flavour, name, "", "", "")
    try:
        ports = {role: (free_port(), free_port()) for role in ("predictor", "explainer", "detector")}

        def run(role: str, spec_: dict[str, Any], image: str, mounts: list[tuple[Path, str]]) -> str:
            http_port, grpc_port = ports[role]
            servers.running[role] = containers.start(
                spec_, image, f"{flavour}-{role}", [f"--http_port={http_port}", f"--grpc_port={grpc_port}"], mounts=mounts
            )
            return f"http://127.0.0.1:{http_port}"

        servers.detector_url = run("detector", container_spec(build_detector_isvc(parent, spec, config)), explainer_image, [])
        servers.predictor_url = run(
            "predictor", container_spec(build_predictor_isvc(parent, spec, config)), predictor_image, model
        )
        target = PredictTarget(servers.predictor_url, name, Protocol.v2, answers_both_protocols=True)
        explainer = container_spec(build_explainer_isvc(parent, spec, target, config))
        servers.explainer_url = run("explainer", explainer, explainer_image, model)
        for role, url, model_name in (
            ("predictor", servers.predictor_url, name),
            ("detector", servers.detector_url, detector_name(name)),
            ("explainer", servers.explainer_url, name),
        ):
            seconds = servers.running[role].wait_ready(f"{url}/v2/models/{model_name}/ready")
            image = predictor_image if role == "predictor" else explainer_image
            key = "detector_ready_s" if role == "detector" else "cold_start_to_ready_s"
            record(image, **{key: round(seconds, 1)})
    except BaseException:
        for container in servers.running.values():
            print(f"--- {container.name}\n{container.logs()}")
        servers.stop_all()
        raise
    return servers


@pytest.fixture(scope="module", params=list(FLAVOURS))
def demo_servers(request: pytest.FixtureRequest, demo_files: DemoFiles) -> Iterator[DemoServers]:
    servers = start_demo_servers(request.param, demo_files)
    try:
        yield servers
    finally:
        servers.stop_all()
