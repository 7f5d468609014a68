"""The servers' command lines in the contract: what the builders render is what a server's parser reads back."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from glassbox.contract.server_args import DetectorServerArgs, ExplainerServerArgs, PredictorServerArgs, ServerArgs


def parse(arguments: type[ServerArgs], argv: list[str]) -> ServerArgs:
    parser = argparse.ArgumentParser(prog="server", exit_on_error=False)
    parser.add_argument("--model_name")  # KServe's parser defines it; the servers inherit it
    arguments.add_to_parser(parser)
    return arguments.from_namespace(parser.parse_args(argv), parser)


def test_what_is_rendered_parses_back_to_the_same_model() -> None:
    rendered = ExplainerServerArgs.of(
        model_name="credit",
        predictor_host="credit-predictor.ns.svc.cluster.local",
        explain_timeout_seconds=60,
        predictor_use_ssl=True,
        max_body_bytes=None,
        model_sha256=None,
    )
    args = rendered.to_args()
    assert args == [
        "--model_name=credit",
        "--predictor_host=credit-predictor.ns.svc.cluster.local",
        "--explain_timeout_seconds=60",  # a whole float without its fraction
        "--predictor_use_ssl=true",  # as KServe's parser reads a boolean
    ]
    assert parse(ExplainerServerArgs, args) == rendered


def test_a_flag_left_out_takes_the_contracts_default() -> None:
    parsed = parse(PredictorServerArgs, ["--model_name=m", "--model_dir=/mnt/models"])
    assert isinstance(parsed, PredictorServerArgs)
    assert parsed.max_batch_size == 256 and parsed.max_batch_latency_ms == 0.0 and parsed.device == "auto"
    assert parsed.max_queued_rows == 4 * parsed.max_request_rows


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--model_name=m", "--max_body_bytes=0"], "--max_body_bytes: Input should be greater than or equal to 1"),
        (["--model_name=m", "--detector_fit"], "expected one argument"),
    ],
)
def test_a_value_the_contract_refuses_is_named(argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises((SystemExit, argparse.ArgumentError)) as stopped:
        parse(DetectorServerArgs, argv)
    said = capsys.readouterr().err + str(stopped.value)
    assert named in said, said


def test_a_required_flag_is_required_and_the_help_says_each_default() -> None:
    parser = argparse.ArgumentParser(prog="predictor")
    PredictorServerArgs.add_to_parser(parser)
    help_text = parser.format_help()
    assert "--model_dir MODEL_DIR" in help_text and "(required)" in help_text
    assert "most rows in one forward pass (default: 256)" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args([])  # no --model_dir


def test_the_builders_cannot_render_a_flag_no_server_reads() -> None:
    with pytest.raises(ValidationError, match="max_batch_sise"):
        PredictorServerArgs.of(model_name="m", model_dir="/mnt/models", max_batch_sise=8)
