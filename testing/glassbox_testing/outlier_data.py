"""Ground truth for outlier detection: tabular rows with strong correlations and scales from 0.01 to 1,000
(twelve latent factors seen through 16 measurements), and the same rows made unusual in known ways. Used by
the detector's tests and `bench/outliers.py`."""

from __future__ import annotations

import numpy as np

FEATURES = 16
FACTORS = 12


def correlated_rows(rows: int, seed: int = 0, data_seed: int = 0) -> np.ndarray:
    """`rows` draws of 16 features, each a mix of twelve latent factors plus a little noise of its own, scaled
    from 0.01 to 1,000. `data_seed` fixes the mixing (the data set); `seed` the rows drawn from it."""
    shape = np.random.default_rng(data_seed)
    loadings = shape.normal(size=(FACTORS, FEATURES))
    scales = np.logspace(-2, 3, FEATURES)
    offsets = shape.normal(size=FEATURES) * scales * 3
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((rows, FACTORS))
    own = 0.3 * rng.standard_normal((rows, FEATURES))
    mixed: np.ndarray = (latent @ loadings + own) * scales + offsets
    return mixed


def shifted(rows: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fifth of each row's features moved by three of the reference's standard deviations, up or down."""
    moved = rows.copy()
    width = rows.shape[1]
    std = reference.std(axis=0)
    for row in moved:
        columns = rng.choice(width, max(1, width // 5), replace=False)
        row[columns] += 3 * std[columns] * rng.choice([-1.0, 1.0], size=len(columns))
    return moved


def out_of_range(rows: np.ndarray, reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One feature of each row half the reference's range past its largest or smallest value."""
    moved = rows.copy()
    low, high = reference.min(axis=0), reference.max(axis=0)
    for row in moved:
        column = rng.integers(rows.shape[1])
        spread = high[column] - low[column]
        row[column] = high[column] + 0.5 * spread if rng.random() < 0.5 else low[column] - 0.5 * spread
    return moved


def correlations_broken(count: int, reference: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rows whose every feature is a value the reference holds, each taken from a different reference row: every
    value within its usual range, the correlations between them gone."""
    donors = rng.integers(0, len(reference), size=(count, reference.shape[1]))
    broken: np.ndarray = reference[donors, np.arange(reference.shape[1])]
    return broken
