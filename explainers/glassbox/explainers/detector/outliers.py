"""Outlier detection fitted on reference data: how far an input lies from its nearest reference rows,
flagged at a threshold chosen for a stated false-positive rate.

The score of an input is its mean distance to the k nearest reference rows, in a representation that
suits the input: tabular rows scaled feature by feature (median and interquartile range, so a few
outliers in the reference data do not set the scale), images average-pooled to a small grid and
scaled the same way (pixels next to each other say the same thing; pooling keeps the layout and drops
the noise), text as counts of hashed word unigrams and bigrams and character trigrams, L2-normalised
(the distance is then a monotone function of cosine similarity: wording unlike any reference text, not
length, makes a text far; no model or vocabulary to ship).

Tabular rows may instead be whitened: scaled, then decorrelated by the reference's covariance, so a row
whose every feature lies within its usual range but whose features contradict each other (a correlation
broken) lies far from every reference row, which feature-by-feature scaling cannot see when the features
are strongly correlated. Which of the two is used is decided on the reference data itself: probe rows
held out of the searched rows are corrupted in three known ways (one feature moved, one past its range,
correlations broken) and the representation whose worst ROC AUC over the three is higher wins (scaled on
a tie). Only searched rows take part, never the calibration rows.

The threshold is split-conformal: the reference rows are split (seeded) into rows the neighbours are
searched among and held-out calibration rows; the threshold is the r-th smallest of the n calibration
scores, r = ceil((n+1)(1-a)), so an input drawn like the reference data is flagged with probability at
most `a` and more than `a - 1/(n+1)`, averaged over the draw of the calibration rows. For this one fit,
the rate it will realise is itself random, distributed Beta(n+1-r, r): `realised_rate_interval` gives
its central interval, which a user compares with the rate they see. A user states the alarm rate, never
a raw score. Deterministic: the same data and seed give the same threshold and the same verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy import stats

from glassbox.explainers.data.nearest_neighbours import nearest_distances
from glassbox.explainers.detector.errors import DetectorFitError

# Images are pooled to at most this many cells per side before the distance is taken.
IMAGE_GRID = 8
# Whitening floors each direction's variance at this fraction of the largest.
WHITENING_FLOOR = 1e-6
# Reference rows (of those searched) that choose between the scaled and whitened representations.
SELECTION_PROBES = 300
# Text is hashed into this many buckets of words and word pairs, and as many of character trigrams.
TEXT_BUCKETS = 2**12
Inputs = np.ndarray | list[str]


@dataclass(frozen=True)
class Verdicts:
    is_outlier: np.ndarray  # (n,) bool
    scores: np.ndarray  # (n,) float64
    threshold: float


def pool_images(rows: np.ndarray) -> np.ndarray:
    """(n, H, W[, C]) to (n, cells): the mean of each block of an at most IMAGE_GRID x IMAGE_GRID grid, per channel."""
    images = rows if rows.ndim == 4 else rows[..., np.newaxis]
    n, height, width, channels = images.shape
    grid_h, grid_w = min(IMAGE_GRID, height), min(IMAGE_GRID, width)
    h_edges = np.linspace(0, height, grid_h + 1).astype(int)
    w_edges = np.linspace(0, width, grid_w + 1).astype(int)
    pooled = np.empty((n, grid_h, grid_w, channels))
    for i in range(grid_h):
        for j in range(grid_w):
            pooled[:, i, j, :] = images[:, h_edges[i] : h_edges[i + 1], w_edges[j] : w_edges[j + 1], :].mean(axis=(1, 2))
    flat: np.ndarray = pooled.reshape(n, -1)
    return flat


def hash_texts(texts: list[str]) -> Any:
    """A sparse (n, 2 x TEXT_BUCKETS) matrix: a text's n-gram profile, L2-normalised (sparse: 10,000 texts dense would take 650 MB)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.preprocessing import normalize

    words = HashingVectorizer(n_features=TEXT_BUCKETS, ngram_range=(1, 2), alternate_sign=False, norm=None)
    characters = HashingVectorizer(
        n_features=TEXT_BUCKETS, analyzer="char_wb", ngram_range=(3, 3), alternate_sign=False, norm=None
    )
    return normalize(hstack([words.transform(texts), characters.transform(texts)]).tocsr())


