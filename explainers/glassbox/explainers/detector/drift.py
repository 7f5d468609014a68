"""Drift: whether a window of recent inputs still looks like the reference data, at a false-alarm rate the
user states (never a raw threshold).

Two families of tests, each given half the rate, so that a window drawn like the reference data is called
drifted with probability at most the stated rate (Bonferroni over the two families):

- per feature, two-sample tests of its marginal: Kolmogorov-Smirnov for numbers, a chi-square test of the
  category counts for categories (categories expected fewer than five times pooled into one), the p-values
  corrected together by Benjamini-Hochberg (which, when no feature moved, bounds the chance of any
  rejection by its level);
- across features, the maximum mean discrepancy between the window and a seeded sample of the reference
  rows, with Gaussian kernels on the numbers whitened by the reference covariance (categories one-hot), at
  bandwidths around the median distance between reference rows (fixed at fitting), the largest
  standardised discrepancy calibrated by one set of permutations (exact). This one sees what marginals
  cannot: correlations that changed while every feature kept its range (whitened, a broken correlation
  moves rows along a direction the reference keeps narrow, which the smaller bandwidths see).

The report ranks features by how far they moved (Kolmogorov-Smirnov distance, or total variation distance
between category frequencies), most drifted first. Deterministic: the same reference, seed and window give
the same report.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Reference rows the multivariate test compares a window with (a seeded sample of the reference data).
MMD_REFERENCE_ROWS = 500
# Permutations behind the multivariate test's p-value: its smallest possible value is 1/(PERMUTATIONS+1).
PERMUTATIONS = 500
# The multivariate test's bandwidths, as multiples of the median distance between reference rows: a change
# confined to a few directions (a broken correlation) shows at the smaller ones, a broad shift at the larger.
BANDWIDTHS = (0.25, 0.5, 1.0, 2.0)
# A category expected fewer times than this in the pooled counts joins the others like it (chi-square's rule).
MIN_EXPECTED_COUNT = 5.0


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test: its distance from the reference (KS statistic, or total variation distance for
    categories), its p-value, and the p-value after the correction across features."""

    name: str
    kind: str  # "numeric" or "categorical"
    distance: float
    p_value: float
    adjusted_p_value: float


@dataclass(frozen=True)
class DriftReport:
    """A window's verdict: drifted when the combined p-value is at most the false-alarm rate."""

    window_rows: int
    false_alarm_rate: float
    p_value: float
    drifted: bool
    mmd: float
    mmd_p_value: float
    features: tuple[FeatureDrift, ...]  # most drifted first

    @property
    def drifted_features(self) -> list[str]:
        """The features whose own test rejects at the per-feature family's level."""
        return [f.name for f in self.features if f.adjusted_p_value <= self.false_alarm_rate / 2]


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values: a feature is rejected at level q when its adjusted p-value <= q."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * p.size / np.arange(1, p.size + 1)
    adjusted_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


def _category_test(reference: np.ndarray, window: np.ndarray) -> tuple[float, float]:
    """(total variation distance, chi-square p-value) between two samples of category codes."""
    categories = np.union1d(reference, window)
    counts = np.stack([(reference[:, None] == categories).sum(axis=0), (window[:, None] == categories).sum(axis=0)])
    frequencies = counts / counts.sum(axis=1, keepdims=True)
    distance = 0.5 * float(np.abs(frequencies[0] - frequencies[1]).sum())
    pooled = counts.sum(axis=0)
    expected_in_window = pooled * window.size / pooled.sum()
    rare = expected_in_window < MIN_EXPECTED_COUNT
    if rare.any():
        counts = np.column_stack([counts[:, ~rare], counts[:, rare].sum(axis=1)])
        counts = counts[:, counts.sum(axis=0) > 0]
    if counts.shape[1] < 2:
        return distance, 1.0
    p_value = float(stats.chi2_contingency(counts, correction=False).pvalue)
    return distance, p_value


