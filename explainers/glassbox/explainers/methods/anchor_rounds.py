"""One predictor call per round of the anchor search, instead of one per candidate.

alibi's beam search asks the sampler for `batch_size` perturbations of each
candidate anchor in turn, and the sampler scores each candidate's samples with
its own predictor call: over HTTP, one sequential round trip per candidate.
Here a round first draws every candidate's perturbations, scores them all in
one call, then lets alibi draw them again from the same random state, handing
back the labels already computed. The draws are the same, so the anchor is
the same as alibi's for the same seed; only the round trips change.
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


class RoundBatchedBeam(AnchorBaseBeam):  # type: ignore[misc]
    def draw_samples(self, anchors: list[Any], batch_size: int) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        sampler = self.sample_fcn
        if len(anchors) < 2 or not isinstance(sampler, TabularSampler):
            return super().draw_samples(anchors, batch_size)  # type: ignore[no-any-return]
        for anchor in anchors:
            self.state["t_order"].setdefault(anchor, list(anchor))
        random_state = np.random.get_state()
        drawn = [sampler.perturbation(tuple(self.state["t_order"][anchor]), batch_size)[0] for anchor in anchors]
        np.random.set_state(random_state)
        matches = sampler.predictor(np.concatenate(drawn)) == sampler.instance_label
        pending = list(np.split(matches, np.cumsum([len(d) for d in drawn])[:-1]))
        # An instance attribute shadows the method for this round only.
        sampler.compare_labels = lambda samples: pending.pop(0)
        try:
            return super().draw_samples(anchors, batch_size)  # type: ignore[no-any-return]
        finally:
            del sampler.compare_labels


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
