"""Reference data (training or background rows) in CSV, NPY or Parquet."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from glassbox.contract.api import DataFormat, ReferenceData
from glassbox.explainers.data.errors import ReferenceDataError
from glassbox.explainers.data.storage import DownloadLimits, resolve


@dataclass(frozen=True)
class ReferenceTable:
    features: np.ndarray  # (rows, features), float64
    feature_names: list[str]
    labels: np.ndarray | None = None
    categorical_names: dict[int, list[str]] = field(default_factory=dict)

    @property
    def width(self) -> int:
        return int(self.features.shape[1]) if self.features.ndim > 1 else 1


def _format_of(spec: ReferenceData, path: Path) -> DataFormat:
    if spec.format is not None:
        return spec.format
    suffix = path.suffix.lower()
    for data_format, suffixes in (
        (DataFormat.csv, (".csv",)),
        (DataFormat.npy, (".npy",)),
        (DataFormat.parquet, (".parquet", ".pq")),
    ):
        if suffix in suffixes:
            return data_format
    raise ReferenceDataError(f"{spec.uri}: cannot tell the format from '{suffix}'; set format to csv, npy or parquet")


def _read_table(path: Path, data_format: DataFormat, uri: str) -> tuple[np.ndarray | None, list[str] | None, object]:
    """(numeric array or None, column names or None, the raw frame for column lookups)."""
    if data_format is DataFormat.npy:
        array = np.load(path, allow_pickle=False)
        return array, None, None
    import pandas as pd

    frame = pd.read_csv(path) if data_format is DataFormat.csv else pd.read_parquet(path)
    return None, [str(c) for c in frame.columns], frame


def load_reference_texts(spec: ReferenceData, base: Path | None = None) -> list[str]:
    """The texts in column `textColumn` of a CSV or Parquet file (sampled to maxRows when asked)."""
    path = resolve(spec.uri, base, DownloadLimits(spec.max_bytes, spec.download_timeout_seconds, spec.sha256))
    data_format = _format_of(spec, path)
    if data_format is DataFormat.npy:
        raise ReferenceDataError(f"{spec.uri}: texts come from a column of a CSV or Parquet file (textColumn), not from NPY")
    _, columns, frame = _read_table(path, data_format, spec.uri)
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    if spec.text_column not in frame.columns:
        raise ReferenceDataError(f"{spec.uri}: no column '{spec.text_column}' (textColumn); columns are {columns}")
    texts = [str(text) for text in frame[spec.text_column].fillna("").tolist()]
    if spec.max_rows is not None and len(texts) > spec.max_rows:
        chosen = np.sort(np.random.default_rng(0).choice(len(texts), spec.max_rows, replace=False))
        texts = [texts[i] for i in chosen]
    return texts


def load_reference(spec: ReferenceData, base: Path | None = None) -> ReferenceTable:
    """Read, check and (when asked) sample the reference data."""
    path = resolve(spec.uri, base, DownloadLimits(spec.max_bytes, spec.download_timeout_seconds, spec.sha256))
    data_format = _format_of(spec, path)
    array, columns, frame = _read_table(path, data_format, spec.uri)
    labels = None
    if frame is not None:
        import pandas as pd

        assert isinstance(frame, pd.DataFrame)
        if spec.target_column is not None:
            if spec.target_column not in frame.columns:
                raise ReferenceDataError(f"{spec.uri}: no column '{spec.target_column}' (targetColumn); columns are {columns}")
            labels = frame.pop(spec.target_column).to_numpy()
        non_numeric = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            raise ReferenceDataError(
                f"{spec.uri}: columns {non_numeric} are not numeric; integer-code categorical columns and name their values in categoricalNames"
            )
        columns = [str(c) for c in frame.columns]
        array = frame.to_numpy(dtype=np.float64)
    assert array is not None
    features = np.asarray(array, dtype=np.float64)
    if features.ndim == 1:
        features = features.reshape(-1, 1)
    images = features.ndim > 2  # (rows, height, width, channels): background images
    if not np.isfinite(features).all():
        raise ReferenceDataError(f"{spec.uri}: holds NaN or infinite values; impute or drop them before serving")
    if spec.labels_uri is not None:
        labels_path = resolve(
            spec.labels_uri, base, DownloadLimits(spec.max_bytes, spec.download_timeout_seconds, spec.labels_sha256)
        )
        labels = np.load(labels_path) if labels_path.suffix == ".npy" else np.loadtxt(labels_path, delimiter=",")
        labels = np.asarray(labels).reshape(-1)
        if len(labels) != len(features):
            raise ReferenceDataError(f"{spec.labels_uri}: {len(labels)} labels for {len(features)} rows of {spec.uri}")
    names = (
        list(spec.feature_names)
        if spec.feature_names
        else (columns or ([] if images else [f"f{i}" for i in range(features.shape[1])]))
    )
    if not images and len(names) != features.shape[1]:
        raise ReferenceDataError(f"featureNames has {len(names)} names for {features.shape[1]} columns of {spec.uri}")
    if spec.max_rows is not None and len(features) > spec.max_rows:
        chosen = np.sort(np.random.default_rng(0).choice(len(features), spec.max_rows, replace=False))
        features = features[chosen]
        labels = labels[chosen] if labels is not None else None
    categorical = {int(k): list(v) for k, v in (spec.categorical_names or {}).items()}
    for index in categorical:
        if not 0 <= index < features.shape[1]:
            raise ReferenceDataError(f"categoricalNames names column {index}, but the data has {features.shape[1]} columns")
    return ReferenceTable(features=features, feature_names=names, labels=labels, categorical_names=categorical)