class DriftTest:
    """Fitted on the reference rows once; `test(window)` for each window."""

    def __init__(
        self,
        reference: np.ndarray,
        feature_names: list[str] | None = None,
        categorical: frozenset[int] = frozenset(),
        false_alarm_rate: float = 0.05,
        permutations: int = PERMUTATIONS,
        mmd_reference_rows: int = MMD_REFERENCE_ROWS,
        seed: int = 0,
    ):
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or len(reference) < 2:
            raise ValueError(f"drift needs reference rows as a (rows, features) table; got shape {reference.shape}")
        if not 0 < false_alarm_rate < 1:
            raise ValueError(f"the false-alarm rate must lie between 0 and 1; got {false_alarm_rate}")
        self.reference = reference
        self.features = reference.shape[1]
        self.names = list(feature_names) if feature_names is not None else [f"feature_{i}" for i in range(self.features)]
        self.categorical = frozenset(categorical)
        self.false_alarm_rate = false_alarm_rate
        self.permutations = permutations
        self.seed = seed
        numeric = [i for i in range(self.features) if i not in self.categorical]
        self._numeric = numeric
        rng = np.random.default_rng(seed)
        rows = min(mmd_reference_rows, len(reference))
        sample = rng.choice(len(reference), size=rows, replace=False)
        # The whitening is fitted on the reference rows the kernel does not compare against, where there are
        # enough: fitted on the compared rows themselves, it would make them look narrower than any new rows
        # along its weakest directions (noticeably so with many features, as an image's cells), and every
        # window would drift.
        rest = np.setdiff1d(np.arange(len(reference)), sample)
        fitted_on = reference[rest] if len(rest) >= max(2 * len(numeric), 50) else reference
        self._center = fitted_on[:, numeric].mean(axis=0)
        self._whiten = _whitening(fitted_on[:, numeric] - self._center)
        self._categories = {i: np.unique(reference[:, i]) for i in sorted(self.categorical)}
        self._mmd_reference = self._embed(reference[sample])
        distances = _squared_distances(self._mmd_reference, self._mmd_reference)
        median = float(np.median(distances[np.triu_indices(rows, k=1)]))
        self._gamma = 1.0 / max(median, 1e-12)

    def _embed(self, rows: np.ndarray) -> np.ndarray:
        """Rows as the kernel sees them: numbers whitened by the reference, categories one-hot (a differing
        category is as far as one standard deviation)."""
        parts = [(rows[:, self._numeric] - self._center) @ self._whiten]
        for i, categories in self._categories.items():
            parts.append((rows[:, [i]] == categories[np.newaxis, :]) / math.sqrt(2))
        return np.hstack(parts)

    def test(self, window: np.ndarray) -> DriftReport:
        window = np.asarray(window, dtype=np.float64)
        if window.ndim != 2 or window.shape[1] != self.features:
            raise ValueError(f"a window holds rows of {self.features} features; got shape {window.shape}")
        if len(window) < 2:
            raise ValueError("a window needs at least 2 rows")
        distances, p_values, kinds = [], [], []
        for i in range(self.features):
            if i in self.categorical:
                distance, p_value = _category_test(self.reference[:, i], window[:, i])
                kinds.append("categorical")
            else:
                result = stats.ks_2samp(self.reference[:, i], window[:, i])
                distance, p_value = float(result.statistic), float(result.pvalue)
                kinds.append("numeric")
            distances.append(distance)
            p_values.append(p_value)
        adjusted = benjamini_hochberg(np.asarray(p_values))
        mmd, mmd_p = self._mmd_test(self._embed(window))
        combined = min(1.0, 2 * min(mmd_p, float(adjusted.min())))
        features = sorted(
            (FeatureDrift(self.names[i], kinds[i], distances[i], p_values[i], float(adjusted[i])) for i in range(self.features)),
            key=lambda f: (f.adjusted_p_value, -f.distance),
        )
        return DriftReport(
            window_rows=len(window),
            false_alarm_rate=self.false_alarm_rate,
            p_value=combined,
            drifted=combined <= self.false_alarm_rate,
            mmd=mmd,
            mmd_p_value=mmd_p,
            features=tuple(features),
        )

    def _mmd_test(self, window: np.ndarray) -> tuple[float, float]:
        """The squared MMD between the reference sample and the window (at the median bandwidth), and the
        permutation p-value of the largest standardised MMD over BANDWIDTHS: one permutation set serves every
        bandwidth, so the maximum is calibrated as exactly as each one (a change at any scale counts once)."""
        pooled = np.vstack([self._mmd_reference, window])
        distances = _squared_distances(pooled, pooled)
        m, n = len(self._mmd_reference), len(window)
        weights = np.concatenate([np.full(m, 1.0 / m), np.full(n, -1.0 / n)])
        rng = np.random.default_rng(self.seed + 1)
        shuffled = np.stack([rng.permutation(weights) for _ in range(self.permutations)], axis=1)
        observed, permuted = [], []
        for factor in BANDWIDTHS:
            kernel = np.exp(-self._gamma / factor**2 * distances)
            observed.append(float(weights @ kernel @ weights))
            permuted.append(np.einsum("ib,ib->b", shuffled, kernel @ shuffled))
        null = np.asarray(permuted)
        center, spread = null.mean(axis=1), np.maximum(null.std(axis=1), 1e-15)
        observed_max = float(np.max((np.asarray(observed) - center) / spread))
        permuted_max = np.max((null - center[:, None]) / spread[:, None], axis=0)
        p_value = (1 + int(np.sum(permuted_max >= observed_max - 1e-12))) / (self.permutations + 1)
        return observed[BANDWIDTHS.index(1.0)], p_value


def _whitening(centered: np.ndarray) -> np.ndarray:
    """The matrix that turns centred reference rows into uncorrelated ones of unit variance (directions the
    reference data hardly varies in are floored, not blown up): a broken correlation then moves rows along a
    direction the reference data keeps narrow, which the kernel sees."""
    if centered.shape[1] == 0:
        return np.zeros((0, 0))
    covariance = np.atleast_2d(np.cov(centered, rowvar=False))
    values, vectors = np.linalg.eigh(covariance)
    floor = max(float(values.max()) * 1e-6, 1e-12)
    result: np.ndarray = vectors / np.sqrt(np.maximum(values, floor))
    return result


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2 * a @ b.T
    result: np.ndarray = np.maximum(squared, 0.0)
    return result


class RecentWindow:
    """The most recent inputs: at most `rows` of them, none older than `seconds`."""

    def __init__(self, rows: int, seconds: float):
        if rows < 2:
            raise ValueError("a drift window needs at least 2 rows")
        self.rows = rows
        self.seconds = seconds
        self._kept: deque[tuple[float, np.ndarray]] = deque(maxlen=rows)

    def add(self, rows: np.ndarray, now: float | None = None) -> None:
        arrived = time.time() if now is None else now
        for row in np.asarray(rows, dtype=np.float64):
            self._kept.append((arrived, row))

    def current(self, now: float | None = None) -> np.ndarray:
        """The rows still in the window (oldest first); an empty (0, 0) array when there are none."""
        cutoff = (time.time() if now is None else now) - self.seconds
        while self._kept and self._kept[0][0] < cutoff:
            self._kept.popleft()
        if not self._kept:
            return np.empty((0, 0))
        return np.stack([row for _, row in self._kept])
