"""The data plane's pure parts: payloads, batching, reference data, artifacts, local mode's manifest checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from kserve.errors import InvalidInput

from glassbox.contract.api import ReferenceData
from glassbox.contract.server_args import (
    KSERVE_FLAGS,
    DetectorServerArgs,
    ExplainerServerArgs,
    PredictorServerArgs,
    ServerArgs,
)
from glassbox.explainers.batching import DynamicBatcher, Overloaded
from glassbox.explainers.methods.kernel_shap import l1_regularisation
from glassbox.explainers.payloads import (
    INFERENCE_HEADER,
    InputError,
    Limits,
    decode_request,
    encode_predictions,
    numeric_array,
    predictions_from_response,
    predictions_from_v1,
    predictions_from_v2,
    request_from_bytes,
    v2_request,
)
from glassbox.explainers.reference_data import ReferenceDataError, load_reference
from glassbox.explainers.storage import StorageError, resolve
from glassbox.explainers.torch_artifacts import ArtifactError, Tokenizer, find_artifact, load_module
from glassbox.local import LocalDeployment, LocalModeError, read_manifest

# --------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(
    "values,words",
    [
        ([[1, 2], [3]], "different lengths"),
        ([[1, "a"]], "not a number"),
        ([[1, float("nan")]], "NaN or infinity at index [0, 1]"),
        ([[1, float("inf")]], "NaN or infinity"),
        ([], "empty"),
        ("1,2,3", "must be a list"),
    ],
)
def test_numeric_arrays_refuse_bad_values(values: object, words: str) -> None:
    with pytest.raises(InputError, match=r".*") as caught:
        numeric_array(values, "instances")
    assert words in str(caught.value)


def test_size_limits_answer_413() -> None:
    with pytest.raises(InputError) as caught:
        numeric_array([[0.0] * 3] * 11, "instances", Limits(max_instances=10))
    assert caught.value.status == 413
    with pytest.raises(InputError) as caught:
        numeric_array([[0.0] * 30] * 2, "instances", Limits(max_elements=50))
    assert caught.value.status == 413


def test_text_and_numbers_are_told_apart() -> None:
    assert decode_request({"instances": ["a b", "c"]}).instances == ["a b", "c"]
    assert decode_request({"instances": [["a b"]]}).instances == ["a b"]
    assert decode_request({"inputs": [[1, 2]]}).instances.shape == (1, 2)


def test_predictor_answers_are_checked() -> None:
    assert predictions_from_v1({"predictions": [[0.1, 0.9]]}, 1).shape == (1, 2)
    assert predictions_from_v2({"outputs": [{"shape": [2, 2], "data": [0.1, 0.9, 0.8, 0.2]}]}, 2).shape == (2, 2)
    for body, rows in (({"predictions": [[0.1, 0.9]]}, 2), ({"oops": 1}, 1), ({"predictions": [[float("nan")]]}, 1)):
        with pytest.raises(ValueError):
            predictions_from_v1(body, rows)


def test_binary_v2_tensors_round_trip() -> None:
    """What the explainer sends, as the predictor reads it; what the predictor answers, as the explainer reads it."""
    rows = np.random.default_rng(0).normal(size=(7, 3))
    content, headers = v2_request(rows, binary=True)
    request = request_from_bytes(content, int(headers[INFERENCE_HEADER]), "m")
    decoded = decode_request(request)
    np.testing.assert_allclose(decoded.instances, rows.astype(np.float32))
    assert decoded.binary_output

    answer, header_length = encode_predictions(rows[:, :2].astype(np.float32), decoded, "m").to_rest()
    assert isinstance(answer, bytes) and header_length is not None
    np.testing.assert_allclose(predictions_from_response("v2", answer, str(header_length), 7), rows[:, :2], rtol=1e-6)

    for short in (content[:-4], content[: int(headers[INFERENCE_HEADER]) - 1]):
        with pytest.raises(InvalidInput):
            decode_request(request_from_bytes(short, int(headers[INFERENCE_HEADER]), "m"))
    with pytest.raises(ValueError, match="binary output should hold"):
        predictions_from_response("v2", answer[:-4], str(header_length), 7)


def test_the_memo_sends_each_row_once_per_explanation() -> None:
    from glassbox.explainers.prediction_memo import PredictionMemo

    sent: list[int] = []

    def predict(rows: np.ndarray | list[str]) -> np.ndarray:
        sent.append(len(rows))
        return (
            np.asarray([[float(len(r))] for r in rows]) if isinstance(rows, list) else np.asarray(rows).sum(axis=1, keepdims=True)
        )

    memo = PredictionMemo(max_rows_per_call=10)
    rows = np.asarray([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(memo.predict(rows, predict), [[3.0], [7.0], [3.0]])
    np.testing.assert_array_equal(memo.predict(rows[::-1], predict), [[3.0], [7.0], [3.0]])
    assert sent == [2]  # the repeat inside the call and the whole second call came from the memo
    assert memo.predict(np.ones((11, 2)), predict).shape == (11, 1) and sent[-1] == 11  # large calls go straight through
    np.testing.assert_array_equal(memo.predict(["ab", "abc", "ab"], predict), [[2.0], [3.0], [2.0]])
    assert sent[-1] == 2
    # Old rows, a new one twice and -0.0 (other bytes than 0.0, so scored apart: the answer is still right).
    mixed = np.asarray([[3.0, 4.0], [5.0, 6.0], [1.0, 2.0], [5.0, 6.0], [-0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(memo.predict(mixed, predict), [[7.0], [11.0], [3.0], [11.0], [0.0], [0.0]])
    assert sent[-1] == 3
    # Images: rows of any shape are one key each.
    images = np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2)
    np.testing.assert_array_equal(
        PredictionMemo().predict(np.concatenate([images, images[:1]]), lambda x: np.asarray(x).reshape(len(x), -1).sum(axis=1)),
        [28, 92, 156, 28],
    )


def test_a_full_memo_still_answers_every_row() -> None:
    from glassbox.explainers.prediction_memo import PredictionMemo

    sent: list[int] = []

    def predict(rows: np.ndarray | list[str]) -> np.ndarray:
        sent.append(len(rows))
        return np.asarray(rows) * 10

    memo = PredictionMemo(max_bytes=400)  # two rows of one float64 (8 bytes, 160 of bookkeeping, room for 4 scores): 368
    first = memo.predict(np.asarray([[1.0], [2.0]]), predict)
    assert memo.held_bytes == 368
    second = memo.predict(np.asarray([[2.0], [3.0], [4.0], [3.0]]), predict)  # would pass 400 bytes: not kept
    np.testing.assert_array_equal(first, [[10.0], [20.0]])
    np.testing.assert_array_equal(second, [[20.0], [30.0], [40.0], [30.0]])
    assert memo.held_bytes == 368 and sent == [2, 2]
    memo.predict(np.asarray([[3.0]]), predict)
    assert sent[-1] == 1  # scored again: it was not kept


def test_the_memo_holds_images_within_its_bytes() -> None:
    from glassbox.explainers.prediction_memo import PredictionMemo

    memo = PredictionMemo(max_bytes=16 * 1024 * 1024)
    rng = np.random.default_rng(0)
    for _ in range(20):  # 20 calls of 10 new 224x224x3 float32 images: 120 MB if all were kept
        images = rng.random((10, 224, 224, 3), dtype=np.float32)
        scores = memo.predict(images, lambda x: np.asarray(x).reshape(len(x), -1).mean(axis=1, keepdims=True))
        np.testing.assert_allclose(scores[:, 0], images.reshape(10, -1).mean(axis=1), rtol=1e-6)
        assert memo.held_bytes <= 16 * 1024 * 1024
    assert memo.held_bytes > 8 * 1024 * 1024  # it kept what fitted (20 images of 0.6 MB; 30 would not fit)


def test_concurrent_calls_share_predictor_calls_and_each_gets_its_own_rows() -> None:
    import threading

    from glassbox.explainers.call_coalescer import CallCoalescer

    sizes: list[int] = []

    def send(rows: np.ndarray | list[str], deadline: float | None) -> np.ndarray:
        sizes.append(len(rows))
        time.sleep(0.05)
        array = np.asarray(rows)
        if (array < 0).any():
            raise RuntimeError("the predictor refused a negative row")
        return array * 2

    shared = CallCoalescer(send)
    answers: dict[int, np.ndarray] = {}

    def explain(index: int) -> None:
        answers[index] = shared.predict(np.full((index + 1, 3), float(index)))

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, answer in answers.items():
        np.testing.assert_array_equal(answer, np.full((index + 1, 3), 2.0 * index))
    assert len(answers) == 8 and len(sizes) < 8 and sum(sizes) == sum(range(1, 9))

    with pytest.raises(RuntimeError, match="negative"):
        shared.predict(np.full((1, 3), -1.0))
    np.testing.assert_array_equal(shared.predict(np.ones((1, 3))), [[2.0, 2.0, 2.0]])  # not stuck after an error


def test_no_explanation_waits_past_its_deadline_for_a_shared_call_and_calls_flow_again_after() -> None:
    """A call stuck in the predictor: explanations queued behind it give up at their own deadlines,
    the stuck call ends at the latest deadline of those in it, and the next call goes straight out."""
    import threading

    from glassbox.explainers.call_coalescer import CallCoalescer
    from glassbox.explainers.deadlines import ExplanationCancelled

    release = threading.Event()
    deadlines_sent: list[float | None] = []

    def send(rows: np.ndarray | list[str], deadline: float | None) -> np.ndarray:
        deadlines_sent.append(deadline)
        if len(deadlines_sent) == 1:  # the first call hangs until its deadline, as a dripping predictor's would
            release.wait(None if deadline is None else deadline - time.monotonic())
            raise ExplanationCancelled("cut off at the deadline")
        return np.asarray(rows) * 2

    shared = CallCoalescer(send)
    start = time.monotonic()
    outcomes: dict[str, tuple[str, float]] = {}

    def explain(name: str, deadline: float) -> None:
        try:
            shared.predict(np.ones((1, 2)), deadline)
            outcomes[name] = ("answered", time.monotonic() - start)
        except ExplanationCancelled:
            outcomes[name] = ("cancelled", time.monotonic() - start)

    stuck = threading.Thread(target=explain, args=("stuck", start + 1.0))
    stuck.start()
    time.sleep(0.1)
    queued = [threading.Thread(target=explain, args=(f"queued{i}", start + 0.3 + 0.1 * i)) for i in range(3)]
    for thread in queued:
        thread.start()
    for thread in [stuck, *queued]:
        thread.join(5)
    for i in range(3):
        state, at = outcomes[f"queued{i}"]
        assert state == "cancelled" and abs(at - (0.3 + 0.1 * i)) < 0.1, outcomes
    assert outcomes["stuck"][0] == "cancelled" and abs(outcomes["stuck"][1] - 1.0) < 0.1, outcomes
    assert deadlines_sent == [start + 1.0]  # those who gave up were never sent
    before = time.monotonic()
    np.testing.assert_array_equal(shared.predict(np.ones((1, 2)), time.monotonic() + 5), [[2.0, 2.0]])
    assert time.monotonic() - before < 0.1  # nothing left in flight or queued


# --------------------------------------------------------------------------- batching


async def test_concurrent_requests_share_forward_passes() -> None:
    calls: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        time.sleep(0.01)
        return rows.sum(axis=1, keepdims=True)

    batcher = DynamicBatcher(forward, max_batch_size=64, max_latency_ms=20)
    requests = [np.full((4, 3), i, dtype=float) for i in range(10)]
    answers = await asyncio.gather(*(batcher.predict(r) for r in requests))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, np.full((4, 1), 3.0 * i))  # each request gets its own rows back
    assert sum(calls) == 40
    assert len(calls) < 10, calls  # coalesced
    assert max(calls) <= 64


async def test_a_large_request_is_split_to_the_batch_limit() -> None:
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        return rows * 2

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=1)
    rows = np.arange(250, dtype=float).reshape(-1, 1)
    np.testing.assert_array_equal(await batcher.predict(rows), rows * 2)
    assert max(sizes) <= 100 and sum(sizes) == 250


async def test_without_a_wait_a_lone_request_runs_at_once_and_requests_queue_while_the_model_is_busy() -> None:
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        time.sleep(0.2)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=0)
    first = asyncio.ensure_future(batcher.predict(np.zeros((1, 1))))
    await asyncio.sleep(0.05)  # the first forward pass is running
    rest = [np.full((2, 1), float(i)) for i in range(5)]
    answers = await asyncio.gather(*(batcher.predict(r) for r in rest))
    await first
    assert sizes == [1, 10]  # the five that queued meanwhile shared one pass
    for r, a in zip(rest, answers, strict=True):
        np.testing.assert_array_equal(a, r)


async def test_small_batches_can_run_in_place_and_large_ones_in_a_worker_thread() -> None:
    import threading

    threads: list[str] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return rows + 1

    batcher = DynamicBatcher(forward, max_batch_size=1000, max_latency_ms=0, inline_max_rows=10)
    np.testing.assert_array_equal(await batcher.predict(np.zeros((10, 1))), np.ones((10, 1)))
    np.testing.assert_array_equal(await batcher.predict(np.zeros((11, 1))), np.ones((11, 1)))
    assert threads[0] == threading.current_thread().name and threads[1] != threads[0]


async def test_a_failing_forward_pass_fails_its_requests_not_the_batcher() -> None:
    def forward(rows: np.ndarray) -> np.ndarray:
        if (rows < 0).any():
            raise RuntimeError("negative input")
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=8, max_latency_ms=1)
    with pytest.raises(RuntimeError, match="negative"):
        await batcher.predict(np.array([[-1.0]]))
    np.testing.assert_array_equal(await batcher.predict(np.array([[2.0]])), [[2.0]])


@pytest.mark.parametrize("max_latency_ms", [0, 5])
async def test_a_malformed_request_fails_alone_and_every_request_beside_it_is_answered(max_latency_ms: float) -> None:
    """A 1-D or wrong-width request arriving among valid ones once killed the batcher: nobody got an answer."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)

    def forward(rows: np.ndarray) -> np.ndarray:
        time.sleep(0.001)  # long enough for requests to queue behind a pass
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))).numpy()

    batcher = DynamicBatcher(forward, max_batch_size=64, max_latency_ms=max_latency_ms)
    rng = np.random.default_rng(0)
    sent: list[tuple[np.ndarray, bool]] = [(rng.normal(size=(int(rng.integers(1, 8)), 5)), True) for _ in range(100)]
    # 1-D, too narrow, one dimension too many: each must fail alone. Integer rows of the right width are fine.
    for index, (rows, ok) in enumerate(
        [(np.ones(3), False), (np.ones((2, 3)), False), (np.ones((2, 5, 1)), False), (np.ones((1, 5), dtype=np.int64), True)]
    ):
        sent.insert(index * 25 + 3, (rows, ok))
    answers = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(rows) for rows, _ in sent), return_exceptions=True), timeout=30
    )
    for (rows, ok), answer in zip(sent, answers, strict=True):
        if ok:
            assert not isinstance(answer, BaseException), answer
            np.testing.assert_allclose(answer, forward(rows), rtol=1e-5)  # as if it had been alone
        else:
            assert isinstance(answer, Exception), (rows.shape, answer)
    assert batcher.queued_rows == 0
    np.testing.assert_allclose(await batcher.predict(sent[0][0]), forward(sent[0][0]), rtol=1e-5)  # the batcher lives on