@dataclass(frozen=True)
class Representation:
    """Inputs to the vectors distances are taken between; fitted (its scale) on the reference rows."""

    kind: str  # "tabular", "image" or "text"
    instance_shape: tuple[int, ...]  # what each numeric instance must look like (empty for text)
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    # Tabular rows may also be whitened (scaled, then decorrelated by the reference covariance): a row whose
    # features each lie in range but break the reference's correlations is then far from every reference row.
    whitening: np.ndarray | None = None

    @property
    def name(self) -> str:
        return "whitened" if self.whitening is not None else {"tabular": "scaled", "image": "pooled"}.get(self.kind, self.kind)

    def whitened(self, reference: np.ndarray) -> Representation:
        """This representation, decorrelated by the covariance of `reference` as it represents it (directions
        the reference hardly varies in are floored, not blown up)."""
        vectors = self.vectors(reference)
        values, axes = np.linalg.eigh(np.atleast_2d(np.cov(vectors, rowvar=False)))
        floor = max(float(values.max()) * WHITENING_FLOOR, 1e-12)
        return replace(self, whitening=axes / np.sqrt(np.maximum(values, floor)))

    @staticmethod
    def fit(reference: Inputs) -> Representation:
        if isinstance(reference, list):
            return Representation("text", ())
        kind = "image" if reference.ndim in (3, 4) else "tabular"
        if reference.ndim not in (2, 3, 4):
            raise DetectorFitError(
                f"reference data of shape {list(reference.shape)}: the detector takes rows of features (2 dimensions) "
                "or images (height, width and optionally channels)"
            )
        vectors = pool_images(reference) if kind == "image" else reference.astype(np.float64)
        center = np.median(vectors, axis=0)
        low, high = np.percentile(vectors, [25, 75], axis=0)
        scale = (high - low) / 1.349  # the standard deviation of a normal distribution with this IQR
        std = vectors.std(axis=0)
        scale = np.where(scale > 0, scale, np.where(std > 0, std, 1.0))  # binary or constant columns
        return Representation(kind, tuple(reference.shape[1:]), center, scale)

    def vectors(self, inputs: Inputs) -> Any:
        """A dense array, or for text a sparse matrix."""
        if self.kind == "text":
            if not isinstance(inputs, list):
                raise ValueError("this detector was fitted on text: send strings")
            return hash_texts(inputs)
        if isinstance(inputs, list):
            raise ValueError(
                f"this detector was fitted on numeric instances of shape {list(self.instance_shape)}: send numbers, not text"
            )
        if tuple(inputs.shape[1:]) != self.instance_shape:
            raise ValueError(
                f"instances of shape {list(inputs.shape[1:])}: this detector was fitted on instances of shape {list(self.instance_shape)}"
            )
        assert self.center is not None and self.scale is not None
        vectors = pool_images(inputs) if self.kind == "image" else inputs.astype(np.float64)
        scaled: np.ndarray = (vectors - self.center) / self.scale
        return scaled if self.whitening is None else scaled @ self.whitening


def conformal_threshold(calibration_scores: np.ndarray, false_positive_rate: float) -> float:
    """The ceil((n+1)(1-a))-th smallest calibration score: flags at most a fraction `a` of inputs like them."""
    n = len(calibration_scores)
    rank = math.ceil((n + 1) * (1 - false_positive_rate))
    if rank > n:
        fewest = math.ceil(1 / false_positive_rate) - 1
        raise DetectorFitError(
            f"{n} held-out reference rows cannot set a threshold for a false-positive rate of {false_positive_rate:g}: "
            f"it takes at least {fewest}. Give the detector more reference rows, a larger calibrationFraction, "
            "or a higher falsePositiveRate"
        )
    return float(np.sort(calibration_scores)[rank - 1])


def realised_rate_interval(held_out_rows: int, false_positive_rate: float, confidence: float = 0.95) -> tuple[float, float]:
    """The central `confidence` interval of the false-positive rate a conformal threshold set on `held_out_rows`
    scores will realise on inputs drawn like them: that rate is Beta(n+1-r, r), r = ceil((n+1)(1-a))."""
    rank = math.ceil((held_out_rows + 1) * (1 - false_positive_rate))
    tail = (1 - confidence) / 2
    low, high = stats.beta.ppf([tail, 1 - tail], held_out_rows + 1 - rank, rank)
    return float(low), float(high)


@dataclass(frozen=True)
class NearestNeighborsDetector:
    """The fitted detector: the reference rows searched, the representation, and the threshold."""

    representation: Representation
    neighbours: Any  # (m, d) reference vectors searched: an array, or a sparse matrix for text
    k: int
    threshold: float
    false_positive_rate: float
    calibration_scores: np.ndarray  # sorted: the distribution a score is placed in
    # How each candidate representation separated probe rows from their corruptions (ROC AUC by kind), when
    # one was chosen: the chosen one's worst case is the highest.
    selection: dict[str, dict[str, float]] = field(default_factory=dict)

    def scores(self, inputs: Inputs) -> np.ndarray:
        """The mean distance of each input to its k nearest reference rows."""
        vectors = self.representation.vectors(inputs)
        return _mean_knn_distance(vectors, self.neighbours, self.k)

    def verdicts(self, inputs: Inputs) -> Verdicts:
        scores = self.scores(inputs)
        return Verdicts(scores > self.threshold, scores, self.threshold)

    def reference_quantile(self, scores: np.ndarray) -> np.ndarray:
        """The fraction of held-out reference rows that score below each score."""
        return np.searchsorted(self.calibration_scores, scores, side="left") / len(self.calibration_scores)


def _mean_knn_distance(vectors: Any, neighbours: Any, k: int) -> np.ndarray:
    return np.asarray(nearest_distances(vectors, neighbours, k).mean(axis=1))


