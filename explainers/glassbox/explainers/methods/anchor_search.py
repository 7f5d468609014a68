"""alibi's tabular anchor search, with alibi's answer for the same seed, at less cost.

Three changes, each keeping alibi's random draws, in alibi's order, and
alibi's arithmetic, so the anchor, its precision and its coverage are
alibi's (test_anchor_search checks them draw for draw and on models of
every shape in the family bench):

- Rounds (`RoundBatchedBeam`). alibi's beam search asks the sampler for
  `batch_size` perturbations of each candidate anchor in turn, and the
  sampler scores each candidate's with its own predictor call: over HTTP, one
  sequential round trip per candidate. Here a round draws every candidate's
  perturbations first, scores them all in one call, then hands alibi those
  perturbations and their labels as it asks for each candidate's.
- Sampling (`SameDrawsTabularSampler`). A search calls the sampler hundreds
  of times, mostly for the same few candidates, and alibi's sampler works out
  on every call which training rows each feature of the candidate allows and
  where those sets meet, then marks each sample's bins feature by feature in
  a Python loop. Here a candidate's rows are worked out once per explanation
  (they depend on the candidate and the explained instance alone) and the bins
  of all features are marked in one array operation.
- Bookkeeping (`LeanBeam`). When alibi extends the beam's anchors by one
  feature, it turns an anchor's set of sample indices into an array once per
  feature it tries, and its precision bounds clip the same precisions again in
  each of their sixteen bisection steps. Here each is done once.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from alibi.explainers.anchors import anchor_tabular
from alibi.explainers.anchors.anchor_base import AnchorBaseBeam
from alibi.explainers.anchors.anchor_tabular import TabularSampler

# Swaps alibi's beam class inside alibi's anchor_tabular module while an explanation runs, subclasses its
# sampler and restates parts of both: written for and checked against alibi 0.9.6 (test_methods_table: a
# process-wide patch meets the version it was written for).
WRITTEN_FOR = ("alibi", "0.9.6")

# alibi's bounds on a probability before it takes a KL divergence.
_KL_FLOOR, _KL_CEILING = 0.0000001, 0.9999999999999999

CriticalArms = namedtuple("CriticalArms", ["ut", "lt"])


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class AnchorRows:
    """The training rows an anchor allows, as alibi's sampler derives them from the anchor."""

    allowed_bins: dict[int, set[int]]  # numerical feature -> the bins it may take
    allowed_rows: dict[int, np.ndarray]  # feature -> training rows whose value (or bin) the anchor allows
    unknown: list[tuple[int, str, Any]]  # features whose allowed value or bins no training row has
    features: list[int]  # the anchor's features with some allowed rows, in the anchor's order
    partial_rows: list[np.ndarray]  # rows allowed by the first 1, 2, ... of those features
    counts: np.ndarray  # how many rows each partial anchor allows, the whole anchor first
    coverage: float  # the share of training rows the whole anchor allows


