"""What the servers load: reference data in three formats, storage, PyTorch artifacts and the tokenizer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from glassbox.contract.api import ReferenceData
from glassbox.explainers.data.errors import ArtifactError, ReferenceDataError, StorageError
from glassbox.explainers.data.reference_data import load_reference
from glassbox.explainers.data.storage import resolve
from glassbox.explainers.data.torch_artifacts import Tokenizer, find_artifact, load_module


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


def test_the_tokenizer_is_read_with_numpy_alone() -> None:
    """The bench's MLServer runtime reads Glassbox's tokenizer in MLServer's own environment, which has numpy
    but not httpx, and not Glassbox's contract: importing it must not pull in either."""
    blocked = ("httpx", "pydantic", "torch", "glassbox.contract", "glassbox.explainers.data.storage")
    code = (
        f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
        "from glassbox.explainers.data.torch_artifacts import Tokenizer\nprint(Tokenizer.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "Tokenizer", result.stderr[-2000:]
