"""Sparse counterfactuals by a black-box search: few features changed, to values the target class has.

The search sees the model only through `predict` (the predictor's API); each step below is one predictor
call over many candidate rows, so an explanation costs a few calls, not one per candidate.

1. flip: from the instance, change one feature per call to a value one of the target class's nearest
   reference rows has, choosing the change that raises the target class's margin most, until the target
   class wins by more than MIN_MARGIN. Where it does not within `max_changes` features, the target class's
   nearest reference row (immutable features kept) is the start instead; alibi's CFRL can also give it.
2. revert: changes the class does not need go back to the instance's values.
3. shrink: each remaining change moves back towards the instance as far as the class allows.
4. into the distribution: while the counterfactual lies farther from the target class's reference rows
   than 95% of that class's rows lie from their nearest neighbour, one more feature takes the value of
   the nearest such row, if the class stays; at most `distribution_steps` times. This is the trade-off
   between sparsity and plausibility: 0 answers the fewest changes the class needs, which may lie
   where the class has no data; each step may change one more feature to bring it nearer.

A class "wins" only by more than MIN_MARGIN: a float32 forward pass scores a row differently, by up to
about 1e-6, in batches of different sizes, and an answer must not hang on which batch scored it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glassbox.explainers.data.nearest_neighbours import nearest_distances

MIN_MARGIN = 1e-6
# Share of a class's reference rows whose nearest neighbour in the class is at most its typical distance.
TYPICAL_QUANTILE = 0.95
# Reference rows per class the typical distance and the neighbours come from (a seeded sample beyond).
MAX_ROWS_PER_CLASS = 2000
SHRINK_FRACTIONS = (0.0, 0.25, 0.5, 0.75)

Predict = Callable[[np.ndarray], np.ndarray]


class Scorer:
    """The predictor, as margins of one class over the best other, counting the calls."""

    def __init__(self, predict: Predict):
        self.predict = predict
        self.calls = 0

    def scores(self, rows: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.asarray(self.predict(rows), dtype=np.float64).reshape(len(rows), -1)

    def margins(self, rows: np.ndarray, goal: Goal) -> np.ndarray:
        return goal.margins(self.scores(rows))


@dataclass(frozen=True)
class Goal:
    """What a counterfactual must do: make `target` the class, or (`leave` set) make any other class than
    `leave` win, for a model on which the target is tied with another class everywhere. The search moves
    towards `target`'s reference rows either way."""

    target: int
    leave: int | None = None

    def margins(self, scores: np.ndarray) -> np.ndarray:
        """How far each row is past the goal (negative: short of it)."""
        if self.leave is not None:
            return np.asarray(_best_other(scores, self.leave) - scores[:, self.leave])
        return np.asarray(scores[:, self.target] - _best_other(scores, self.target))


def _best_other(scores: np.ndarray, label: int) -> np.ndarray:
    others = np.array(scores, dtype=np.float64, copy=True)
    others[:, label] = -np.inf
    return np.asarray(others.max(axis=1))


