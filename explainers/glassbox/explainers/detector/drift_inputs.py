"""What the drift tests see of an input, in the detector's own representation of it:

- tabular rows as they are: each feature tested on its own, the categorical ones as categories;
- images pooled to the detector's grid (outliers.pool_images): each cell of each channel is a feature, so
  a window of brighter, darker or differently framed pictures moves the cells it touches;
- text as the detector's hashed word and character n-grams (outliers.hash_texts), projected on the
  reference texts' leading directions (a truncated SVD, seeded): each direction is a feature, named by
  the reference words that weigh most on it, so a window whose wording moves away from the reference
  texts' moves the directions it leaves.

A pure function of the reference data and the seed; the monitor keeps one and turns each logged request's
instances into the vectors its window holds.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from glassbox.explainers.data.reference_data import ReferenceTable
from glassbox.explainers.detector.errors import DetectorFitError
from glassbox.explainers.detector.outliers import IMAGE_GRID, TEXT_BUCKETS, Inputs, hash_texts, pool_images
from glassbox.explainers.serving.errors import InputError

# Leading directions of the reference texts' n-gram profiles that text drift is tested on.
TEXT_DIRECTIONS = 16
# Reference words named per direction.
WORDS_PER_DIRECTION = 3
# Distinct reference words looked up to name the directions (the most frequent ones).
NAMING_VOCABULARY = 20_000


@dataclass(frozen=True)
class DriftInputs:
    kind: str  # "tabular", "image" or "text"
    reference: np.ndarray  # (n, d): the reference inputs as the tests see them
    names: list[str]  # d features' names
    categorical: frozenset[int]
    instance_shape: tuple[int, ...]  # what each numeric instance must look like (empty for text)
    directions: np.ndarray | None = None  # text: (2 x TEXT_BUCKETS, d)

    @staticmethod
    def of_table(table: ReferenceTable) -> DriftInputs:
        if table.features.ndim != 2:
            return DriftInputs.of_images(table.features)
        return DriftInputs(
            "tabular",
            np.asarray(table.features, dtype=np.float64),
            list(table.feature_names),
            frozenset(table.categorical_names),
            (table.features.shape[1],),
        )

    @staticmethod
    def of_images(images: np.ndarray) -> DriftInputs:
        if images.ndim not in (3, 4):
            raise DetectorFitError(f"reference images of shape {list(images.shape)}: (height, width[, channels]) each")
        pooled = pool_images(images)
        height, width = images.shape[1:3]
        grid_h, grid_w = min(IMAGE_GRID, height), min(IMAGE_GRID, width)
        channels = images.shape[3] if images.ndim == 4 else 1
        names = [
            f"cell ({row},{column})" + (f" channel {channel}" if channels > 1 else "")
            for row in range(grid_h)
            for column in range(grid_w)
            for channel in range(channels)
        ]
        assert len(names) == pooled.shape[1]
        return DriftInputs("image", pooled, names, frozenset(), tuple(images.shape[1:]))

    @staticmethod
    def of_texts(texts: list[str], seed: int = 0) -> DriftInputs:
        from scipy.sparse.linalg import svds

        profiles = hash_texts(texts)
        count = min(TEXT_DIRECTIONS, min(profiles.shape) - 1)
        if count < 2:
            raise DetectorFitError(
                f"{len(texts)} reference texts are too few to test drift on: give at least {TEXT_DIRECTIONS + 1}"
            )
        start = np.random.default_rng(seed).uniform(size=min(profiles.shape))
        _, strengths, rows = svds(profiles, k=count, v0=start)
        order = np.argsort(-strengths, kind="stable")
        directions = rows[order].T  # (2 x TEXT_BUCKETS, count), strongest first
        names = _name_directions(texts, directions)
        reference = np.asarray(profiles @ directions)
        return DriftInputs("text", reference, names, frozenset(), (), directions)

    def vectors(self, inputs: Inputs) -> np.ndarray:
        """The instances of a logged request as the window holds them; InputError when they are not the kind
        of input the reference data is."""
        if self.kind == "text":
            if not isinstance(inputs, list):
                raise InputError("drift is tested on text here (the reference data is text): the request holds numbers")
            assert self.directions is not None
            return np.asarray(hash_texts([str(text) for text in inputs]) @ self.directions)
        if isinstance(inputs, list):
            raise InputError(f"drift is tested on {self.kind} inputs here: the request holds text")
        rows = np.asarray(inputs, dtype=np.float64)
        if self.kind == "image":
            if tuple(rows.shape[1:]) != self.instance_shape:
                raise InputError(
                    f"the logged request's images are of shape {list(rows.shape[1:])}; the reference images are "
                    f"{list(self.instance_shape)}"
                )
            return pool_images(rows)
        rows = rows.reshape(len(rows), -1)
        if rows.shape[1] != self.reference.shape[1]:
            raise InputError(
                f"the logged request's rows have {rows.shape[1]} features; the reference data has {self.reference.shape[1]}"
            )
        return rows


def _name_directions(texts: list[str], directions: np.ndarray) -> list[str]:
    """Each direction named by the reference words in the word buckets that weigh most on it (a bucket by the
    most frequent reference word hashed into it)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    frequent = Counter(word for text in texts for word in re.findall(r"(?u)\b\w\w+\b", text.lower()))
    vocabulary = [word for word, _ in frequent.most_common(NAMING_VOCABULARY)]
    word_of_bucket: dict[int, str] = {}
    if vocabulary:
        hashed = HashingVectorizer(n_features=TEXT_BUCKETS, ngram_range=(1, 1), alternate_sign=False, norm=None)
        buckets = hashed.transform(vocabulary).tocsr()
        for word, row in zip(vocabulary, range(buckets.shape[0]), strict=True):
            for bucket in buckets.indices[buckets.indptr[row] : buckets.indptr[row + 1]]:
                word_of_bucket.setdefault(int(bucket), word)  # the most frequent word comes first
    names = []
    for index in range(directions.shape[1]):
        weights = np.abs(directions[:TEXT_BUCKETS, index])
        words = [word_of_bucket[int(b)] for b in np.argsort(-weights, kind="stable") if int(b) in word_of_bucket]
        names.append(f"text direction {index + 1} ({', '.join(words[:WORDS_PER_DIRECTION])})")
    return names
