"""Outliers, measured on ground truth: how well the detector ranks rows made unusual in known ways above clean
held-out rows (ROC AUC by kind), with the representation it chose against features scaled one by one, and
the false-positive rate it realised on clean held-out rows against the interval its status states.

    python bench/outliers.py [--out bench/results] [--quick]

The data: correlated (glassbox_testing.outlier_data: 16 features mixing twelve latent factors, scales from
0.01 to 1,000; three data sets), generated (scikit-learn's make_classification, 20 features) and the demo's
breast cancer measurements (30 features, 569 patients). The kinds: a fifth of the features shifted by three
standard deviations; one feature half the reference range past it; correlations broken (every feature taken
from a different reference row, so each value is in range). Reference rows 70%, clean rows 30% (at most
3,000 and 1,000 drawn for the generated sets), false-positive rate 1%. Writes bench/results/outliers.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from drift import interval  # the exact (Clopper-Pearson) 95% interval, as bench/drift.py gives it
from sklearn.datasets import load_breast_cancer, make_classification
from sklearn.metrics import roc_auc_score

from glassbox.explainers.detector.outliers import fit_nearest_neighbors, realised_rate_interval
from glassbox_testing import outlier_data

HERE = Path(__file__).resolve().parent
RATE = 0.01
KINDS = ("shifted", "out of range", "correlations broken")


def data_sets(quick: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reference rows and clean held-out rows, by data set."""
    sets = {}
    for data_seed in range(1 if quick else 3):
        reference = outlier_data.correlated_rows(3000, seed=1, data_seed=data_seed)
        sets[f"correlated #{data_seed}"] = (reference, outlier_data.correlated_rows(1000, seed=2, data_seed=data_seed))
    generated = make_classification(4000, 20, n_informative=8, n_redundant=4, random_state=0)[0]
    sets["generated"] = (generated[:3000], generated[3000:])
    cancer = load_breast_cancer().data
    order = np.random.default_rng(1).permutation(len(cancer))
    cut = int(0.7 * len(cancer))
    sets["breast cancer"] = (cancer[order[:cut]], cancer[order[cut:]])
    return sets


def measure(quick: bool) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, (reference, clean) in data_sets(quick).items():
        rng = np.random.default_rng(3)
        unusual = {
            "shifted": outlier_data.shifted(clean, reference, rng),
            "out of range": outlier_data.out_of_range(clean, reference, rng),
            "correlations broken": outlier_data.correlations_broken(len(clean), reference, rng),
        }
        truth = np.r_[np.zeros(len(clean)), np.ones(len(clean))]
        row: dict[str, Any] = {"referenceRows": len(reference), "cleanRows": len(clean)}
        for label, representation in (("chosen", "auto"), ("scaled", "scaled")):
            started = time.perf_counter()
            detector = fit_nearest_neighbors(reference, false_positive_rate=RATE, representation=representation)
            fit_seconds = time.perf_counter() - started
            ordinary = detector.scores(clean)
            aucs = {kind: float(roc_auc_score(truth, np.r_[ordinary, detector.scores(rows_)])) for kind, rows_ in unusual.items()}
            row[label] = {"representation": detector.representation.name, "auc": aucs, "fitSeconds": fit_seconds}
            if label == "chosen":
                flagged = int(detector.verdicts(clean).is_outlier.sum())
                held_out = len(detector.calibration_scores)
                row["falsePositives"] = {
                    "flagged": flagged,
                    "rate": flagged / len(clean),
                    "interval95": interval(flagged, len(clean)),
                    "heldOutRows": held_out,
                    "statusInterval95": realised_rate_interval(held_out, RATE),
                }
        rows[name] = row
    return {"rate": RATE, "rows": rows}


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Outlier detection on ground truth",
        "",
        f"ROC AUC of rows made unusual against clean held-out rows, by kind; the detector fitted for a false-positive "
        f"rate of {results['rate']:.0%}. *Chosen* is what Glassbox fits (it picks scaled or whitened on the reference "
        "rows' own corruptions); *scaled* keeps features scaled one by one.",
        "",
        "| data | chosen | " + " | ".join(f"{kind}: chosen / scaled" for kind in KINDS) + " | fit (s) |",
        "|---|---|" + "---|" * len(KINDS) + "---|",
    ]
    for name, row in results["rows"].items():
        cells = [f"{row['chosen']['auc'][kind]:.3f} / {row['scaled']['auc'][kind]:.3f}" for kind in KINDS]
        lines.append(
            f"| {name} | {row['chosen']['representation']} | " + " | ".join(cells) + f" | {row['chosen']['fitSeconds']:.2f} |"
        )
    lines += [
        "",
        "The false-positive rate realised on the clean held-out rows, with its exact 95% interval, against the interval "
        "the detector states in `status.detector.realisedFalsePositiveRate` (where one fit's rate lies, given its "
        "held-out rows):",
        "",
        "| data | flagged | realised rate (95% interval) | stated interval | held-out rows |",
        "|---|---|---|---|---|",
    ]
    for name, row in results["rows"].items():
        fp = row["falsePositives"]
        low, high = fp["interval95"]
        s_low, s_high = fp["statusInterval95"]
        lines.append(
            f"| {name} | {fp['flagged']} of {row['cleanRows']} | {fp['rate']:.2%} ({low:.2%} to {high:.2%}) "
            f"| {s_low:.2%} to {s_high:.2%} | {fp['heldOutRows']} |"
        )
    lines += ["", f"Machine: {results['machine']}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="one correlated data set, not three")
    args = parser.parse_args()
    results = measure(args.quick)
    results["machine"] = f"{platform.machine()}, {platform.python_version()}"
    results = json.loads(json.dumps(results))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "outliers.json").write_text(json.dumps(results, indent=2))
    (out / "outliers.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
