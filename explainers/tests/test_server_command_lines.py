"""Each server's command line, both ends: local mode renders the operator's arguments, every argument the
builders write is one its server reads, and a wrong flag stops a server naming it (servers started as
processes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from glassbox.contract.server_args import (
    KSERVE_FLAGS,
    DetectorServerArgs,
    ExplainerServerArgs,
    PredictorServerArgs,
    ServerArgs,
)
from glassbox.local import LocalDeployment, LocalModeError, read_manifest


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
    # Records by default, in a file beside the manifest, keyed to the model's files (a retrained model is a new version).
    assert f"--records_path={tmp_path / '.glassbox' / 'credit.records.sqlite'}" in explainer
    assert any(arg.startswith("--model_digest=sha256:") for arg in explainer), explainer


@pytest.mark.parametrize("server", ["predictor", "explainer", "detector"])
def test_a_misspelt_flag_stops_a_server_and_is_named(server: str) -> None:
    import subprocess
    import sys

    started = subprocess.run(
        [sys.executable, "-m", f"glassbox.explainers.{server}", "--model_name=m", "--max_batch_sise=8"]
        + (["--model_dir=/nonexistent"] if server == "predictor" else []),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2 and "unrecognized arguments: --max_batch_sise=8" in started.stderr, started.stderr[-2000:]


def test_every_argument_the_builders_write_is_one_its_server_reads() -> None:
    """The wire, both ends: each sample's containers, parsed by the parser of the server they run."""
    import yaml

    from glassbox.explainers.detector import server as detector_server
    from glassbox.explainers.explainer import server as explainer_server
    from glassbox.explainers.predictor import server as predictor_server

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
                    if container.get("command", [""])[-1].endswith(".detector")
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
        [sys.executable, "-m", "glassbox.explainers.detector", "--model_name=m", "--max_body_bytes=lots"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2, started.stderr[-2000:]
    assert "--max_body_bytes: Input should be a valid integer" in started.stderr, started.stderr[-2000:]
