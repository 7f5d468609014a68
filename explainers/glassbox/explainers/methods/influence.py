"""Training-data influence (white-box, alibi GradientSimilarity, PyTorch backend).

Which training rows mattered most for this prediction: the ones whose loss
gradients are most similar to the explained input's. The training rows'
gradients are computed once at load time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.contract.api import MethodType, TrainingDataInfluenceParameters
from glassbox.explainers.data import pictures
from glassbox.explainers.methods.base import ExplanationMethod, Instances


class _ProbabilityLoss:
    """Cross-entropy for a model that outputs probabilities (or, with `mse`, squared error)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __call__(self, output: Any, target: Any) -> Any:
        import torch

        if self.kind == "mse":
            return torch.nn.functional.mse_loss(output.reshape(target.shape).float(), target.float())
        probabilities = (
            output
            if output.min() >= 0 and torch.allclose(output.sum(dim=-1), torch.ones_like(output[..., 0]), atol=1e-3)
            else output.softmax(-1)
        )
        return torch.nn.functional.nll_loss(torch.log(probabilities.clamp_min(1e-12)), target.long().reshape(-1))


class TrainingDataInfluenceMethod(ExplanationMethod[TrainingDataInfluenceParameters]):
    method_type = MethodType.TrainingDataInfluence

    def fit(self) -> None:
        from alibi.explainers import GradientSimilarity

        reference = self.reference
        if reference.labels is None:
            raise RuntimeError("TrainingDataInfluence needs the training labels (referenceData.labelsUri or targetColumn)")
        if self.context.model is None:
            raise RuntimeError("TrainingDataInfluence needs the model artifact (--model_dir)")
        p = self.params
        self.explainer = GradientSimilarity(
            self.context.model,
            loss_fn=_ProbabilityLoss(p.loss),
            sim_fn=p.similarity.value,
            task="classification" if p.loss == "cross_entropy" else "regression",
            precompute_grads=True,
            backend="pytorch",
            device=self.context.device,
        )
        self.explainer.fit(
            reference.features.astype(np.float32), reference.labels.astype(np.int64 if p.loss == "cross_entropy" else np.float32)
        )

    def explain(self, instances: Instances) -> Any:
        import torch

        X = np.asarray(instances, dtype=np.float32)
        with torch.no_grad():
            outputs = self.context.model(torch.tensor(X, device=self.context.device))
        if self.params.loss == "cross_entropy":
            Y = outputs.argmax(dim=-1).cpu().numpy().astype(np.int64)
        else:
            Y = outputs.reshape(-1).cpu().numpy().astype(np.float32)
        explanation = self.explainer.explain(X, Y)
        # Keep the answer small: the top-k rows, not every training row.
        k = self.params.top_k
        data = explanation.data
        data["ordered_indices"] = np.asarray(data["ordered_indices"])[:, :k]
        data["scores"] = np.asarray(data["scores"])[:, :k]
        data["most_similar"] = np.asarray(data["most_similar"])[:, :k]
        data["least_similar"] = np.asarray(data["least_similar"])[:, :k]
        data["labels_of_most_similar"] = np.asarray(self.reference.labels)[data["ordered_indices"]]
        return explanation

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        data = explanation.data
        labels = np.asarray(self.reference.labels)
        lines = []
        for row in range(len(data["ordered_indices"])):
            tops = [
                f"#{int(i)} (score {float(s):.3g}, label {labels[int(i)]:g})"
                for i, s in zip(data["ordered_indices"][row], data["scores"][row], strict=True)
            ]
            lines.append("most influential training rows: " + ", ".join(tops))
        return lines

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        data = explanation.data
        labels = np.asarray(self.reference.labels)
        names = [f"#{int(i)} (label {labels[int(i)]:g})" for i in data["ordered_indices"][0]]
        return pictures.attribution_bars(names, np.asarray(data["scores"][0]), title="Most influential training rows", sort=False)