async def test_past_its_queue_bound_a_request_is_refused_at_once_and_the_rest_are_answered() -> None:
    import threading

    release = threading.Event()

    def forward(rows: np.ndarray) -> np.ndarray:
        release.wait(10)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=10, max_latency_ms=0, max_queued_rows=30)
    admitted = [asyncio.ensure_future(batcher.predict(np.full((10, 1), float(i)))) for i in range(3)]
    await asyncio.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(Overloaded, match="30 rows are waiting for the model"):
        await batcher.predict(np.zeros((1, 1)))
    refused_in = time.monotonic() - began
    release.set()
    for i, job in enumerate(admitted):
        np.testing.assert_array_equal(await job, np.full((10, 1), float(i)))
    assert batcher.queued_rows == 0 and refused_in < 5
    np.testing.assert_array_equal(await batcher.predict(np.ones((1, 1))), np.ones((1, 1)))


async def test_a_caller_that_gives_up_has_its_rows_skipped() -> None:
    import threading

    release = threading.Event()
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        release.wait(10)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=0)
    busy = asyncio.ensure_future(batcher.predict(np.zeros((1, 1))))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.predict(np.zeros((7, 1))), timeout=0.05)
    release.set()
    await busy
    np.testing.assert_array_equal(await batcher.predict(np.ones((2, 1))), np.ones((2, 1)))
    assert sizes == [1, 2] and batcher.queued_rows == 0