def corruptions(probes: np.ndarray, donors: np.ndarray, scale: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Probe rows made unusual in the ways a detector must see: one feature moved three of its (robust) standard
    deviations; one feature past the reference's largest value; and correlations broken, every value in range
    (each feature, with probability one half, taken from another reference row)."""
    count, width = probes.shape
    rows = np.arange(count)
    shifted = probes.copy()
    moved = rng.integers(0, width, count)
    shifted[rows, moved] += rng.choice([-3.0, 3.0], count) * scale[moved]
    beyond = probes.copy()
    moved = rng.integers(0, width, count)
    beyond[rows, moved] = donors.max(axis=0)[moved] + scale[moved]
    broken = probes.copy()
    taken = rng.random((count, width)) < 0.5
    donated = donors[rng.integers(0, len(donors), (count, width)), np.arange(width)]
    broken[taken] = donated[taken]
    return {"shifted": shifted, "outOfRange": beyond, "correlationBroken": broken}


def _auc(ordinary: np.ndarray, unusual: np.ndarray) -> float:
    """The chance that an unusual row scores above an ordinary one (ties count half): ROC AUC."""
    ranks = stats.rankdata(np.concatenate([ordinary, unusual]))
    unusual_ranks = ranks[len(ordinary) :].sum() - len(unusual) * (len(unusual) + 1) / 2
    return float(unusual_ranks / (len(ordinary) * len(unusual)))


def choose_representation(rows: np.ndarray, k: int, seed: int) -> tuple[Representation, dict[str, dict[str, float]]]:
    """Scaled or whitened, for tabular rows: whichever separates held-out reference rows from their corruptions
    best in its worst case (scaled on a tie). Chosen among the searched rows only, so the calibration rows stay
    untouched and the threshold's guarantee holds."""
    scaled = Representation.fit(rows)
    probes_count = min(SELECTION_PROBES, len(rows) // 4)
    if scaled.kind != "tabular" or rows.shape[1] < 2 or probes_count < 20 or len(rows) - probes_count <= k:
        return scaled, {}
    rng = np.random.default_rng(seed + 1)
    order = rng.permutation(len(rows))
    probes, rest = rows[order[:probes_count]], rows[order[probes_count:]]
    base = Representation.fit(rest)
    assert base.scale is not None
    unusual = corruptions(probes, rest, base.scale, rng)
    selection: dict[str, dict[str, float]] = {}
    for candidate in (base, base.whitened(rest)):
        neighbours = candidate.vectors(rest)
        ordinary = _mean_knn_distance(candidate.vectors(probes), neighbours, k)
        selection[candidate.name] = {
            kind: _auc(ordinary, _mean_knn_distance(candidate.vectors(bad), neighbours, k)) for kind, bad in unusual.items()
        }
    best = max(selection, key=lambda name: (min(selection[name].values()), name == "scaled"))
    return (scaled.whitened(rows) if best == "whitened" else scaled), selection


def fit_nearest_neighbors(
    reference: Inputs,
    *,
    false_positive_rate: float = 0.01,
    k: int = 10,
    calibration_fraction: float = 0.3,
    seed: int = 0,
    representation: str = "auto",
) -> NearestNeighborsDetector:
    """Split the reference rows (seeded), search among one part, calibrate the threshold on the other.
    `representation` "auto" chooses between scaled and whitened for tabular rows; "scaled" keeps the former
    (what the bench compares against)."""
    if not 0 < false_positive_rate < 1:
        raise DetectorFitError(f"falsePositiveRate {false_positive_rate:g} must lie strictly between 0 and 1")
    if not 0 < calibration_fraction < 1:
        raise DetectorFitError(f"calibrationFraction {calibration_fraction:g} must lie strictly between 0 and 1")
    count = len(reference)
    held_out = int(round(count * calibration_fraction))
    searched = count - held_out
    if searched < k:
        raise DetectorFitError(
            f"{count} reference rows leave {searched} to search among after {held_out} are held out, fewer than k={k} neighbours; "
            "give the detector more reference rows or a smaller k"
        )
    order = np.random.default_rng(seed).permutation(count)
    search_index, calibration_index = np.sort(order[:searched]), np.sort(order[searched:])

    def rows(index: np.ndarray) -> Inputs:
        return [reference[i] for i in index] if isinstance(reference, list) else reference[index]

    searched_rows = rows(search_index)
    if representation not in ("auto", "scaled"):
        raise DetectorFitError(f"representation {representation!r}: auto or scaled")
    if representation == "auto" and isinstance(searched_rows, np.ndarray) and searched_rows.ndim == 2:
        chosen, selection = choose_representation(searched_rows, k, seed)
    else:
        chosen, selection = Representation.fit(searched_rows), {}
    neighbours = chosen.vectors(searched_rows)
    calibration_scores = np.sort(_mean_knn_distance(chosen.vectors(rows(calibration_index)), neighbours, k))
    threshold = conformal_threshold(calibration_scores, false_positive_rate)
    return NearestNeighborsDetector(chosen, neighbours, k, threshold, false_positive_rate, calibration_scores, selection)
