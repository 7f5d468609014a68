"""Ground truth for drift: mixed data like a credit book, drawn like the reference or changed in one known way
(one feature's mean, one correlation with every marginal kept, one category's frequency). Used by the drift
tests and `bench/drift.py`."""

from __future__ import annotations

import numpy as np

NAMES = ["income", "debt", "age", "score", "tenure", "balance", "region", "product"]
CATEGORICAL = frozenset({6, 7})
REGION_PROBABILITIES = (0.5, 0.3, 0.2)
# The third region twice as frequent (0.2 to 0.4), the others shrunk to make room.
REGION_DOUBLED = (0.35, 0.25, 0.4)


def credit_book(
    rows: int,
    rng: np.random.Generator,
    shift: float = 0.0,
    correlation: float = 0.8,
    region_probabilities: tuple[float, ...] = REGION_PROBABILITIES,
) -> np.ndarray:
    """Two correlated features (`correlation`), a heavy-tailed one in the thousands, bounded and normal ones
    (`tenure` shifted by `shift` standard deviations), and two categories."""
    income, noise = rng.standard_normal(rows), rng.standard_normal(rows)
    debt = correlation * income + np.sqrt(1 - correlation**2) * noise
    age = 20 + 50 * rng.uniform(size=rows)
    score = rng.standard_normal(rows)
    tenure = rng.standard_normal(rows) + shift
    balance = 1000 * rng.lognormal(0.0, 0.7, size=rows)
    region = rng.choice(3, size=rows, p=region_probabilities)
    product = rng.choice(4, size=rows, p=[0.4, 0.3, 0.2, 0.1])
    return np.column_stack([income, debt, age, score, tenure, balance, region, product])
