"""One predictor call per round of the anchor search, instead of one per candidate.

alibi's beam search asks the sampler for `batch_size` perturbations of each
candidate anchor in turn, and the sampler scores each candidate's samples with
its own predictor call: over HTTP, one sequential round trip per candidate.
Here a round draws every candidate's perturbations first, scores them all in
one call, then hands alibi those perturbations and their labels as it asks
for each candidate's. The draws are the ones alibi would make, in its order,
so the anchor is the same as alibi's for the same seed; only the round trips
change.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from alibi.explainers.anchors import anchor_tabular
from alibi.explainers.anchors.anchor_base import AnchorBaseBeam
from alibi.explainers.anchors.anchor_tabular import TabularSampler

# Swaps alibi's beam class inside alibi's anchor_tabular module while an explanation runs: written for and
# checked against alibi 0.9.6 (test_units: a process-wide patch meets the version it was written for).
WRITTEN_FOR = ("alibi", "0.9.6")


class RoundBatchedBeam(AnchorBaseBeam):  # type: ignore[misc]
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