class ClassNeighbourhoods:
    """The reference rows grouped by the class the model predicts for them, standardised, and how far a
    row of each class typically lies from its nearest neighbour in the class."""

    def __init__(self, features: np.ndarray, predicted: np.ndarray, scale: np.ndarray, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.scale = scale
        self.rows: dict[int, np.ndarray] = {}
        self.typical_distance: dict[int, float] = {}
        for label in np.unique(predicted):
            members = np.flatnonzero(predicted == label)
            if len(members) > MAX_ROWS_PER_CLASS:
                members = np.sort(rng.choice(members, MAX_ROWS_PER_CLASS, replace=False))
            rows = features[members] / scale
            self.rows[int(label)] = rows
            self.typical_distance[int(label)] = _typical_nearest_distance(rows)

    @property
    def classes(self) -> list[int]:
        return sorted(self.rows)

    def nearest(self, x: np.ndarray, label: int, count: int) -> np.ndarray:
        """The `count` rows of class `label` nearest to x, in x's units."""
        rows = self.rows[label]
        order = np.argsort(_distances(x / self.scale, rows), kind="stable")[:count]
        return np.asarray(rows[order] * self.scale)

    def distance_ratio(self, rows: np.ndarray, label: int) -> np.ndarray:
        """Each row's distance to the nearest reference row of `label`, over that class's typical distance:
        at most 1 is in the class's distribution (as close as 95% of its own rows are to a neighbour)."""
        nearest = nearest_distances(np.atleast_2d(rows) / self.scale, self.rows[label], 1)[:, 0]
        return np.asarray(nearest / max(self.typical_distance[label], 1e-12))


def _distances(row: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.asarray(np.sqrt(((rows - row) ** 2).sum(axis=1)))


def _typical_nearest_distance(rows: np.ndarray) -> float:
    if len(rows) < 2:
        return 0.0
    # Each row's nearest other row: the farther of its two nearest, itself (distance 0) being the other.
    nearest_other = nearest_distances(rows, rows, 2).max(axis=1)
    return float(np.quantile(nearest_other, TYPICAL_QUANTILE))


@dataclass(frozen=True)
class Features:
    """What the search may do to each feature: change it at all, and move it part of the way."""

    mutable: np.ndarray  # bool per feature
    continuous: np.ndarray  # bool per feature: False for categorical codes, which take whole values only


def flip(
    x: np.ndarray, goal: Goal, values: np.ndarray, features: Features, scorer: Scorer, max_changes: int
) -> np.ndarray | None:
    """Step 1: change one feature per call, to one of `values` (rows whose feature values are candidates),
    the change that raises the target's margin most, until the target wins; None if it does not."""
    counterfactual = np.array(x, dtype=np.float64, copy=True)
    free = features.mutable.copy()
    for _ in range(max_changes):
        columns, candidates = [], []
        for column in np.flatnonzero(free):
            for value in np.unique(values[:, column]):
                if value != counterfactual[column]:
                    columns.append(column)
                    candidates.append(value)
        if not candidates:
            return None
        rows = np.repeat(counterfactual[None, :], len(candidates), axis=0)
        rows[np.arange(len(candidates)), columns] = candidates
        margins = scorer.margins(rows, goal)
        best = int(np.argmax(margins))
        counterfactual, free[columns[best]] = np.asarray(rows[best]), False
        if margins[best] > MIN_MARGIN:
            return counterfactual
    return None


def revert(x: np.ndarray, counterfactual: np.ndarray, goal: Goal, scorer: Scorer) -> np.ndarray | None:
    """Step 2: put back the instance's value of every feature the target does not need; None when the
    counterfactual itself does not reach the target."""
    changed = np.flatnonzero(counterfactual != x)
    # One call: the counterfactual with its 0, 1, 2, ... smallest changes reverted.
    size = np.abs(counterfactual - x)[changed]
    order = changed[np.argsort(size, kind="stable")]
    prefixes = np.repeat(counterfactual[None, :], len(order) + 1, axis=0)
    for k in range(1, len(order) + 1):
        prefixes[k:, order[k - 1]] = x[order[k - 1]]
    reaching = np.flatnonzero(scorer.margins(prefixes, goal) > MIN_MARGIN)
    if len(reaching) == 0:
        return None
    counterfactual = np.asarray(prefixes[reaching.max()])
    # Then one call per round: revert the single change whose loss leaves the target's margin highest.
    while True:
        changed = np.flatnonzero(counterfactual != x)
        if len(changed) == 0:
            return counterfactual
        rows = np.repeat(counterfactual[None, :], len(changed), axis=0)
        rows[np.arange(len(changed)), changed] = x[changed]
        margins = scorer.margins(rows, goal)
        if margins.max() <= MIN_MARGIN:
            return counterfactual
        counterfactual = rows[int(np.argmax(margins))]


def shrink(x: np.ndarray, counterfactual: np.ndarray, goal: Goal, features: Features, scorer: Scorer) -> np.ndarray:
    """Step 3: move each continuous change back towards the instance as far as the target allows, the
    largest change first (one call per changed feature)."""
    moved = np.abs(counterfactual - x)
    for column in np.argsort(-moved, kind="stable"):
        if moved[column] == 0 or not features.continuous[column]:
            continue
        rows = np.repeat(counterfactual[None, :], len(SHRINK_FRACTIONS), axis=0)
        rows[:, column] = x[column] + np.array(SHRINK_FRACTIONS) * (counterfactual[column] - x[column])
        reaching = np.flatnonzero(scorer.margins(rows, goal) > MIN_MARGIN)
        if len(reaching):
            counterfactual = rows[reaching.min()]
    return counterfactual


def into_distribution(
    counterfactual: np.ndarray,
    goal: Goal,
    features: Features,
    scorer: Scorer,
    neighbourhoods: ClassNeighbourhoods,
    steps: int,
) -> np.ndarray:
    """Step 4: while the counterfactual lies outside the target class's distribution, give one more feature
    the value of the nearest reference row of that class, the one that brings it closest, if the class stays;
    at most `steps` times."""
    ratio = float(neighbourhoods.distance_ratio(counterfactual, goal.target)[0])
    for _ in range(steps):
        if ratio <= 1.0:
            break
        nearest = neighbourhoods.nearest(counterfactual, goal.target, 1)[0]
        columns = np.flatnonzero(features.mutable & (nearest != counterfactual))
        if len(columns) == 0:
            break
        rows = np.repeat(counterfactual[None, :], len(columns), axis=0)
        rows[np.arange(len(columns)), columns] = nearest[columns]
        ratios = neighbourhoods.distance_ratio(rows, goal.target)
        ratios[scorer.margins(rows, goal) <= MIN_MARGIN] = np.inf
        best = int(np.argmin(ratios))
        if not ratios[best] < ratio:
            break
        counterfactual, ratio = rows[best], float(ratios[best])
    return counterfactual


def search(
    x: np.ndarray,
    goal: Goal,
    features: Features,
    scorer: Scorer,
    neighbourhoods: ClassNeighbourhoods,
    candidate_rows: int,
    max_changes: int,
    distribution_steps: int,
    start: np.ndarray | None = None,
) -> np.ndarray | None:
    """A counterfactual of x for the goal (steps 1 to 4), or None where none was found. `start` (CFRL's
    answer) replaces step 1's search."""
    values = neighbourhoods.nearest(x, goal.target, candidate_rows)
    first = start if start is not None else flip(x, goal, values, features, scorer, max_changes)
    # values[0] is the target class's nearest reference row.
    candidates = [first, np.where(features.mutable, values[0], x)]
    for candidate in candidates:
        if candidate is None:
            continue
        reverted = revert(x, candidate, goal, scorer)
        if reverted is not None:
            shrunk = shrink(x, reverted, goal, features, scorer)
            return into_distribution(shrunk, goal, features, scorer, neighbourhoods, distribution_steps)
    return None