class SameDrawsTabularSampler(TabularSampler):  # type: ignore[misc]
    """alibi's sampler, drawing the same samples with less work per call. `choice` over a count draws
    what alibi's `choice` over that `range` draws. Set on a fitted AnchorTabular by `use_same_draws_sampler`."""

    def build_lookups(self, X: np.ndarray) -> list[dict[int, Any]]:
        lookups: list[dict[int, Any]] = super().build_lookups(X)
        # The lookups are the explained instance's: what was derived from the last instance's goes.
        self._anchor_rows: dict[tuple[int, ...], AnchorRows] = {}
        encoded = list(self.enc2feat_idx)
        # A sample has encoded feature i when its column's bin lies in [low, high], a categorical
        # feature's value being its own range; alibi asks the same of each feature in turn.
        bounds = [
            (self.cat_lookup[i], self.cat_lookup[i])
            if i in self.cat_lookup
            else (min(self.ord_lookup[i]), max(self.ord_lookup[i]))
            for i in encoded
        ]
        self._encoded = np.array(encoded, dtype=int)
        self._columns = np.array([self.enc2feat_idx[i] for i in encoded], dtype=int)
        self._low = np.array([low for low, _ in bounds], dtype=float)
        self._high = np.array([high for _, high in bounds], dtype=float)
        return lookups

    def __call__(self, anchor: tuple[int, tuple[int, ...]], num_samples: int, compute_labels: bool = True) -> list[Any]:
        raw, binned, coverage = self.perturbation(anchor[1], num_samples)
        data = np.zeros((num_samples, len(self.enc2feat_idx)), int)
        columns = binned[:, self._columns]
        data[:, self._encoded] = (self._low <= columns) & (columns <= self._high)
        if not compute_labels:
            return [data]
        labels = self.compare_labels(raw)
        covered_true = raw[labels, :][: self.n_covered_ex]
        covered_false = raw[np.logical_not(labels), :][: self.n_covered_ex]
        return [covered_true, covered_false, labels.astype(int), data, coverage, anchor[0]]

    def perturbation(self, anchor: tuple[int, ...], num_samples: int) -> tuple[np.ndarray, np.ndarray, float]:
        first = np.random.choice(self.n_records, num_samples, replace=True)
        samples, binned = self.train_data[first], self.d_train_data[first]
        if not anchor:
            return samples, binned, -1.0
        rows = self._rows_for(anchor)
        if np.searchsorted(rows.counts, num_samples) == 0:
            # Enough training rows hold the whole anchor: its features' values come from them.
            drawn = np.random.choice(rows.partial_rows[-1], num_samples)
            cells = np.ix_(drawn, rows.features)  # type: ignore[arg-type]
            samples[:, rows.features] = self.train_data[cells]
            binned[:, rows.features] = self.d_train_data[cells]
            return samples, binned, rows.coverage
        # Too few: alibi fills the samples from the partial anchors, then the features no row has.
        self.replace_features(samples, rows.allowed_rows, rows.features, rows.partial_rows, rows.counts, num_samples)
        if rows.unknown:
            self.handle_unk_features(rows.allowed_bins, num_samples, samples, rows.unknown)
        return samples, self.disc.discretize(samples), rows.coverage

    def _rows_for(self, anchor: tuple[int, ...]) -> AnchorRows:
        known = self._anchor_rows.get(anchor)
        if known is None:
            known = self._anchor_rows[anchor] = self._derive_rows(anchor)
        return known

    def _derive_rows(self, anchor: tuple[int, ...]) -> AnchorRows:
        allowed_bins, allowed_rows, unknown = self.get_features_index(anchor)
        missing = {feature for feature, _, _ in unknown}
        features = [f for f in dict.fromkeys(self.enc2feat_idx[i] for i in anchor) if f not in missing]
        partial_rows: list[np.ndarray] = []
        for feature in features:
            # As alibi: the first feature's rows as they are, then sorted intersections.
            rows = allowed_rows[feature]
            partial_rows.append(rows if not partial_rows else np.intersect1d(partial_rows[-1], rows))
        if not partial_rows:
            partial_rows = [np.array([], dtype=int)]
        counts = np.array([len(rows) for rows in reversed(partial_rows)])
        return AnchorRows(allowed_bins, allowed_rows, unknown, features, partial_rows, counts, counts[0] / self.n_records)


def use_same_draws_sampler(explainer: Any) -> None:
    """Makes a fitted alibi AnchorTabular's sampler a SameDrawsTabularSampler (it keeps all its fitted state)."""
    for sampler in explainer.samplers:
        if type(sampler) is not TabularSampler:
            raise TypeError(f"expected alibi's TabularSampler, got {type(sampler).__name__}")
        sampler.__class__ = SameDrawsTabularSampler


# --------------------------------------------------------------------------- bookkeeping


