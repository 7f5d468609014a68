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

from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import manifest
from glassbox_testing.model_family import FAMILY, TARGET_COLUMN, generated

TIE = 1e-6
PRECISION_SLACK = 0.05
THRESHOLD = 0.95
SEED = 0


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
    trained = generated(folder, member, held_out=3)
    spec = {
        "predictor": {"modelFormat": "pytorch", "storageUri": "model", "protocol": "v2"},
        "explainer": {
            "referenceData": {"uri": trained.csv.name, "targetColumn": TARGET_COLUMN},
            "methods": [{"name": "anchors", "type": "AnchorTabular", "anchorTabular": {"seed": SEED, "threshold": THRESHOLD}}],
        },
    }
    names = trained.feature_names
    predict = RecordingPredictor(trained.model)
    in_process = AnchorTabular(predict, feature_names=names, seed=SEED)
    in_process.fit(pd.read_csv(trained.csv)[names].to_numpy(), disc_perc=(25, 50, 75))
    with LocalDeployment(manifest("family", spec, folder), log_dir=folder / "logs", keep_records=False) as deployment:
        for row in trained.held_out:
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
