"""PNG pictures of explanations: people would rather look than read.

matplotlib with the Agg backend (no display), imported only when a picture is asked for.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

POSITIVE, NEGATIVE = "#d62728", "#1f77b4"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=110)


def _png(figure: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


def attribution_bars(names: list[str], values: np.ndarray, title: str, top: int = 15, sort: bool = True) -> bytes:
    """Horizontal bars, the largest contributions first; red pushes up, blue pushes down."""
    values = np.asarray(values, dtype=float).reshape(-1)
    order = list(np.argsort(-np.abs(values))[:top]) if sort else list(range(min(top, len(values))))
    shown = list(reversed(order))
    figure, axes = _figure(7.5, 0.38 * len(shown) + 1.2)
    axes.barh(
        [names[i] for i in shown], [values[i] for i in shown], color=[POSITIVE if values[i] >= 0 else NEGATIVE for i in shown]
    )
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_title(title, fontsize=11)
    return _png(figure)


def rule_card(title: str, conditions: list[str], precision: float, coverage: float) -> bytes:
    """An anchor as a card: the conditions, then precision and coverage bars."""
    from matplotlib.patches import Rectangle

    lines = conditions or ["(any input)"]
    figure, axes = _figure(7.5, 0.42 * len(lines) + 1.9)
    axes.axis("off")
    axes.set_title(title, fontsize=12, loc="left")
    for index, condition in enumerate(lines):
        axes.text(
            0.02,
            1 - (index + 0.7) / (len(lines) + 2.5),
            ("IF " if index == 0 else "AND ") + condition,
            fontsize=11,
            family="monospace",
            transform=axes.transAxes,
        )
    for offset, (label, value) in enumerate((("precision", precision), ("coverage", coverage))):
        y = 0.18 - offset * 0.14
        axes.add_patch(
            Rectangle((0.2, y), 0.7 * value, 0.08, color=POSITIVE if offset == 0 else NEGATIVE, transform=axes.transAxes)
        )
        axes.text(0.02, y + 0.01, f"{label} {value:.2f}", fontsize=10, transform=axes.transAxes)
    return _png(figure)


def highlighted_words(text: str, weights: dict[str, float], title: str) -> bytes:
    """The text with its important words on coloured backgrounds."""
    import re

    words = re.findall(r"\S+", text)
    scale = max((abs(w) for w in weights.values()), default=1.0) or 1.0
    per_line = 10
    lines = [words[i : i + per_line] for i in range(0, len(words), per_line)] or [[]]
    figure, axes = _figure(8, 0.5 * len(lines) + 1.0)
    axes.axis("off")
    axes.set_title(title, fontsize=11, loc="left")
    renderer = figure.canvas.get_renderer()
    for row, line in enumerate(lines):
        x = 0.01
        y = 1 - (row + 1) / (len(lines) + 1)
        for word in line:
            key = re.sub(r"[^\w']", "", word.lower())
            weight = weights.get(key, 0.0)
            box = None
            if weight:
                color = POSITIVE if weight > 0 else NEGATIVE
                box = {"facecolor": color, "alpha": min(0.85, 0.25 + 0.6 * abs(weight) / scale), "edgecolor": "none", "pad": 2}
            artist = axes.text(x, y, word, fontsize=12, transform=axes.transAxes, bbox=box)
            extent = artist.get_window_extent(renderer=renderer).transformed(axes.transAxes.inverted())
            x += extent.width + 0.012
    return _png(figure)


def image_overlay(image: np.ndarray, heat: np.ndarray, title: str) -> bytes:
    """The image, with a heat map (or a mask) over it."""
    image = np.asarray(image, dtype=float)
    shown = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    span = shown.max() - shown.min()
    shown = (shown - shown.min()) / (span or 1.0)
    figure, axes = _figure(4.5, 4.8)
    axes.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
    axes.imshow(np.asarray(heat, dtype=float), cmap="inferno", alpha=0.5)
    axes.axis("off")
    axes.set_title(title, fontsize=11)
    return _png(figure)


# Past this many times the threshold, a linear axis would squeeze every reference row into its first bins.
LOG_AXIS_PAST_THRESHOLD = 20.0


def score_bins(reference_scores: np.ndarray, threshold: float, scores: np.ndarray, count: int = 40) -> tuple[np.ndarray, bool]:
    """The histogram's bin edges, and whether the axis is logarithmic: linear from 0 while every score is
    within LOG_AXIS_PAST_THRESHOLD times the threshold, else logarithmic from a hundredth of the threshold
    (or the smallest positive reference score, if lower), so ordinary rows and a far outlier both show."""
    top = max(float(reference_scores.max()), float(scores.max()), threshold) * 1.05
    if threshold <= 0 or top <= LOG_AXIS_PAST_THRESHOLD * threshold:
        return np.linspace(0, top, count), False
    positive = reference_scores[reference_scores > 0]
    floor = min(threshold / 100, float(positive.min()) if len(positive) else threshold / 100)
    return np.geomspace(floor, top, count), True


def score_against_reference(reference_scores: np.ndarray, threshold: float, scores: np.ndarray, title: str) -> bytes:
    """The held-out reference rows' outlier scores as a histogram, the threshold as a line, and each input's
    score as a marker on it: how unusual an input is, next to what ordinary looks like."""
    reference_scores = np.asarray(reference_scores, dtype=float)
    scores = np.asarray(scores, dtype=float).reshape(-1)
    bins, logarithmic = score_bins(reference_scores, threshold, scores)
    figure, axes = _figure(7.5, 3.4)
    # On a logarithmic axis a score of 0 (an input equal to reference rows) is drawn at the axis's start.
    axes.hist(np.maximum(reference_scores, bins[0]), bins=bins, color="#999999", label="held-out reference rows")
    axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2, label=f"threshold {threshold:.3g}")
    for index, score in enumerate(scores):
        color = POSITIVE if score > threshold else NEGATIVE
        axes.axvline(max(score, bins[0]), color=color, linewidth=2.2)
        axes.annotate(
            f"input {index}",
            (max(score, bins[0]), 0.92 - 0.1 * (index % 6)),
            xycoords=("data", "axes fraction"),
            color=color,
            fontsize=9,
            xytext=(4, 0),
            textcoords="offset points",
        )
    if logarithmic:
        axes.set_xscale("log")
    scale = ", logarithmic scale" if logarithmic else ""
    axes.set_xlabel(f"outlier score (mean distance to the nearest reference rows{scale})")
    axes.set_ylabel("reference rows")
    axes.set_title(title, fontsize=11)
    axes.legend(fontsize=8, loc="center right")
    return _png(figure)


def reference_against_recent(
    features: list[tuple[str, str, float, np.ndarray, np.ndarray]], title: str, columns: int = 3
) -> bytes:
    """Drift as a person checks it: for each feature (name, kind, distance, reference values, recent values),
    most drifted first, the reference distribution against the recent window's (densities for numbers, shares
    for categories), titled with its distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(features) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.5 * rows + 0.5), dpi=110, squeeze=False)
    for axes in grid.ravel()[len(features) :]:
        axes.set_visible(False)
    for axes, (name, kind, distance, reference, recent) in zip(grid.ravel(), features, strict=False):
        if kind == "categorical":
            categories = np.union1d(reference, recent)
            shares = [(values[:, None] == categories).mean(axis=0) for values in (reference, recent)]
            positions = np.arange(len(categories))
            axes.bar(positions - 0.2, shares[0], width=0.4, color="#999999", label="reference")
            axes.bar(positions + 0.2, shares[1], width=0.4, color=POSITIVE, label="recent")
            axes.set_xticks(positions, [f"{c:g}" for c in categories], fontsize=8)
            measure = "total variation"
        else:
            low, high = np.percentile(np.concatenate([reference, recent]), [0.5, 99.5])
            bins = np.linspace(low, high if high > low else low + 1, 30)
            axes.hist(reference, bins=bins, density=True, color="#999999", label="reference")
            axes.hist(recent, bins=bins, density=True, histtype="step", linewidth=2, color=POSITIVE, label="recent")
            measure = "KS"
        axes.set_title(f"{name}: {measure} {distance:.2f}", fontsize=10)
        axes.tick_params(labelsize=8)
        axes.set_yticks([])
    grid.ravel()[0].legend(fontsize=8)
    figure.suptitle(title, fontsize=11)
    return _png(figure)
