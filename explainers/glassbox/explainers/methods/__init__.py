"""Explanation methods: one small class per method, found through `METHODS`.

Adding a method: in the contract (`glassbox.contract.api`, which the operator validates parameters with
and which imports neither plane), its `MethodType` value, its parameter model, its block on `MethodSpec`
and its `METHOD_PARAMETERS` line; here, its module (a class generic over that parameter model) and its
line below; then `make crds` regenerates the CRD, and its test. Tests check that both tables cover every
MethodType and that MethodSpec holds exactly the blocks the table names.
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