def _kl_to(p: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """q -> alibi's KL divergence of Bernoulli(p) from Bernoulli(q), elementwise, with p's share done once."""
    m = np.minimum(np.maximum(p, _KL_FLOOR), _KL_CEILING).astype(float)
    rest = 1.0 - m

    def kl(q: np.ndarray) -> np.ndarray:
        n = np.minimum(np.maximum(q, _KL_FLOOR), _KL_CEILING).astype(float)
        return m * np.log(m / n) + rest * np.log(rest / (1.0 - n))  # type: ignore[no-any-return]

    return kl


class LeanBeam(AnchorBaseBeam):  # type: ignore[misc]
    """alibi's beam search with its bookkeeping done once where alibi repeats it."""

    @staticmethod
    def dup_bernoulli(p: np.ndarray, level: np.ndarray, n_iter: int = 17) -> np.ndarray:
        """The largest q with KL(p, q) <= level, by alibi's bisection."""
        low, high = p.copy(), np.asarray(np.minimum(p + np.sqrt(level / 2.0), 1.0))
        kl = _kl_to(p)
        for _ in range(1, n_iter):
            middle = (high + low) / 2.0
            beyond = kl(middle) > level
            high[beyond] = middle[beyond]
            within = np.logical_not(beyond)
            low[within] = middle[within]
        return high

    @staticmethod
    def dlow_bernoulli(p: np.ndarray, level: np.ndarray, n_iter: int = 17) -> np.ndarray:
        """The smallest q with KL(p, q) <= level, by alibi's bisection."""
        low, high = np.asarray(np.clip(p - np.sqrt(level / 2.0), 0.0, 1.0)), p.copy()
        kl = _kl_to(p)
        for _ in range(1, n_iter):
            middle = (high + low) / 2.0
            beyond = kl(middle) > level
            low[beyond] = middle[beyond]
            within = np.logical_not(beyond)
            high[within] = middle[within]
        return low

    def select_critical_arms(
        self, means: np.ndarray, ub: np.ndarray, lb: np.ndarray, n_samples: np.ndarray, delta: float, top_n: int, t: int
    ) -> CriticalArms:
        """alibi's choice of the two anchors to sample next (its namedtuple class made once, not per round)."""
        ranked = np.argsort(means)
        beta = self.compute_beta(len(means), t, delta)
        best, rest = ranked[-top_n:], ranked[:-top_n]
        ub[rest] = self.dup_bernoulli(means[rest], beta / n_samples[rest])
        lb[best] = self.dlow_bernoulli(means[best], beta / n_samples[best])
        return CriticalArms(rest[np.argmax(ub[rest])], best[np.argmin(lb[best])])

    def propose_anchors(self, previous_best: list[Any]) -> list[Any]:
        """alibi's candidates one feature longer than the beam's anchors, with the same state: each anchor's
        samples are read once, not once per feature tried."""
        if not previous_best:
            return super().propose_anchors(previous_best)  # type: ignore[no-any-return]  # once per explanation
        state = self.state
        samples, labels, coverage_rows = state["data"], state["labels"], state["coverage_data"].shape[0]
        sampled: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}
        proposed: set[tuple[int, ...]] = set()  # its order, from alibi's insertion order, is alibi's
        for feature in range(state["n_features"]):
            for anchor in previous_best:
                longer = tuple(sorted(set(anchor + (feature,))))
                if len(longer) != len(anchor) + 1 or longer in proposed:
                    continue
                proposed.add(longer)
                state["t_order"][longer] = [*state["t_order"][anchor], feature]
                covered = state["t_coverage_idx"][anchor].intersection(state["t_coverage_idx"][(feature,)])
                state["t_coverage_idx"][longer] = covered
                state["t_coverage"][longer] = float(len(covered)) / coverage_rows
                if anchor not in sampled:
                    rows = np.fromiter(state["t_idx"][anchor], dtype=int)
                    sampled[anchor] = rows, samples[rows]
                rows, binary = sampled[anchor]
                holding = rows[binary[:, feature] == 1]
                state["t_idx"][longer] = set(holding.tolist())
                state["t_nsamples"][longer] = float(len(holding))
                state["t_positives"][longer] = np.sum(labels[holding])
        return list(proposed)


# --------------------------------------------------------------------------- rounds


class RoundBatchedBeam(LeanBeam):
    def draw_samples(self, anchors: list[Any], batch_size: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        sampler = self.sample_fcn
        if len(anchors) < 2 or not isinstance(sampler, TabularSampler):
            return super().draw_samples(anchors, batch_size)  # type: ignore[no-any-return]
        for anchor in anchors:
            self.state["t_order"].setdefault(anchor, list(anchor))
        # alibi draws each candidate's perturbations in this order with nothing else
        # consuming random numbers in between: drawing them here leaves the random
        # state where alibi's own draws would, and alibi is handed the same arrays.
        drawn = [sampler.perturbation(tuple(self.state["t_order"][anchor]), batch_size) for anchor in anchors]
        matches = sampler.predictor(np.concatenate([raw for raw, _, _ in drawn])) == sampler.instance_label
        labels = iter(np.split(matches, np.cumsum([len(raw) for raw, _, _ in drawn])[:-1]))
        perturbations = iter(drawn)
        # Instance attributes shadow the sampler's methods for this round only.
        sampler.perturbation = lambda anchor, num_samples: next(perturbations)
        sampler.compare_labels = lambda samples: next(labels)
        try:
            return super().draw_samples(anchors, batch_size)  # type: ignore[no-any-return]
        finally:
            del sampler.perturbation, sampler.compare_labels


_SWAP = threading.Lock()
_searches_running = 0


@contextmanager
def round_batched_search() -> Iterator[None]:
    """AnchorTabular builds its beam by name at the start of `explain`: while any
    explanation is inside this block, the name means the round-batched beam."""
    global _searches_running
    with _SWAP:
        _searches_running += 1
        anchor_tabular.AnchorBaseBeam = RoundBatchedBeam
    try:
        yield
    finally:
        with _SWAP:
            _searches_running -= 1
            if _searches_running == 0:
                anchor_tabular.AnchorBaseBeam = AnchorBaseBeam
