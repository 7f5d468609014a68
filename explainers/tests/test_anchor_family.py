"""Same seed, same anchor: Glassbox's AnchorTabular over real HTTP against alibi's in process, on a family
of generated models the project was not built around (widths, depths, class counts, feature scales, and
one model whose two classes are all but tied).

Where the two can part: a model's float32 forward pass gives a row bitwise different scores in batches of
different sizes (measured on a 20-feature, 3-class model: 4,722 of 5,000 rows differ bitwise when scored
one at a time rather than in one batch, by at most 7e-7; in batches of 100 or 1,000 rows none did). alibi
in process scores each candidate's 100 rows alone; Glassbox scores a round's candidates in one call, its
memo leaves out rows already scored, and its predictor may batch calls together. A different score changes
a label only for a row whose top two class probabilities lie within about 1e-6 of each other.
So what is guaranteed, and checked here on every model and instance: the same anchor as alibi's whenever
no row alibi scored lies within TIE of a tie; otherwise an anchor whose precision is within PRECISION_SLACK
of alibi's anchor's, or above the threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from glassbox.explainers.examples import tabular_classifier
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import manifest

TIE = 1e-6
PRECISION_SLACK = 0.05
THRESHOLD = 0.95
SEED = 0

# (features, classes, hidden units, hidden layers, spread of feature scales, gap between classes 0 and 1)
FAMILY = {
    "narrow-binary": (4, 2, 8, 1, 1.0, 0.0),
    "wide-scales": (12, 3, 32, 2, 1e4, 0.0),
    "twenty-features": (20, 3, 32, 1, 6.0, 0.0),
    "deep-five-classes": (8, 5, 16, 3, 1.0, 0.0),
    # Classes 0 and 1 a millionth apart: on a model built this way, 35% of random inputs lay within 1e-6 of
    # a tie (0.9% exactly tied), and alibi scored rows exactly tied for each instance here: the tie-breaking case.
    "near-ties": (10, 3, 16, 1, 1.0, 1e-6),
}


def generated(folder: Path, features: int, classes: int, hidden: int, depth: int, spread: float, tie_gap: float) -> np.ndarray:
    """Data from a random nonlinear teacher, a model trained on it, its CSV; returns the rows to explain."""
    rng = np.random.default_rng(len(folder.name))
    scales = np.exp(rng.uniform(0, np.log(spread), size=features)) if spread > 1 else np.ones(features)
    X = rng.normal(size=(2400, features)) * scales + rng.normal(size=features) * scales
    teacher = rng.normal(size=(features, classes))
    y = np.argmax(np.tanh(((X - X.mean(0)) / X.std(0)) @ teacher) + 0.3 * rng.normal(size=(len(X), classes)), axis=1)
    tabular_classifier(X[:2000], y[:2000], folder / "model", hidden=hidden, depth=depth, epochs=200, tie_gap=tie_gap)
    names = [f"v{i:02d}" for i in range(features)]
    frame = pd.DataFrame(X[:2000], columns=names)
    frame["label"] = y[:2000]
    frame.to_csv(folder / "train.csv", index=False)
    return X[2000:2003]


class RecordingPredictor:
    """The model in process, as alibi is used without Glassbox; keeps the smallest top-two margin it scored."""

    def __init__(self, path: Path):
        self.model = torch.jit.load(str(path))
        self.closest_tie = np.inf

    def __call__(self, rows: Any) -> np.ndarray:
        with torch.no_grad():
            scores = self.model(torch.tensor(np.asarray(rows), dtype=torch.float32)).numpy()
        top_two = np.sort(scores, axis=1)[:, -2:]
        self.closest_tie = min(self.closest_tie, float((top_two[:, 1] - top_two[:, 0]).min()))
        return np.asarray(scores)


@pytest.mark.parametrize("member", list(FAMILY))
def test_same_seed_same_anchor_as_alibi_in_process(member: str, tmp_path: Path) -> None:
    from alibi.explainers import AnchorTabular

    folder = tmp_path / member
    rows = generated(folder, *FAMILY[member])
    spec = {
        "predictor": {"modelFormat": "pytorch", "storageUri": "model", "protocol": "v2"},
        "explainer": {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [{"name": "anchors", "type": "AnchorTabular", "anchorTabular": {"seed": SEED, "threshold": THRESHOLD}}],
        },
    }
    reference = pd.read_csv(folder / "train.csv")
    names = [c for c in reference.columns if c != "label"]
    predict = RecordingPredictor(folder / "model" / "model.pt")
    in_process = AnchorTabular(predict, feature_names=names, seed=SEED)
    in_process.fit(reference[names].to_numpy(), disc_perc=(25, 50, 75))
    with LocalDeployment(manifest("family", spec, folder), log_dir=folder / "logs") as deployment:
        for row in rows:
            predict.closest_tie = np.inf
            np.random.seed(SEED)
            expected = in_process.explain(row, threshold=THRESHOLD)
            answer = httpx.post(
                deployment.urls()["explain"], json={"instances": [row.tolist()], "method": "anchors"}, timeout=300
            )
            assert answer.status_code == 200, answer.text[:2000]
            served = answer.json()["data"]
            if served["anchor"] == list(expected.anchor):
                continue
            # Parted: only allowed where alibi itself scored a row within TIE of a tie.
            assert predict.closest_tie < TIE, (
                f"{member}: anchors differ with no row within {TIE} of a tie (closest {predict.closest_tie:.2e}): "
                f"alibi {list(expected.anchor)}, Glassbox {served['anchor']}"
            )
            precision, alibi_precision = float(served["precision"]), float(np.asarray(expected.precision))
            assert precision >= THRESHOLD or abs(precision - alibi_precision) <= PRECISION_SLACK, (member, served, expected)
