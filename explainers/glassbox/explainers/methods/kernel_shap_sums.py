"""shap's KernelSHAP with its background averages summed at once, to the same bits.

For each coalition shap averages the model's scores over the background rows
one row at a time in Python: with 50 background rows and about 2,000
coalitions, 100,000 small numpy operations per explanation, on the models of
the family bench about as long as the forward passes themselves. Here the sum
runs once per background row over all coalitions, adding the same products
in the same order (row 0's first, each product rounded before its sum), so
every SHAP value is shap's to the bit (test_kernel_shap_sums checks whole explanations).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from alibi.explainers.shap_wrappers import KernelExplainerWrapper

# Subclasses shap's KernelExplainer (through alibi's wrapper) and restates its `run`: written for and checked
# against shap 0.43 (test_methods_table: a process-wide patch meets the version it was written for).
WRITTEN_FOR = ("shap", "0.43")


class SameSumsKernelExplainer(KernelExplainerWrapper):  # type: ignore[misc]
    nsamplesRun: int  # coalitions scored so far (shap's names)
    nsamplesAdded: int  # coalitions added so far

    def run(self) -> None:
        """Scores the coalitions added since the last run and averages each one's scores over the background."""
        first, last, rows = self.nsamplesRun, self.nsamplesAdded, self.N
        if self.keep_index or last == first:
            super().run()  # indexed (pandas) background data: shap's own way
            return
        scores = self.model.f(self.synth_data[first * rows : last * rows, :])
        if hasattr(scores, "values"):  # a DataFrame or Series
            scores = scores.values
        self.y[first * rows : last * rows, :] = np.reshape(scores, ((last - first) * rows, self.D))
        by_row = self.y[first * rows : last * rows, :].reshape(last - first, rows, self.D)
        expected = np.zeros((last - first, self.D))
        for row in range(rows):
            expected += by_row[:, row, :] * self.data.weights[row]
        self.ey[first:last, :] = expected
        self.nsamplesRun = last


def use_same_sums(explainer: Any) -> None:
    """Makes a fitted alibi KernelShap's shap explainer a SameSumsKernelExplainer (it keeps its fitted state)."""
    shap_explainer = explainer._explainer
    if type(shap_explainer) is not KernelExplainerWrapper:
        raise TypeError(f"expected alibi's KernelExplainerWrapper, got {type(shap_explainer).__name__}")
    shap_explainer.__class__ = SameSumsKernelExplainer
