"""Runner (c): MLServer's alibi-explain runtime calling an MLServer model over its v2 protocol.

MLServer lives in its own virtual environment (its pins clash with
Glassbox's: pydantic 2.7.1, TensorFlow for alibi's extra), which this module
creates on first use. Two MLServer processes run, as Seldon deploys them: one
serves the model (the same TorchScript artifact Glassbox's predictor serves,
through bench/mlserver/runtime.py), one serves the explainers, fitted with the
same settings as the other runners (bench/mlserver/fit.py) and calling the
model over HTTP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# What resolves with alibi 0.9.6 (the version Glassbox runs) on Python 3.11.
PINS = [
    "mlserver==1.6.1",
    "mlserver-alibi-explain==1.6.1",
    "mlserver-sklearn==1.6.1",
    "alibi[shap,tensorflow]==0.9.6",
    "numpy<2",
    "tensorflow-cpu==2.14.1",
    "setuptools<81",
]
MODEL_PORT, EXPLAINER_PORT = 18300, 18310
EXPLAINERS = {  # name: (alibi explainer type, model it explains)
    "anchors": ("anchor_tabular", "wine"),
    "shap": ("kernel_shap", "wine"),
    "text-anchors": ("anchor_text", "sentiment"),
}


def _run(command: list[str], log: Path, timeout: float) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=timeout)


def ensure_environment(venv: Path, log: Path) -> str | None:
    """Create MLServer's environment when missing; None when it is usable, else why not."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing MLServer into {venv} (once; a few minutes)", flush=True)
        try:
            _run([sys.executable, "-m", "venv", str(venv)], log, 120)
            # uv resolves this set in seconds where pip's resolver took over 18 minutes.
            _run([str(venv / "bin" / "pip"), "install", "-q", "uv"], log, 300)
            _run([str(venv / "bin" / "uv"), "pip", "install", "--python", str(python), *PINS], log, 1500)
            # pip, not uv: pip takes the CPU build of torch already on disk, uv would fetch CUDA's.
            # torch asks for setuptools; MLServer's tracing still imports pkg_resources (gone in 81).
            _run([str(venv / "bin" / "pip"), "install", "-q", "torch==2.13.0", "setuptools<81"], log, 900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            return f"not measured: installing MLServer failed ({error}); see {log}"
    probe = subprocess.run([str(python), "-c", "import mlserver, mlserver_alibi_explain, torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        last = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "unknown error"
        return f"not measured: MLServer's runtime does not import in {venv}: {last}"
    return None


def _write(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=1))


class MLServerDeployment:
    """The model server and the explainer server, started and stopped together."""

    def __init__(self, venv: Path, work: Path):
        self.venv = venv
        self.work = work
        self.root = work / "mlserver"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.client = httpx.Client(timeout=600)

    def __enter__(self) -> MLServerDeployment:
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'explainers'}:{HERE / 'mlserver'}", "TF_CPP_MIN_LOG_LEVEL": "3"}
        fitted = self.root / "fitted"
        fitted.mkdir(parents=True, exist_ok=True)
        python = str(self.venv / "bin" / "python")
        with (self.root / "fit.log").open("wb") as log:
            subprocess.run(
                [python, str(HERE / "mlserver" / "fit.py"), str(self.work), str(fitted)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=600,
            )
        ports = {"model": MODEL_PORT, "explainer": EXPLAINER_PORT}
        for server, port in ports.items():
            _write(
                self.root / server / "settings.json",
                {"http_port": port, "grpc_port": port + 1, "metrics_port": port + 2, "parallel_workers": 0},
            )
        for model in ("wine", "sentiment"):
            folder = self.work / ("tabular" if model == "wine" else "text") / "model"
            _write(
                self.root / "model" / model / "model-settings.json",
                {"name": model, "implementation": "runtime.TorchScriptModel", "parameters": {"uri": str(folder)}},
            )
        for name, (kind, model) in EXPLAINERS.items():
            _write(
                self.root / "explainer" / name / "model-settings.json",
                {
                    "name": name,
                    "implementation": "mlserver_alibi_explain.AlibiExplainRuntime",
                    "parameters": {
                        "uri": str(fitted / name),
                        "extra": {"explainer_type": kind, "infer_uri": f"http://127.0.0.1:{MODEL_PORT}/v2/models/{model}/infer"},
                    },
                },
            )
        for server in ports:
            log = (self.root / f"{server}.log").open("wb")
            self.processes.append(
                subprocess.Popen(
                    [str(self.venv / "bin" / "mlserver"), "start", str(self.root / server)],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 300
        for port, names in ((MODEL_PORT, ("wine", "sentiment")), (EXPLAINER_PORT, tuple(EXPLAINERS))):
            for name in names:
                while not self._ready(port, name):
                    if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                        self.__exit__()
                        raise RuntimeError(f"MLServer did not serve {name} on port {port}; see {self.root}/*.log")
                    time.sleep(1)
        return self

    def _ready(self, port: int, name: str) -> bool:
        try:
            return self.client.get(f"http://127.0.0.1:{port}/v2/models/{name}/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def __exit__(self, *_: Any) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.client.close()

    def counters(self, model: str) -> dict[str, float]:
        """Calls (MLServer's own count) and rows (the runtime's) the model served."""
        found = {"requests": 0.0, "rows": 0.0}
        for line in self.client.get(f"http://127.0.0.1:{MODEL_PORT + 2}/metrics").text.splitlines():
            if f'model="{model}"' not in line:
                continue
            if line.startswith("model_infer_request_success_total{"):
                found["requests"] = float(line.rsplit(" ", 1)[1])
            elif line.startswith("bench_rows_total{"):
                found["rows"] = float(line.rsplit(" ", 1)[1])
        return found

    def explain(self, name: str, instance: Any, parameters: dict[str, Any]) -> dict[str, Any]:
        if isinstance(instance, str):
            tensor = {
                "name": "text",
                "shape": [1],
                "datatype": "BYTES",
                "data": [instance],
                "parameters": {"content_type": "str"},
            }
        else:
            tensor = {"name": "x", "shape": [1, len(instance)], "datatype": "FP64", "data": [float(v) for v in instance]}
        response = self.client.post(
            f"http://127.0.0.1:{EXPLAINER_PORT}/v2/models/{name}/infer",
            json={"inputs": [tensor], "parameters": {"explain_parameters": parameters}},
        )
        response.raise_for_status()
        return dict(json.loads(response.json()["outputs"][0]["data"][0]))
