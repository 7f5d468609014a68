"""Ground truth for drift: mixed data like a credit book, drawn like the reference or changed in one known way
(one feature's mean, one correlation with every marginal kept, one category's frequency); pictures that may
be brighter; film reviews that may begin to talk about deliveries. Used by the drift tests and
`bench/drift.py`."""

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


def pictures(count: int, rng: np.random.Generator, brightness: float = 1.0) -> np.ndarray:
    """16x16 RGB pictures: a soft bright blob somewhere on a dim background, with noise."""
    rows, columns = np.mgrid[0:16, 0:16]
    centres = rng.uniform(4, 12, size=(count, 2))
    blob = np.exp(-((rows - centres[:, :1, None]) ** 2 + (columns - centres[:, 1:, None]) ** 2) / 8.0)
    tint = rng.uniform(0.5, 1.0, size=(count, 1, 1, 3))
    images = 0.2 + 0.6 * blob[..., None] * tint + 0.05 * rng.standard_normal((count, 16, 16, 3))
    return np.clip(images * brightness, 0.0, 1.0)


FILMS = "film acting plot story director scene music cast ending camera script character".split()
PRAISE = "excellent wonderful moving superb brilliant touching".split()
BLAME = "dull boring weak awful clumsy tedious".split()
SHIPPING = "delivery package courier refund parcel tracking warehouse".split()


def reviews(count: int, rng: np.random.Generator, shipping: float = 0.0) -> list[str]:
    """Film reviews of six to twelve words; with `shipping`, that share of them complain about a delivery instead."""
    texts = []
    for _ in range(count):
        topic = SHIPPING if rng.random() < shipping else FILMS
        tone = PRAISE if rng.random() < 0.6 else BLAME
        words = list(rng.choice(topic, size=rng.integers(4, 8))) + list(rng.choice(tone, size=rng.integers(2, 4)))
        rng.shuffle(words)
        texts.append("the " + " ".join(words))
    return texts
