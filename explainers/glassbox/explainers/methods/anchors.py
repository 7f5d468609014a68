"""Anchors (alibi): an IF-THEN rule that holds the prediction with high precision.

Black-box: every sample is scored by the predictor through its API.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from glassbox.contract.api import AnchorImageParameters, AnchorTabularParameters, AnchorTextParameters, MethodType
from glassbox.explainers.data import pictures
from glassbox.explainers.methods.base import ExplanationMethod, FittedCopies, Instances
from glassbox.explainers.methods.random_state import own_random_state
from glassbox.explainers.serving.errors import InputError


def _prediction(explanation: Any) -> int:
    return int(np.asarray(explanation.data["raw"]["prediction"]).reshape(-1)[0])


def _scores(explanation: Any) -> str:
    precision = float(np.asarray(explanation.precision).reshape(-1)[0])
    coverage = float(np.asarray(explanation.coverage).reshape(-1)[0])
    return f"precision {precision:.2f}, coverage {coverage:.2f}"


class AnchorTabularMethod(ExplanationMethod[AnchorTabularParameters]):
    method_type = MethodType.AnchorTabular
    max_instances = 1

    def fit(self) -> None:
        from alibi.explainers import AnchorTabular

        from glassbox.explainers.methods.anchor_search import use_same_draws_sampler

        reference = self.reference
        with own_random_state(self.params.seed):
            explainer = AnchorTabular(
                self.context.predict,
                feature_names=reference.feature_names,
                categorical_names=reference.categorical_names or None,
                seed=self.params.seed,
            )
            explainer.fit(reference.features, disc_perc=tuple(self.params.disc_perc))
        use_same_draws_sampler(explainer)
        self.fitted = FittedCopies(explainer, shared=(self.context.predict,))

    def explain(self, instances: Instances) -> Any:
        from glassbox.explainers.methods.anchor_search import round_batched_search

        p = self.params
        with self.fitted.borrow() as explainer, round_batched_search(), own_random_state(p.seed):
            return explainer.explain(
                np.asarray(instances)[0],
                threshold=p.threshold,
                delta=p.delta,
                tau=p.tau,
                batch_size=p.batch_size,
                coverage_samples=p.coverage_samples,
                beam_size=p.beam_size,
                max_anchor_size=p.max_anchor_size,
            )

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        rule = " AND ".join(explanation.anchor) or "(any input)"
        return [f"IF {rule} THEN class {_prediction(explanation)}, {_scores(explanation)}"]

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        return pictures.rule_card(
            title=f"Anchor for class {_prediction(explanation)}",
            conditions=list(explanation.anchor),
            precision=float(np.asarray(explanation.precision).reshape(-1)[0]),
            coverage=float(np.asarray(explanation.coverage).reshape(-1)[0]),
        )


class AnchorTextMethod(ExplanationMethod[AnchorTextParameters]):
    """Words are replaced by alibi's placeholder (UNK) until the label changes: the words that hold it are the anchor."""

    method_type = MethodType.AnchorText
    max_instances = 1
    takes_text = True

    def fit(self) -> None:
        import spacy
        from alibi.explainers import AnchorText

        # A blank English pipeline tokenises without downloading a language model.
        nlp = spacy.blank("en")
        with own_random_state(self.params.seed):
            explainer = AnchorText(self.context.predict, sampling_strategy="unknown", nlp=nlp, seed=self.params.seed)
        self.fitted = FittedCopies(explainer, shared=(self.context.predict, nlp))

    def explain(self, instances: Instances) -> Any:
        p = self.params
        text = instances[0]
        if not str(text).strip():
            raise InputError("the text to explain is empty")
        with self.fitted.borrow() as explainer, own_random_state(p.seed):
            return explainer.explain(text, threshold=p.threshold, batch_size=p.batch_size, sample_proba=p.sample_proba)

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        words = " AND ".join(f"'{w}'" for w in explanation.anchor) or "(any text)"
        return [f"IF the text contains {words} THEN class {_prediction(explanation)}, {_scores(explanation)}"]

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        text = str(instances[0])
        anchor = {w.lower() for w in explanation.anchor}
        return pictures.highlighted_words(
            text, {w: 1.0 for w in anchor}, title=f"Anchor words for class {_prediction(explanation)}"
        )


class AnchorImageMethod(ExplanationMethod[AnchorImageParameters]):
    method_type = MethodType.AnchorImage
    max_instances = 1

    def fit(self) -> None:
        self.explainer: Any = None  # built for the first image: its shape fixes the explainer's
        self._one_at_a_time = threading.Lock()

    def _explainer_for(self, shape: tuple[int, ...]) -> Any:
        from alibi.explainers import AnchorImage

        p = self.params
        expected = tuple(p.image_shape) if p.image_shape else None
        if expected is not None and shape != expected:
            raise InputError(f"images must have shape {list(expected)} (anchorImage.imageShape); got {list(shape)}")
        if self.explainer is None or self.explainer.image_shape != shape:
            kwargs = {"n_segments": p.n_segments, "compactness": 10, "sigma": 0.5} if p.segmentation.value == "slic" else {}
            # Perturbed superpixels take their pixels from the reference images when there are
            # some; without them alibi fills each superpixel with its own mean colour.
            background = self.context.reference.features if self.context.reference is not None else None
            self.explainer = AnchorImage(
                self.context.predict,
                image_shape=shape,
                segmentation_fn=p.segmentation.value,
                segmentation_kwargs=kwargs,
                images_background=background,
                seed=p.seed,
            )
        return self.explainer

    def check_instances(self, instances: Instances) -> Instances:
        instances = super().check_instances(instances)
        array = np.asarray(instances)
        if array.ndim != 4:
            raise InputError(f"send images as [height][width][channels] arrays; got instances of shape {list(array.shape[1:])}")
        return instances

    def explain(self, instances: Instances) -> Any:
        p = self.params
        image = np.asarray(instances)[0]
        # One image explainer per image shape, built on first use: image anchors run one at a time.
        with self._one_at_a_time, own_random_state(p.seed):
            explainer = self._explainer_for(tuple(image.shape))
            return explainer.explain(image, p_sample=p.p_sample, threshold=p.threshold)

    @staticmethod
    def anchored_segments(explanation: Any) -> list[int]:
        return sorted(int(s) for s in explanation.data["raw"]["feature"])

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        segments = self.anchored_segments(explanation)
        share = float(np.isin(np.asarray(explanation.segments), segments).mean())
        return [
            f"superpixels {segments} ({share:.0%} of the image) anchor class {_prediction(explanation)}, {_scores(explanation)}"
        ]

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        mask = np.isin(np.asarray(explanation.segments), self.anchored_segments(explanation)).astype(float)
        return pictures.image_overlay(
            np.asarray(instances)[0], mask, title=f"Anchor superpixels for class {_prediction(explanation)}"
        )
