"""The method table and the patches on other libraries: one method per type with the contract's parameters,
KernelSHAP's regularisation choices, and each process-wide patch against the release it was written for."""

from __future__ import annotations

import pytest

from glassbox.explainers.methods.kernel_shap import l1_regularisation


def test_l1_regularisation_choices() -> None:
    assert l1_regularisation("False") is False
    assert l1_regularisation("num_features(5)") == "num_features(5)"
    with pytest.raises(ValueError, match="not one of"):
        l1_regularisation("lasso")


def test_a_process_wide_patch_meets_the_version_it_was_written_for() -> None:
    """Some changes reach into other libraries' modules for the whole process (numpy's legacy random
    functions, alibi's beam class, kserve's app and InferRequest.from_bytes) or restate parts of their
    classes (alibi's tabular sampler and beam, shap's KernelExplainer.run). Each names the release it was
    written for; when an upgrade moves one, this fails, and the patch is read again before the pin moves."""
    from importlib.metadata import version

    from glassbox.explainers.methods import anchor_search, kernel_shap_sums, random_state
    from glassbox.explainers.serving import model_server as serving

    for module in (random_state, anchor_search, kernel_shap_sums, serving):
        package, release = module.WRITTEN_FOR
        installed = version(package)
        assert installed == release or installed.startswith(release + "."), (
            f"{module.__name__} patches {package} {release}, and {package} {installed} is installed: "
            f"read the patch against {package} {installed}, then update WRITTEN_FOR"
        )


def test_every_method_type_has_one_method_whose_parameters_are_the_contracts() -> None:
    """The data plane's registry against the contract's table: a MethodType without a method (or a method
    typed over another parameter model than the one the operator validates) fails here, not in a pod."""
    from typing import get_args

    from glassbox.contract.api import PARAMETER_MODEL_OF, MethodType
    from glassbox.explainers.methods import METHODS

    assert set(METHODS) == set(MethodType)
    for method_type, method in METHODS.items():
        generic_base = next(base for base in method.__orig_bases__ if get_args(base))  # type: ignore[attr-defined]
        assert get_args(generic_base) == (PARAMETER_MODEL_OF[method_type],), method.__name__
