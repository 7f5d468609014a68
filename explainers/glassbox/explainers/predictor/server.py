"""Glassbox's PyTorch predictor: a `kserve.Model` server with dynamic batching.

    python -m glassbox.explainers.predictor --model_name credit-risk --model_dir /mnt/models \
        [--device auto|cuda|cpu] [--max_batch_size 256] [--max_batch_latency_ms 0] \
        [--max_request_rows 262144] [kserve's own flags]

Serves KServe v1 (`/v1/models/NAME:predict`) and v2 (`/v2/models/NAME/infer`)
over REST, with v2 binary tensors, and v2 over gRPC. Runs on CUDA when a GPU
is present.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import kserve
import numpy as np
from kserve.protocol.infer_type import InferRequest, InferResponse

from glassbox.contract.server_args import PredictorServerArgs
from glassbox.explainers.data.storage import ARTIFACT_LIMITS, resolve
from glassbox.explainers.data.torch_artifacts import Tokenizer, choose_device, load_module
from glassbox.explainers.predictor import metrics
from glassbox.explainers.predictor.batching import DynamicBatcher
from glassbox.explainers.predictor.errors import Overloaded, ShapeMismatch
from glassbox.explainers.serving.errors import InputError, http_error, overloaded
from glassbox.explainers.serving.model_server import read_command_line, serve, server_parser
from glassbox.explainers.serving.payloads import Limits, decode_request, encode_predictions, request_from_bytes

log = logging.getLogger(__name__)

SMALL_CPU_BATCH_ROWS = 512


class TorchPredictor(kserve.Model):  # type: ignore[misc]
    def __init__(self, args: PredictorServerArgs):
        super().__init__(args.model_name)
        self.model_sha256 = args.model_sha256
        self.max_queued_rows = args.max_queued_rows
        self.request_timeout_seconds = args.request_timeout_seconds
        self.cpu_threads = args.cpu_threads
        self.limits = Limits(max_instances=args.max_request_rows, max_elements=64_000_000)
        self.model_dir = args.model_dir
        self.requested_device = args.device
        self.max_batch_size = args.max_batch_size
        self.max_batch_latency_ms = args.max_batch_latency_ms
        self.device = "cpu"
        self.module: Any = None
        self.tokenizer: Tokenizer | None = None
        self.batcher: DynamicBatcher | None = None

    def load(self) -> bool:
        self.device = choose_device(self.requested_device)
        if self.device == "cpu" and self.cpu_threads > 0:
            import torch

            # torch's default (every core, spinning between passes) starves the processes
            # beside it, the explainer among them, for no gain on small models.
            torch.set_num_threads(self.cpu_threads)
        model_dir = resolve(
            self.model_dir, limits=ARTIFACT_LIMITS
        )  # a local path in a pod (KServe fetched it); file:// or http(s):// locally
        self.module = load_module(model_dir, self.device, self.model_sha256)
        self.tokenizer = Tokenizer.load(model_dir)
        # On the CPU a pass over a few hundred rows takes microseconds: cheaper in place than
        # handed to a thread (measured 0.9 against 1.1 ms per 200-row request).
        inline = SMALL_CPU_BATCH_ROWS if self.device == "cpu" else 0
        self.batcher = DynamicBatcher(
            self.forward,
            self.max_batch_size,
            self.max_batch_latency_ms,
            inline_max_rows=inline,
            max_queued_rows=self.max_queued_rows,
        )
        metrics.QUEUED_ROWS.labels(self.name).set_function(lambda: self.batcher.queued_rows if self.batcher else 0)
        log.info(
            "loaded %s on %s (batches of up to %d rows, %s ms)",
            self.model_dir,
            self.device,
            self.max_batch_size,
            self.max_batch_latency_ms,
        )
        self.ready = True
        return True

    def forward(self, rows: np.ndarray) -> np.ndarray:
        """One forward pass, blocking: the batcher runs it in a worker thread."""
        import torch

        metrics.FORWARD_PASSES.labels(self.name).inc()
        with torch.inference_mode():
            tensor = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32)).to(self.device)
            try:
                output = self.module(tensor)
            except RuntimeError as error:
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise ShapeMismatch(f"the model cannot take instances of shape {list(rows.shape[1:])}: {first_line}") from None
            if isinstance(output, tuple | list):
                output = output[0]
            answer = np.asarray(output.detach().float().cpu().numpy())
        if answer.ndim not in (1, 2) or len(answer) != len(rows):
            # Broadcasting can carry instances of the wrong shape through a model: its answer gives them away.
            raise ShapeMismatch(
                f"the model cannot take instances of shape {list(rows.shape[1:])}: it answered shape {list(answer.shape)} "
                f"for {len(rows)} of them, not one score or one row of scores per instance"
            )
        return answer

    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        assert self.batcher is not None, "load() first"
        try:
            request = decode_request(payload, self.limits)
            if isinstance(request.instances, list):
                if self.tokenizer is None:
                    raise InputError("this model takes numeric instances, not strings (it ships no tokenizer.json)")
                rows = self.tokenizer.encode(request.instances)
            else:
                rows = request.instances
            outputs = await asyncio.wait_for(self.batcher.predict(rows), self.request_timeout_seconds)
            metrics.REQUESTS.labels(self.name).inc()
            metrics.ROWS.labels(self.name).inc(len(rows))
        except InputError as error:
            raise http_error(error.status, str(error)) from None
        except Overloaded as error:
            metrics.REFUSED.labels(self.name, "overloaded").inc()
            raise overloaded(str(error)) from None
        except TimeoutError:
            metrics.REFUSED.labels(self.name, "deadline").inc()
            raise http_error(
                504,
                f"the model did not answer within {self.request_timeout_seconds:g} s (--request_timeout_seconds); "
                "send fewer rows per request, or give the predictor more replicas or a GPU",
            ) from None
        request_id = (headers or {}).get("x-request-id")
        return encode_predictions(outputs, request, self.name, request_id)


def build_parser() -> argparse.ArgumentParser:
    # An explainer sends a hundred requests per explanation: no log line for each.
    return server_parser(PredictorServerArgs, __doc__, log_each_request=False)


def main() -> None:
    args, kserve_flags = read_command_line(build_parser(), PredictorServerArgs)
    # Binary v2 tensors reach the model as the bytes they came in (see request_from_bytes).
    InferRequest.from_bytes = staticmethod(request_from_bytes)
    model = TorchPredictor(args)
    model.load()
    serve(
        model,
        kserve_flags,
        max_body_bytes=args.max_body_bytes,
        longest_request_seconds=args.request_timeout_seconds,
        binary_infer_route=True,
        request_logger_url=args.request_logger_url,
    )
