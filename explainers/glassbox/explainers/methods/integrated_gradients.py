"""Integrated Gradients (white-box, captum): the path integral of gradients from a baseline to the input.

It needs the model's weights, so the explainer loads the same artifact as the
predictor and runs it beside them (on a GPU when the explainer has one). The
answer is in alibi's IntegratedGradients Explanation shape.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from glassbox.contract.api import IntegratedGradientsParameters, MethodType
from glassbox.explainers.data import pictures
from glassbox.explainers.methods.base import ExplanationMethod, Instances, top_contributions


class IntegratedGradientsMethod(ExplanationMethod[IntegratedGradientsParameters]):
    method_type = MethodType.IntegratedGradients

    def fit(self) -> None:
        if self.context.model is None:
            raise RuntimeError("IntegratedGradients needs the model artifact (--model_dir)")
        mean = self.context.reference.features.mean(axis=0) if self.context.reference is not None else None
        if self.params.baseline == "mean" and mean is None:
            raise RuntimeError("integratedGradients.baseline 'mean' needs reference data")
        self.mean = mean

    def _tensor(self, instances: Instances) -> Any:
        import torch

        if isinstance(instances, list):
            if self.context.tokenizer is None:
                raise RuntimeError("text instances need the model's tokenizer.json")
            array = self.context.tokenizer.encode(instances)
        else:
            array = np.asarray(instances, dtype=np.float32)
        return torch.tensor(array, dtype=torch.float32, device=self.context.device)

    def explain(self, instances: Instances) -> Any:
        import torch
        from alibi.api.defaults import DEFAULT_DATA_INTGRAD, DEFAULT_META_INTGRAD
        from alibi.api.interfaces import Explanation
        from captum.attr import IntegratedGradients

        p = self.params
        model = self.context.model
        inputs = self._tensor(instances)
        if p.baseline == "mean" and self.mean is not None:
            baselines = torch.tensor(np.broadcast_to(self.mean, inputs.shape).copy(), dtype=torch.float32, device=inputs.device)
        else:
            baselines = torch.zeros_like(inputs)
        with torch.no_grad():
            outputs = model(inputs)
            baseline_outputs = model(baselines)
        targets = outputs.argmax(dim=1)
        attributions, deltas = IntegratedGradients(model).attribute(
            inputs,
            baselines=baselines,
            target=targets,
            n_steps=p.n_steps,
            method=p.method.value,
            internal_batch_size=p.internal_batch_size,
            return_convergence_delta=True,
        )
        rows = torch.arange(len(targets), device=targets.device)
        meta = copy.deepcopy(DEFAULT_META_INTGRAD)
        meta["name"] = "IntegratedGradients"
        meta["params"].update(
            n_steps=p.n_steps, method=p.method.value, internal_batch_size=p.internal_batch_size, baseline=p.baseline
        )
        data = copy.deepcopy(DEFAULT_DATA_INTGRAD)
        data.update(
            attributions=[attributions.detach().cpu().numpy()],
            X=inputs.cpu().numpy(),
            baselines=[baselines.cpu().numpy()],
            predictions=outputs.detach().cpu().numpy(),
            deltas=deltas.detach().cpu().numpy(),
            target=targets.cpu().numpy().tolist(),
            # f(x) - f(baseline) for the target class: what the attributions sum to (completeness).
            output_differences=(outputs[rows, targets] - baseline_outputs[rows, targets]).detach().cpu().numpy(),
        )
        return Explanation(meta=meta, data=data)

    def _names(self, width: int) -> list[str]:
        if self.context.reference is not None and self.context.reference.width == width:
            return self.context.reference.feature_names
        if self.context.tokenizer is not None and len(self.context.tokenizer.vocabulary) == width:
            by_index = {i: w for w, i in self.context.tokenizer.vocabulary.items()}
            return [by_index[i] for i in range(width)]
        return [f"f{i}" for i in range(width)]

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        attributions = np.asarray(explanation.data["attributions"][0])
        flat = attributions.reshape(len(attributions), -1)
        names = self._names(flat.shape[1])
        lines = []
        for row, target in enumerate(explanation.data["target"]):
            total = float(flat[row].sum())
            difference = float(explanation.data["output_differences"][row])
            lines.append(
                f"class {target}: {top_contributions(names, flat[row])}; attributions sum to {total:.4g} "
                f"= f(x) - f(baseline) {difference:.4g}"
            )
        return lines

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        attributions = np.asarray(explanation.data["attributions"][0])[0]
        target = explanation.data["target"][0]
        if attributions.ndim >= 2:  # an image: a heat map of |attribution| over it
            image = np.asarray(explanation.data["X"])[0]
            heat = np.abs(attributions).sum(axis=-1) if attributions.ndim == 3 else np.abs(attributions)
            return pictures.image_overlay(image, heat / (heat.max() or 1.0), title=f"Integrated Gradients for class {target}")
        if isinstance(instances, list):
            names = self._names(len(attributions))
            weights = {names[i]: float(attributions[i]) for i in np.flatnonzero(attributions)}
            return pictures.highlighted_words(str(instances[0]), weights, title=f"Integrated Gradients for class {target}")
        return pictures.attribution_bars(
            self._names(len(attributions)), attributions, title=f"Integrated Gradients for class {target} (first instance)"
        )