# --------------------------------------------------------------------------- reference data and storage


def test_reference_data_in_three_formats(tmp_path: Path) -> None:
    X = np.random.default_rng(0).normal(size=(20, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    frame["y"] = np.arange(20) % 2
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    np.save(tmp_path / "d.npy", X)
    np.save(tmp_path / "labels.npy", frame["y"].to_numpy())
    for uri in ("d.csv", "d.parquet"):
        table = load_reference(ReferenceData(uri=uri, target_column="y"), base=tmp_path)
        assert table.feature_names == ["a", "b", "c"]
        np.testing.assert_allclose(table.features, X)
        np.testing.assert_array_equal(table.labels, frame["y"])
    table = load_reference(ReferenceData(uri=f"file://{tmp_path}/d.npy", labels_uri="labels.npy", max_rows=5), base=tmp_path)
    assert table.feature_names == ["f0", "f1", "f2"] and len(table.features) == 5 and len(table.labels) == 5


@pytest.mark.parametrize(
    "spec,words",
    [
        (ReferenceData(uri="d.csv", target_column="label"), "no column 'label'"),
        (ReferenceData(uri="d.csv", feature_names=["x"]), "featureNames has 1 names for 4 columns"),
        (ReferenceData(uri="t.csv"), "not numeric"),
        (ReferenceData(uri="d.txt"), "cannot tell the format"),
        (ReferenceData(uri="d.csv", categorical_names={"9": ["a"]}), "names column 9"),
    ],
)
def test_reference_data_errors_name_the_problem(tmp_path: Path, spec: ReferenceData, words: str) -> None:
    pd.DataFrame({"a": [1.0], "b": [2.0], "c": [3.0], "y": [0]}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"a": [1.0], "colour": ["red"]}).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(ReferenceDataError) as caught:
        load_reference(spec, base=tmp_path)
    assert words in str(caught.value)


def test_storage_names_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no such file"):
        resolve("missing.csv", tmp_path)
    with pytest.raises(StorageError, match="storage extra"):
        resolve("s3://bucket/data.csv")


# --------------------------------------------------------------------------- artifacts


def test_torch_export_artifacts_load_like_torchscript(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Softmax(dim=-1)).eval()
    example = torch.randn(3, 4)
    batch = torch.export.Dim("batch")
    exported = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(exported, str(tmp_path / "model.pt2"))
    loaded = load_module(tmp_path, "cpu")
    torch.testing.assert_close(loaded(torch.randn(5, 4)).sum(dim=1), torch.ones(5))
    assert find_artifact(tmp_path).name == "model.pt2"


def test_a_missing_artifact_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(ArtifactError, match=r"expected model.pt or model.pt2 .* found \['weights.bin'\]"):
        find_artifact(tmp_path)


def test_tokenizer_counts_known_words(tmp_path: Path) -> None:
    tokenizer = Tokenizer({"good": 0, "bad": 1})
    tokenizer.save(tmp_path)
    loaded = Tokenizer.load(tmp_path)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.encode(["Good, good! not BAD", "unknown"]), [[2, 1], [0, 0]])


