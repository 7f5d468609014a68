"""Small measuring helpers shared by the benchmark scripts and the tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from glassbox.local import LocalDeployment


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory so far (Linux: VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def in_process_predictor(model_path: Path) -> tuple[Callable[[Any], np.ndarray], dict[str, int]]:
    """A TorchScript model called directly, as alibi is used without a server, and its call and row counts."""
    import torch

    model = torch.jit.load(str(model_path))
    calls = {"calls": 0, "rows": 0}

    def predict(X: Any) -> np.ndarray:
        calls["calls"] += 1
        calls["rows"] += len(X)
        with torch.no_grad():
            return np.asarray(model(torch.tensor(np.asarray(X), dtype=torch.float32)).numpy())

    return predict, calls


def predictor_counters(deployment: LocalDeployment, model: str) -> dict[str, float]:
    """Requests and rows a local deployment's predictor has answered for `model`, from its /metrics."""
    counters = {"requests": 0.0, "rows": 0.0}
    for line in httpx.get(f"{deployment.predictor_base}/metrics").text.splitlines():
        for name in counters:
            if line.startswith(f"glassbox_predictor_{name}_total{{") and f'model="{model}"' in line:
                counters[name] = float(line.rsplit(" ", 1)[1])
    return counters
