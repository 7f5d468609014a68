"""Drift, measured on ground truth: how often windows drawn like the reference data are called drifted (the
false-alarm rate, against the stated one, with its binomial interval), and how often each known change is
found (detection power), by window size.

    python bench/drift.py [--out bench/results] [--quick]

The data: a credit book of 8 mixed features (glassbox_testing.drift_data): two correlated 0.8, a
heavy-tailed one, bounded and normal ones, two categories; 5,000 reference rows. The changes: one feature's
mean moved by 0.5 standard deviations; the correlation of 0.8 dropped to 0 with every marginal kept; one
category's frequency doubled. The monitor's own defaults (500 reference rows and 500 permutations for the
joint test) at a stated false-alarm rate of 5%. Writes bench/results/drift.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from glassbox.explainers.detector.drift import DriftTest
from glassbox_testing.drift_data import CATEGORICAL, NAMES, REGION_DOUBLED, credit_book

HERE = Path(__file__).resolve().parent
RATE = 0.05
CHANGES: dict[str, dict[str, Any]] = {
    "like the reference (false alarms)": {},
    "one mean +0.5 sd": {"shift": 0.5},
    "correlation 0.8 to 0": {"correlation": 0.0},
    "a category twice as frequent": {"region_probabilities": REGION_DOUBLED},
}


def interval(hits: int, trials: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of a rate seen as `hits` of `trials`."""
    low = float(stats.beta.ppf(0.025, hits, trials - hits + 1)) if hits else 0.0
    high = float(stats.beta.ppf(0.975, hits + 1, trials - hits)) if hits < trials else 1.0
    return low, high


def measure(sizes: list[int], windows: int, seed: int = 0) -> dict[str, Any]:
    test = DriftTest(credit_book(5000, np.random.default_rng(seed)), NAMES, CATEGORICAL, RATE, seed=seed)
    results: dict[str, Any] = {"sizes": sizes, "windows": windows, "rate": RATE, "rows": {}}
    for name, change in CHANGES.items():
        row = {}
        for size in sizes:
            rng = np.random.default_rng(1000 + size)
            began = time.perf_counter()
            hits = sum(test.test(credit_book(size, rng, **change)).drifted for _ in range(windows))
            seconds = (time.perf_counter() - began) / windows
            row[size] = {"hits": hits, "rate": hits / windows, "interval": interval(hits, windows), "seconds": seconds}
            print(f"{name}, windows of {size}: {hits}/{windows} ({seconds * 1000:.0f} ms a window)", flush=True)
        results["rows"][name] = row
    return results


def render(results: dict[str, Any]) -> str:
    sizes, windows = results["sizes"], results["windows"]
    lines = [
        "# Drift on ground truth",
        "",
        f"Windows called drifted, of {windows} per cell, at a stated false-alarm rate of {results['rate']:.0%} "
        "(95% interval in brackets). The first row is the false-alarm rate; the others are detection power.",
        "",
        "| windows of | " + " | ".join(str(size) for size in sizes) + " |",
        "| --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    for name, row in results["rows"].items():
        cells = []
        for size in sizes:
            cell = row[str(size)]
            low, high = cell["interval"]
            cells.append(f"{cell['rate']:.0%} [{low:.0%}, {high:.0%}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    timing = results["rows"][next(iter(results["rows"]))]
    lines += [
        "",
        "One test's time (ms), by window size: "
        + ", ".join(f"{size}: {timing[str(size)]['seconds'] * 1000:.0f}" for size in sizes)
        + f". Machine: {results['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--quick", action="store_true", help="fewer windows and sizes (a smoke run)")
    args = parser.parse_args()
    sizes, windows = ([50, 200], 20) if args.quick else ([50, 100, 200, 500, 1000], 200)
    results = measure(sizes, windows)
    results["machine"] = f"{platform.machine()}, {platform.python_version()}"
    results = json.loads(json.dumps(results))  # sizes as text keys, as read back
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "drift-quick" if args.quick else "drift"
    (out / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out / f"{name}.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
