"""Models the project was not built around: a family of generated tabular classifiers (widths, depths,
class counts, feature scales, one whose two classes are all but tied), and the demo's breast cancer model,
each with its training CSV and held-out rows to explain."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from glassbox.explainers.predictor.examples import tabular_classifier

TARGET_COLUMN = "label"


@dataclass(frozen=True)
class Member:
    features: int
    classes: int
    hidden: int
    depth: int  # hidden layers
    spread: float  # the largest feature's scale over the smallest's, at most
    tie_gap: float  # classes 0 and 1 this far apart (0: not tied)


FAMILY = {
    "narrow-binary": Member(4, 2, 8, 1, 1.0, 0.0),
    "wide-scales": Member(12, 3, 32, 2, 1e4, 0.0),
    "twenty-features": Member(20, 3, 32, 1, 6.0, 0.0),
    "deep-five-classes": Member(8, 5, 16, 3, 1.0, 0.0),
    # Classes 0 and 1 a millionth apart: on a model built this way, 35% of random inputs lay within 1e-6 of
    # a tie (0.9% exactly tied).
    "near-ties": Member(10, 3, 16, 1, 1.0, 1e-6),
}


@dataclass(frozen=True)
class Trained:
    model: Path  # TorchScript, as the predictor serves it
    csv: Path  # training rows with TARGET_COLUMN: the explainer's reference data
    train: np.ndarray
    held_out: np.ndarray

    @property
    def feature_names(self) -> list[str]:
        return [str(c) for c in pd.read_csv(self.csv, nrows=0).columns if c != TARGET_COLUMN]


def generated(folder: Path, name: str, held_out: int = 20) -> Trained:
    """Data from a random nonlinear teacher (seeded by the member's name), a model trained on its first
    2,000 rows, their CSV, and up to 400 held-out rows."""
    member = FAMILY[name]
    rng = np.random.default_rng(len(name))
    width = member.features
    scales = np.exp(rng.uniform(0, np.log(member.spread), size=width)) if member.spread > 1 else np.ones(width)
    X = rng.normal(size=(2400, width)) * scales + rng.normal(size=width) * scales
    teacher = rng.normal(size=(width, member.classes))
    y = np.argmax(np.tanh(((X - X.mean(0)) / X.std(0)) @ teacher) + 0.3 * rng.normal(size=(len(X), member.classes)), axis=1)
    model = tabular_classifier(
        X[:2000], y[:2000], folder / "model", hidden=member.hidden, depth=member.depth, epochs=200, tie_gap=member.tie_gap
    )
    return Trained(
        model, _csv(folder, X[:2000], y[:2000], [f"v{i:02d}" for i in range(width)]), X[:2000], X[2000 : 2000 + held_out]
    )


def breast_cancer(folder: Path, held_out: int = 20) -> Trained:
    """The demo's model: scikit-learn's breast cancer data (30 features), the same split and training."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    X_train, X_test, y_train, _ = train_test_split(data.data, data.target, test_size=0.2, random_state=0, stratify=data.target)
    model = tabular_classifier(X_train, y_train, folder / "model")
    names = [n.replace(" ", "_") for n in data.feature_names]
    return Trained(model, _csv(folder, X_train, y_train, names), X_train, X_test[:held_out])


def _csv(folder: Path, X: np.ndarray, y: np.ndarray, names: list[str]) -> Path:
    frame = pd.DataFrame(X, columns=names)
    frame[TARGET_COLUMN] = y
    path = folder / "train.csv"
    frame.to_csv(path, index=False)
    return path
