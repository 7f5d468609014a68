"""Explanation methods: one small class per method, found through `METHODS`.

Adding a method touches one file here and one test.
"""

from __future__ import annotations

from glassbox.contract.api import MethodType
from glassbox.explainers.methods.anchors import AnchorImageMethod, AnchorTabularMethod, AnchorTextMethod
from glassbox.explainers.methods.base import ExplanationMethod, MethodContext
from glassbox.explainers.methods.counterfactual import CounterfactualMethod
from glassbox.explainers.methods.influence import TrainingDataInfluenceMethod
from glassbox.explainers.methods.integrated_gradients import IntegratedGradientsMethod
from glassbox.explainers.methods.kernel_shap import KernelShapMethod

METHODS: dict[MethodType, type[ExplanationMethod]] = {
    cls.method_type: cls
    for cls in (
        AnchorTabularMethod,
        AnchorTextMethod,
        AnchorImageMethod,
        KernelShapMethod,
        CounterfactualMethod,
        IntegratedGradientsMethod,
        TrainingDataInfluenceMethod,
    )
}

__all__ = ["METHODS", "ExplanationMethod", "MethodContext"]
