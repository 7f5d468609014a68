"""The benchmark's model on MLServer: the same TorchScript artifact Glassbox's predictor serves.

Runs inside MLServer's own environment (bench/.venv-mlserver). It counts the
rows it scores on MLServer's /metrics (beside MLServer's own request count),
so the benchmark counts predictor work on the predictor's side for every
runner.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse
from prometheus_client import REGISTRY, Counter

from glassbox.explainers.data.torch_artifacts import Tokenizer  # numpy and the standard library only


def _rows_counter() -> Counter:
    """On MLServer's /metrics beside its own request counter; MLServer imports this file once per model."""
    try:
        return Counter("bench_rows", "Rows scored", ["model"])
    except ValueError:  # registered by the other model's import
        return REGISTRY._names_to_collectors["bench_rows"]  # type: ignore[no-any-return]


ROWS = _rows_counter()


class TorchScriptModel(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        torch.set_num_threads(1)  # as Glassbox's predictor runs: the explainer shares the cores
        self.score = TorchScriptPredict(self.settings.parameters.uri)
        self.score.load()
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        tensor = payload.inputs[0]
        if tensor.datatype == "BYTES":
            rows: np.ndarray | list[str] = [str(t) for t in StringCodec.decode_input(tensor)]
        else:
            rows = np.asarray(NumpyCodec.decode_input(tensor), dtype=np.float32)
        scores = self.score(rows)
        ROWS.labels(self.name).inc(len(rows))
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("scores", scores)])


class TorchScriptPredict:
    """The artifact as a plain function (text through its tokenizer); picklable, because alibi saves
    what it fits: the module is loaded again on first use."""

    def __init__(self, folder: str):
        self.folder = folder
        self._module: torch.jit.ScriptModule | None = None
        self._tokenizer: Tokenizer | None = None

    def load(self) -> None:
        self._module = torch.jit.load(os.path.join(self.folder, "model.pt"))
        self._module.eval()
        self._tokenizer = Tokenizer.load(self.folder)

    def __call__(self, rows: np.ndarray | list[str]) -> np.ndarray:
        if self._module is None:
            self.load()
        assert self._module is not None
        array = self._tokenizer.encode(list(rows)) if self._tokenizer is not None else np.asarray(rows, dtype=np.float32)
        with torch.inference_mode():
            return np.asarray(self._module(torch.from_numpy(array)).numpy())

    def __getstate__(self) -> dict[str, object]:
        return {"folder": self.folder, "_module": None, "_tokenizer": None}
