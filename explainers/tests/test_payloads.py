"""The v1 and v2 bodies both servers read and write: numbers checked, sizes bounded, binary tensors."""

from __future__ import annotations

import numpy as np
import pytest
from kserve.errors import InvalidInput

from glassbox.explainers.serving.errors import InputError
from glassbox.explainers.serving.payloads import (
    INFERENCE_HEADER,
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
