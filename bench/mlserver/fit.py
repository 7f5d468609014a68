"""Fit and save the explainers MLServer's alibi-explain runtime loads, with the same settings as the other runners.

bench/.venv-mlserver/bin/python bench/mlserver/fit.py WORK_FOLDER OUT_FOLDER
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import spacy
from alibi.explainers import AnchorTabular, AnchorText, KernelShap
from runtime import TorchScriptPredict  # this folder: importable where MLServer loads the explainers

SEED = 0


def main(work: Path, out: Path) -> None:
    frame = pd.read_csv(work / "tabular" / "train.csv")
    X = frame.drop(columns="class").to_numpy()
    names = [c for c in frame.columns if c != "class"]
    predict = TorchScriptPredict(str(work / "tabular" / "model"))
    anchors = AnchorTabular(predict, feature_names=names, seed=SEED)
    anchors.fit(X, disc_perc=(25, 50, 75))
    anchors.save(out / "anchors")
    np.random.seed(SEED)
    shap = KernelShap(predict, feature_names=names, seed=SEED)
    shap.fit(X, summarise_background=True, n_background_samples=50)
    shap.save(out / "shap")

    text = AnchorText(
        TorchScriptPredict(str(work / "text" / "model")), sampling_strategy="unknown", nlp=spacy.blank("en"), seed=SEED
    )
    text.save(out / "text-anchors")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
