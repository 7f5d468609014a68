"""Local mode: an ExplainedModel's predictor, explainer and detector as processes on loopback.

The arguments are the ones the operator writes into the InferenceServices (the
same builders make them); only what differs on one machine is replaced: the
model directory (a local path instead of /mnt/models), the predictor's host
(127.0.0.1:PORT) and the ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import yaml

from glassbox.contract.api import KIND, ExplainedModelSpec, Protocol, uses_glassbox_predictor
from glassbox.contract.wire import DRIFT_EVENTS_PATH, DRIFT_PATH, MODEL_DIR, RECORDS_POSTGRES_ENV, STORAGE_URI_ENV
from glassbox.explainers.data.storage import ARTIFACT_LIMITS, content_sha256, resolve
from glassbox.operator.builders import (
    OperatorConfig,
    Parent,
    build_detector_isvc,
    build_drift_isvc,
    build_explainer_isvc,
    build_inference_graph,
    build_predictor_isvc,
    deployed_model_version,
    detector_name,
    drift_name,
)
from glassbox.operator.kserve_addressing import PredictTarget, explain_path
from glassbox.operator.validation import find_spec_problems


class LocalModeError(RuntimeError):
    pass


# Where local mode keeps an ExplainedModel's records: this folder beside its manifest.
LOCAL_RECORDS_FOLDER = ".glassbox"
# How long a server has to finish the requests in flight once asked to stop.
STOP_WAIT_SECONDS = 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_manifest(path: Path) -> tuple[str, ExplainedModelSpec]:
    """The ExplainedModel in a manifest file, validated as the operator would."""
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    models = [d for d in documents if d.get("kind") == KIND]
    if not models:
        raise LocalModeError(f"{path} holds no {KIND}")
    if len(models) > 1:
        raise LocalModeError(f"{path} holds {len(models)} {KIND}s; local mode runs one")
    name = (models[0].get("metadata") or {}).get("name") or path.stem
    spec, problems = find_spec_problems(name, models[0].get("spec") or {})
    if spec is None:
        raise LocalModeError(f"{path}: " + "; ".join(str(p) for p in problems))
    return name, spec


def _container(isvc: dict[str, Any]) -> dict[str, Any]:
    return dict(isvc["spec"]["predictor"]["containers"][0])


def _replace_arg(args: list[str], flag: str, value: str) -> list[str]:
    kept = [a for a in args if not a.startswith(f"{flag}=")]
    return [*kept, f"{flag}={value}"]


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class StopSignal(BaseException):
    """A stop signal `glassbox up` received, raised from its handler to unwind the start or the wait. Not a
    KeyboardInterrupt: CPython remembers a KeyboardInterrupt that passes through code run by exec() or eval() of a
    string (dataclasses and named tuples define their methods that way, in modules imported while starting) and,
    even once it is caught and handled, ends the process by SIGINT as it exits (exit status -2, no traceback)."""


# Stop signals `glassbox up` received inside a deferred block, and how deep in such blocks it is.
_deferred_signals: list[int] = []
_deferring = 0


@contextmanager
def _stop_signals_deferred() -> Iterator[None]:
    """Under `glassbox up`, a stop signal that arrives meanwhile stops it at the end of the block, not in
    the middle of it. (Not by blocking the signals: a blocked mask is inherited by the servers spawned
    meanwhile, which would then never see SIGTERM.)"""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
    if not _deferring and _deferred_signals:
        signum = _deferred_signals[0]
        _deferred_signals.clear()
        raise StopSignal(signal.Signals(signum).name)


def _interrupt(signum: int, _: object) -> None:
    if _deferring:
        _deferred_signals.append(signum)
        return
    raise StopSignal(signal.Signals(signum).name)


@dataclass
class LocalProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str

    def log_tail(self, characters: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""


@dataclass
class LocalDeployment:
    """Start with `start()`, stop with `stop()` (or use it as a context manager)."""

    manifest: Path
    predictor_url: str | None = None  # an already running predictor (for inferenceServiceName)
    log_dir: Path | None = None
    ready_timeout: float = 600.0
    extra_explainer_args: list[str] = field(default_factory=list)
    # Whether an existing predictor (predictor_url) answers v1 and v2 bodies, as a runtime listing both does.
    existing_answers_both_protocols: bool = False
    # Explanation records, as the spec says (spec.explainer.records): kept in a SQLite file, by default
    # beside the manifest (LOCAL_RECORDS_FOLDER), so they outlast the run as an audit needs.
    keep_records: bool = True
    records_path: Path | None = None
    processes: list[LocalProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.name, self.spec = read_manifest(self.manifest)
        self.base = self.manifest.resolve().parent
        self.log_dir = self.log_dir or Path(tempfile.mkdtemp(prefix=f"glassbox-{self.name}-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Processes on loopback, with nothing in front that buffers a burst (no Knative activator or
        # queue-proxy): the servers are what KServe's RawDeployment mode would run.
        self.parent = Parent(self.name, "local", "local", deployment_mode="RawDeployment")
        self.predictor_isvc = build_predictor_isvc(self.parent, self.spec, OperatorConfig())
        self.model_name = self.spec.predictor.inference_service_name or self.name
        # KServe calls a model without protocolVersion with v1.
        predictor = self.spec.predictor
        self.protocol = predictor.protocol_to_deploy if predictor.deploys_model else (predictor.protocol or Protocol.v1)
        # One process runs the explainer here, so one SQLite file serves it even where the cluster needs PostgreSQL.
        if not (self.keep_records and self.spec.explainer.records.kept(max_replicas=1)):
            self.records_path = None
        elif self.records_path is None:
            self.records_path = self.base / LOCAL_RECORDS_FOLDER / f"{self.name}.records.sqlite"

    def __enter__(self) -> LocalDeployment:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ what runs

    def _model_path(self) -> Path | None:
        uri = self.spec.explainer.model_storage_uri or self.spec.predictor.storage_uri
        return resolve(uri, self.base, ARTIFACT_LIMITS) if uri else None

    def predictor_command(self, port: int) -> tuple[list[str], dict[str, str]]:
        if self.predictor_isvc is None:
            raise LocalModeError("the predictor is an existing InferenceService: pass its URL (--predictor-url)")
        if not uses_glassbox_predictor(self.spec.predictor):
            raise LocalModeError(
                f"local mode serves PyTorch models with Glassbox's predictor; modelFormat "
                f"'{self.spec.predictor.model_format}' needs its KServe runtime: run it yourself and pass --predictor-url"
            )
        container = _container(self.predictor_isvc)
        model_path = resolve(str(self.spec.predictor.storage_uri), self.base, ARTIFACT_LIMITS)
        args = _replace_arg(container["args"], "--model_dir", str(model_path))
        self.predictor_grpc_port = free_port()
        args += [f"--http_port={port}", f"--grpc_port={self.predictor_grpc_port}"]
        if self.drift_base is not None:  # KServe's logger would copy the requests to the drift monitor
            args.append(f"--request_logger_url={self.drift_base}{DRIFT_EVENTS_PATH.format(model=drift_name(self.name))}")
        env = {e["name"]: e["value"] for e in container["env"] if e["name"] != STORAGE_URI_ENV}
        return [sys.executable, "-m", "glassbox.explainers.predictor", *args], env

    def predictor_target(self, predictor_base: str) -> PredictTarget:
        """The predictor on loopback, as KServe would report it (`status.address.url`) in a cluster."""
        return PredictTarget(
            predictor_base,
            self.model_name,
            self.protocol,
            answers_both_protocols=uses_glassbox_predictor(self.spec.predictor) or self.existing_answers_both_protocols,
            model_version=self.model_version,
        )

    @cached_property
    def model_version(self) -> str | None:
        """The deployed model's version: its pinned SHA-256, else its files' (a model retrained in place is a new
        version here, where a cluster knows only its storage URI). None for a predictor run elsewhere."""
        if self.predictor_isvc is None:
            return None
        if self.spec.predictor.storage_sha256 or not uses_glassbox_predictor(self.spec.predictor):
            return deployed_model_version(self.spec.predictor)
        path = resolve(str(self.spec.predictor.storage_uri), self.base, ARTIFACT_LIMITS)
        return f"sha256:{content_sha256(path)}"

    def explainer_command(self, port: int, predictor_host: str) -> tuple[list[str], dict[str, str]]:
        explainer = build_explainer_isvc(
            self.parent, self.spec, self.predictor_target(f"http://{predictor_host}"), OperatorConfig()
        )
        container = _container(explainer)
        args = list(container["args"])
        if f"--model_dir={MODEL_DIR}" in args:
            args = _replace_arg(args, "--model_dir", str(self._model_path()))
        # The records in a local file, never a cluster's database: its Secret is not here.
        args = [a for a in args if not a.startswith(("--records_path=", "--records_postgres="))]
        if self.records_path is not None:
            self.records_path.parent.mkdir(parents=True, exist_ok=True)
            args.append(f"--records_path={self.records_path}")
        args += [f"--http_port={port}", f"--grpc_port={free_port()}", f"--data_dir={self.base}", *self.extra_explainer_args]
        env = {e["name"]: e["value"] for e in container["env"] if e["name"] not in (STORAGE_URI_ENV, RECORDS_POSTGRES_ENV)}
        return [sys.executable, "-m", "glassbox.explainers.explainer", *args], env

    def detector_command(self, port: int) -> tuple[list[str], dict[str, str]]:
        detector = build_detector_isvc(self.parent, self.spec, OperatorConfig())
        if detector is None:
            raise LocalModeError("the spec has no detector")
        container = _container(detector)
        args = [*container["args"], f"--http_port={port}", f"--grpc_port={free_port()}", f"--data_dir={self.base}"]
        if any(a.startswith("--drift_events_url=") for a in args):  # the graph's requests, for the monitor here
            if self.drift_base is None:
                raise LocalModeError("start the drift monitor before the detector: the detector forwards to it")
            args = _replace_arg(
                args, "--drift_events_url", self.drift_base + DRIFT_EVENTS_PATH.format(model=drift_name(self.name))
            )
        env = {e["name"]: e["value"] for e in container["env"]}
        return [sys.executable, "-m", "glassbox.explainers.detector", *args], env

    def drift_command(self, port: int) -> tuple[list[str], dict[str, str]]:
        monitor = build_drift_isvc(self.parent, self.spec, OperatorConfig())
        if monitor is None:
            raise LocalModeError("the spec has no drift monitor (spec.detector.drift)")
        container = _container(monitor)
        args = [*container["args"], f"--http_port={port}", f"--grpc_port={free_port()}", f"--data_dir={self.base}"]
        env = {e["name"]: e["value"] for e in container["env"]}
        return [sys.executable, "-m", "glassbox.explainers.detector", *args], env

    # ------------------------------------------------------------------ running

    def spawn(self, name: str, command: list[str], env: dict[str, str], url: str) -> LocalProcess:
        assert self.log_dir is not None
        log = self.log_dir / f"{name}.log"
        # A stop signal waits until the process is on the list that stop() kills.
        with open(log, "wb") as handle, _stop_signals_deferred():
            process = subprocess.Popen(
                command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **env}, start_new_session=True
            )
            started = LocalProcess(name, process, log, url)
            self.processes.append(started)
        return started

    def wait_ready(self, started: LocalProcess, ready_path: str) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if started.process.poll() is not None:
                raise LocalModeError(
                    f"the {started.name} exited with {started.process.returncode}; its log ({started.log}) ends:\n{started.log_tail()}"
                )
            try:
                if httpx.get(started.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise LocalModeError(f"the {started.name} was not ready within {self.ready_timeout:g} s; see {started.log}")

    def start_predictor(self) -> str:
        """Start the predictor (unless one runs already) and return the host:port the explainer calls."""
        if self.predictor_url:
            return self.predictor_url.split("://", 1)[-1].rstrip("/")
        port = free_port()
        command, env = self.predictor_command(port)
        predictor = self.spawn("predictor", command, env, f"http://127.0.0.1:{port}")
        self.wait_ready(predictor, f"/v2/models/{self.model_name}/ready")
        return f"127.0.0.1:{port}"

    def start_explainer(self, predictor_host: str) -> None:
        port = free_port()
        command, env = self.explainer_command(port, predictor_host)
        explainer = self.spawn("explainer", command, env, f"http://127.0.0.1:{port}")
        self.wait_ready(explainer, f"/v2/models/{self.model_name}/ready")

    def start_detector(self) -> None:
        port = free_port()
        command, env = self.detector_command(port)
        detector = self.spawn("detector", command, env, f"http://127.0.0.1:{port}")
        self.wait_ready(detector, f"/v2/models/{detector_name(self.name)}/ready")

    def start_drift(self) -> None:
        port = free_port()
        command, env = self.drift_command(port)
        monitor = self.spawn("drift", command, env, f"http://127.0.0.1:{port}")
        self.wait_ready(monitor, f"/v2/models/{drift_name(self.name)}/ready")

    def start(self) -> None:
        try:
            if self.spec.detector is not None:
                if self.spec.detector.drift is not None:
                    self.start_drift()  # before the predictor and the detector, which copy requests to it
                self.start_detector()
            self.start_explainer(self.start_predictor())
        except BaseException:
            self.stop()
            raise

    @property
    def predictor_base(self) -> str:
        if self.predictor_url:
            return self.predictor_url.rstrip("/")
        return next(p.url for p in self.processes if p.name == "predictor")

    @property
    def explainer_base(self) -> str:
        return next(p.url for p in self.processes if p.name == "explainer")

    @property
    def detector_base(self) -> str | None:
        return next((p.url for p in self.processes if p.name == "detector"), None)

    @property
    def drift_base(self) -> str | None:
        return next((p.url for p in self.processes if p.name == "drift"), None)

    def urls(self) -> dict[str, str]:
        target = self.predictor_target(self.predictor_base)
        urls = {"predict": target.predict_url()}
        if any(p.name == "explainer" for p in self.processes):
            urls["explain"] = self.explainer_base + explain_path(self.model_name)
        if self.detector_base is not None:
            urls["detect"] = f"{self.detector_base}/v1/models/{detector_name(self.name)}:predict"
        if self.drift_base is not None:
            monitor = drift_name(self.name)
            urls["drift"] = self.drift_base + DRIFT_PATH.format(model=monitor)
            urls["drift_events"] = self.drift_base + DRIFT_EVENTS_PATH.format(model=monitor)
        return urls

    def inference_graph(
        self,
        predictor_base: str | None = None,
        explainer_base: str | None = None,
        detector_base: str | None = None,
    ) -> dict[str, Any] | None:
        """The InferenceGraph the operator would write, its steps pointing at these servers (or at the
        given base URLs): what KServe's router is started with (`--graph-json` of its spec)."""
        target = self.predictor_target(predictor_base or self.predictor_base)
        return build_inference_graph(
            self.parent, self.spec, target, explainer_base or self.explainer_base, detector_base or self.detector_base
        )

    def stop(self) -> None:
        with _stop_signals_deferred():  # a second Ctrl-C must not leave a server behind
            self._stop()

    def _stop(self) -> None:
        for started in reversed(self.processes):
            if started.process.poll() is None:
                os.killpg(started.process.pid, signal.SIGTERM)
        for started in self.processes:
            try:
                started.process.wait(timeout=STOP_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                print(
                    f"the {started.name} had not stopped {STOP_WAIT_SECONDS} s after SIGTERM: killed it",
                    file=sys.stderr,
                    flush=True,
                )
                os.killpg(started.process.pid, signal.SIGKILL)
                started.process.wait()
        self.processes.clear()


def run_up(manifest: Path, predictor_url: str | None, records_path: Path | None = None) -> int:
    """`glassbox up`: start, print the URLs, wait for Ctrl-C (or SIGTERM, as `timeout`, systemd and CI send);
    either stops every server, also while they are starting."""
    install_stop_handlers()
    deployment: LocalDeployment | None = None
    try:
        deployment = LocalDeployment(manifest, predictor_url=predictor_url, records_path=records_path)
        print(f"starting {deployment.name} (logs in {deployment.log_dir}) ...", flush=True)
        if deployment.records_path is not None:
            print(f"explanation records: {deployment.records_path}", flush=True)
        with deployment:
            urls = deployment.urls()
            print(f"predict: POST {urls['predict']}")
            methods = [m.effective_name for m in deployment.spec.explainer.methods]
            print(f'explain: POST {urls["explain"]}  {{"instances": [...], "method": one of {methods}}}')
            if "detect" in urls:
                print(f'detect:  POST {urls["detect"]}  {{"instances": [...]}}')
            if "drift" in urls:
                print(f"drift:   GET {urls['drift']}  (KServe's request logger posts to {urls['drift_events']})")
            count = len(deployment.processes)
            print({1: "Ctrl-C stops it.", 2: "Ctrl-C stops both."}.get(count, f"Ctrl-C stops all {count}."), flush=True)
            while all(p.process.poll() is None for p in deployment.processes):
                time.sleep(0.5)
            gone = [p for p in deployment.processes if p.process.poll() is not None]
            print(f"the {gone[0].name} exited; its log ends:\n{gone[0].log_tail()}", file=sys.stderr)
            return 1
    except StopSignal:
        _ignore_stop_signals()
        if deployment is not None:
            print("\nstopped both servers" if deployment.spec.detector is None else "\nstopped the servers", flush=True)
        return 0
    finally:
        _ignore_stop_signals()


def install_stop_handlers() -> None:
    """A stop signal raises StopSignal where `glassbox up` is (or once it leaves a deferred block). Also SIGINT: a
    shell that starts a job in the background starts it with SIGINT ignored."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, _interrupt)


def _ignore_stop_signals() -> None:
    """Once every server is stopped, a stop signal has nothing left to stop: ignored, not left to Python, which
    restores the default action while it exits (where a late Ctrl-C would kill it with -2, its work done)."""
    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, signal.SIG_IGN)
