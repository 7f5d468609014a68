"""KernelSHAP (alibi, shap): additive attributions from a weighted linear fit over feature coalitions.

Black-box: the coalitions, filled in from the background data, are scored by
the predictor through its API.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from glassbox.contract.api import KernelShapParameters, MethodType
from glassbox.explainers.data import pictures
from glassbox.explainers.methods.base import ExplanationMethod, FittedCopies, Instances, top_contributions
from glassbox.explainers.methods.random_state import own_random_state


def l1_regularisation(value: str) -> Any:
    """alibi's l1_reg from the API's string: auto, aic, bic, num_features(N), or false."""
    lowered = value.strip().lower()
    if lowered in ("false", "none", "off", "0"):
        return False
    if lowered in ("auto", "aic", "bic") or re.fullmatch(r"num_features\(\d+\)", lowered):
        return lowered
    raise ValueError(f"l1Reg '{value}' is not one of auto, aic, bic, num_features(N), false")


class KernelShapMethod(ExplanationMethod[KernelShapParameters]):
    method_type = MethodType.KernelShap

    def fit(self) -> None:
        from alibi.explainers import KernelShap

        from glassbox.explainers.methods.kernel_shap_sums import use_same_sums

        p = self.params
        reference = self.reference
        self.l1_reg = l1_regularisation(p.l1_reg)
        explainer = KernelShap(self.context.predict, link=p.link.value, feature_names=reference.feature_names, seed=p.seed)
        summarise = len(reference.features) > p.background_size
        with own_random_state(p.seed):
            # shap scores the background here, once: an explanation then costs two predictor calls.
            explainer.fit(reference.features, summarise_background=summarise, n_background_samples=p.background_size)
        use_same_sums(explainer)
        self.fitted = FittedCopies(explainer, shared=(self.context.predict,))

    def explain(self, instances: Instances) -> Any:
        p = self.params
        with self.fitted.borrow() as explainer, own_random_state(p.seed):
            return explainer.explain(np.asarray(instances), nsamples=p.nsamples or "auto", l1_reg=self.l1_reg, silent=True)

    def _per_instance(self, explanation: Any) -> list[tuple[int, np.ndarray]]:
        """(predicted class, its SHAP values) for each instance."""
        predictions = np.asarray(explanation.data["raw"]["prediction"]).reshape(-1)
        shap_values = explanation.data["shap_values"]
        return [(int(k), np.asarray(shap_values[int(k)])[row]) for row, k in enumerate(predictions)]

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        names = self.reference.feature_names
        expected = np.asarray(explanation.data["expected_value"]).reshape(-1)
        return [
            f"class {k}: from the average {expected[k]:.3g}, the largest pushes were {top_contributions(names, values)}"
            for k, values in self._per_instance(explanation)
        ]

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        k, values = self._per_instance(explanation)[0]
        return pictures.attribution_bars(
            self.reference.feature_names, values, title=f"KernelSHAP values for class {k} (first instance)"
        )
