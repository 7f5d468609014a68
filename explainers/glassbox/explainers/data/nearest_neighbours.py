"""Distances to the nearest rows of a set, exact in float64 and chunked (shared by the outlier detector and
the counterfactual search)."""

from __future__ import annotations

from typing import Any

import numpy as np


def squared_norms(vectors: Any) -> np.ndarray:
    """|v|^2 of each row, dense or scipy sparse."""
    if isinstance(vectors, np.ndarray):
        dense: np.ndarray = np.einsum("ij,ij->i", vectors, vectors)
        return dense
    return np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()


def nearest_distances(vectors: Any, neighbours: Any, k: int, chunk: int = 1024) -> np.ndarray:
    """Each row's distances to its k nearest rows of `neighbours` (count x k, in no particular order), from
    |a|^2 + |b|^2 - 2ab a block of rows at a time, so a large request never builds one huge distance matrix."""
    count = vectors.shape[0]
    out = np.empty((count, k))
    squared_neighbours = squared_norms(neighbours)
    for start in range(0, count, chunk):
        block = vectors[start : start + chunk]
        products = block @ neighbours.T
        products = products if isinstance(products, np.ndarray) else products.toarray()
        squared = squared_norms(block)[:, None] - 2.0 * products + squared_neighbours[None, :]
        out[start : start + chunk] = np.sqrt(np.partition(np.maximum(squared, 0.0), k - 1, axis=1)[:, :k])
    return out
