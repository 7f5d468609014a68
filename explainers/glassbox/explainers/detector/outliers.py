"""Outlier detection fitted on reference data: how far an input lies from its nearest reference rows,
flagged at a threshold chosen for a stated false-positive rate.

The score of an input is its mean distance to the k nearest reference rows, in a representation that
suits the input: tabular rows scaled feature by feature (median and interquartile range, so a few
outliers in the reference data do not set the scale), images average-pooled to a small grid and
scaled the same way (pixels next to each other say the same thing; pooling keeps the layout and drops
the noise), text as counts of hashed word unigrams and bigrams and character trigrams, L2-normalised
(the distance is then a monotone function of cosine similarity: wording unlike any reference text, not
length, makes a text far; no model or vocabulary to ship).

The threshold is split-conformal: the reference rows are split (seeded) into rows the neighbours are
searched among and held-out calibration rows; the threshold is the ceil((n+1)(1-a))-th smallest of the n
calibration scores, so an input drawn like the reference data is flagged with probability at most `a`
and more than `a - 1/(n+1)`. A user states the alarm rate, never a raw score. Deterministic: the same
data and seed give the same threshold and the same verdicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.explainers.data.nearest_neighbours import nearest_distances
from glassbox.explainers.detector.errors import DetectorFitError

# Images are pooled to at most this many cells per side before the distance is taken.
IMAGE_GRID = 8
# Text is hashed into this many buckets of words and word pairs, and as many of character trigrams.
TEXT_BUCKETS = 2**12
Inputs = np.ndarray | list[str]


@dataclass(frozen=True)
class Verdicts:
    is_outlier: np.ndarray  # (n,) bool
    scores: np.ndarray  # (n,) float64
    threshold: float


def _pool_images(rows: np.ndarray) -> np.ndarray:
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


def _hash_texts(texts: list[str]) -> Any:
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
        vectors = _pool_images(reference) if kind == "image" else reference.astype(np.float64)
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
            return _hash_texts(inputs)
        if isinstance(inputs, list):
            raise ValueError(
                f"this detector was fitted on numeric instances of shape {list(self.instance_shape)}: send numbers, not text"
            )
        if tuple(inputs.shape[1:]) != self.instance_shape:
            raise ValueError(
                f"instances of shape {list(inputs.shape[1:])}: this detector was fitted on instances of shape {list(self.instance_shape)}"
            )
        assert self.center is not None and self.scale is not None
        vectors = _pool_images(inputs) if self.kind == "image" else inputs.astype(np.float64)
        scaled: np.ndarray = (vectors - self.center) / self.scale
        return scaled


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


@dataclass(frozen=True)
class NearestNeighborsDetector:
    """The fitted detector: the reference rows searched, the representation, and the threshold."""

    representation: Representation
    neighbours: Any  # (m, d) reference vectors searched: an array, or a sparse matrix for text
    k: int
    threshold: float
    false_positive_rate: float
    calibration_scores: np.ndarray  # sorted: the distribution a score is placed in

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


def fit_nearest_neighbors(
    reference: Inputs,
    *,
    false_positive_rate: float = 0.01,
    k: int = 10,
    calibration_fraction: float = 0.3,
    seed: int = 0,
) -> NearestNeighborsDetector:
    """Split the reference rows (seeded), search among one part, calibrate the threshold on the other."""
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

    representation = Representation.fit(rows(search_index))
    neighbours = representation.vectors(rows(search_index))
    calibration_scores = np.sort(_mean_knn_distance(representation.vectors(rows(calibration_index)), neighbours, k))
    threshold = conformal_threshold(calibration_scores, false_positive_rate)
    return NearestNeighborsDetector(representation, neighbours, k, threshold, false_positive_rate, calibration_scores)