def test_l1_regularisation_choices() -> None:
    assert l1_regularisation("False") is False
    assert l1_regularisation("num_features(5)") == "num_features(5)"
    with pytest.raises(ValueError, match="not one of"):
        l1_regularisation("lasso")


# --------------------------------------------------------------------------- local mode


def test_local_mode_refuses_an_invalid_manifest(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "apiVersion: glassbox.dev/v1alpha1\nkind: ExplainedModel\nmetadata: {name: x}\nspec:\n  predictor: {storageUri: m, inferenceServiceName: y}\n  explainer: {methods: [{type: AnchorText}]}\n"
    )
    with pytest.raises(LocalModeError, match="spec.predictor.storageUri: set either storageUri"):
        read_manifest(path)


def test_local_mode_runs_the_operators_arguments(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    path = tmp_path / "m.yaml"
    path.write_text(
        "kind: ExplainedModel\nmetadata: {name: credit}\nspec:\n"
        "  predictor: {modelFormat: pytorch, storageUri: model, gpus: 1, batching: {maxBatchSize: 64}}\n"
        "  explainer: {methods: [{type: AnchorText}]}\n"
    )
    deployment = LocalDeployment(path)
    predictor, _ = deployment.predictor_command(8000)
    assert (
        f"--model_dir={tmp_path / 'model'}" in predictor and "--device=cuda" in predictor and "--max_batch_size=64" in predictor
    )
    explainer, env = deployment.explainer_command(8001, "127.0.0.1:8000")
    assert "--predictor_host=127.0.0.1:8000" in explainer and "--predictor_protocol=v2" in explainer
    assert "AnchorText" in env["GLASSBOX_EXPLAINER_SPEC"]


@pytest.mark.parametrize("server", ["predictor_server", "explainer_server", "detector_server"])
def test_a_misspelt_flag_stops_a_server_and_is_named(server: str) -> None:
    import subprocess
    import sys

    started = subprocess.run(
        [sys.executable, "-m", f"glassbox.explainers.{server}", "--model_name=m", "--max_batch_sise=8"]
        + (["--model_dir=/nonexistent"] if server == "predictor_server" else []),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2 and "unrecognized arguments: --max_batch_sise=8" in started.stderr, started.stderr[-2000:]


def test_every_argument_the_builders_write_is_one_its_server_reads() -> None:
    """The wire, both ends: each sample's containers, parsed by the parser of the server they run."""
    import yaml

    from glassbox.explainers import detector_server, explainer_server, predictor_server

    parsers: dict[str, tuple[Any, type[ServerArgs]]] = {
        "glassbox-predictor": (predictor_server.build_parser(), PredictorServerArgs),
        "glassbox-explainer": (explainer_server.build_parser(), ExplainerServerArgs),
        "detector": (detector_server.build_parser(), DetectorServerArgs),
    }
    golden = Path(__file__).resolve().parents[2] / "operator" / "tests" / "golden"
    seen = set()
    for path in sorted(golden.glob("*.children.yaml")):
        for child in yaml.safe_load_all(path.read_text()):
            for container in (child.get("spec") or {}).get("predictor", {}).get("containers", []):
                if "glassbox" not in container["image"]:
                    continue
                kind = (
                    "detector"
                    if container.get("command", [""])[-1].endswith("detector_server")
                    else container["image"].split("/")[-1].split(":")[0]
                )
                parser, arguments = parsers[kind]
                # exits 2 naming an argument the server does not know, or a value its contract model refuses
                arguments.from_namespace(parser.parse_args(container["args"]), parser)
                seen.add(kind)
    assert seen == set(parsers)


def test_the_servers_contract_flags_are_kserves_where_it_says_and_new_elsewhere() -> None:
    """KSERVE_FLAGS are read from KServe's parser, which the servers inherit; every other field is a flag
    of the server's own, so a KServe upgrade that adds one of the same name would be noticed here."""
    import kserve.model_server

    kserve_flags = {action.dest for action in kserve.model_server.parser._actions}
    assert KSERVE_FLAGS <= kserve_flags, KSERVE_FLAGS - kserve_flags
    for arguments in (PredictorServerArgs, ExplainerServerArgs, DetectorServerArgs):
        own = set(arguments.model_fields) - KSERVE_FLAGS
        assert not own & kserve_flags, (arguments.__name__, own & kserve_flags)


def test_a_value_the_contract_refuses_stops_the_server_naming_the_flag() -> None:
    started = subprocess.run(
        [sys.executable, "-m", "glassbox.explainers.detector_server", "--model_name=m", "--max_body_bytes=lots"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2, started.stderr[-2000:]
    assert "--max_body_bytes: Input should be a valid integer" in started.stderr, started.stderr[-2000:]


def test_the_tokenizer_is_read_with_numpy_alone() -> None:
    """The bench's MLServer runtime reads Glassbox's tokenizer in MLServer's own environment, which has numpy
    but not httpx, and not Glassbox's contract: importing it must not pull in either."""
    blocked = ("httpx", "pydantic", "torch", "glassbox.contract", "glassbox.explainers.storage")
    code = (
        f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
        "from glassbox.explainers.torch_artifacts import Tokenizer\nprint(Tokenizer.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "Tokenizer", result.stderr[-2000:]


def test_a_process_wide_patch_meets_the_version_it_was_written_for() -> None:
    """Some changes reach into other libraries' modules for the whole process (numpy's legacy random
    functions, alibi's beam class, kserve's app and InferRequest.from_bytes) or restate parts of their
    classes (alibi's tabular sampler and beam, shap's KernelExplainer.run). Each names the release it was
    written for; when an upgrade moves one, this fails, and the patch is read again before the pin moves."""
    from importlib.metadata import version

    from glassbox.explainers import serving
    from glassbox.explainers.methods import anchor_search, kernel_shap_sums, random_state

    for module in (random_state, anchor_search, kernel_shap_sums, serving):
        package, release = module.WRITTEN_FOR
        installed = version(package)
        assert installed == release or installed.startswith(release + "."), (
            f"{module.__name__} patches {package} {release}, and {package} {installed} is installed: "
            f"read the patch against {package} {installed}, then update WRITTEN_FOR"
        )


def test_every_method_type_has_one_method_whose_parameters_are_the_contracts() -> None:
    """The data plane's registry against the contract's table: a MethodType without a method (or a method
    typed over another parameter model than the one the operator validates) fails here, not in a pod."""
    from typing import get_args

    from glassbox.contract.api import PARAMETER_MODEL_OF, MethodType
    from glassbox.explainers.methods import METHODS

    assert set(METHODS) == set(MethodType)
    for method_type, method in METHODS.items():
        generic_base = next(base for base in method.__orig_bases__ if get_args(base))  # type: ignore[attr-defined]
        assert get_args(generic_base) == (PARAMETER_MODEL_OF[method_type],), method.__name__
