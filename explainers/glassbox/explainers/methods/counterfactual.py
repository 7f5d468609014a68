"""Counterfactuals by reinforcement learning (alibi CFRL, PyTorch backend).

Why CFRL: it needs no TensorFlow, sees the model only through its predictions
(so it works black-box, over the predictor's API), and after one training at
load time it answers each request with a single forward pass of its actor, in
milliseconds. It searches in the latent space of an autoencoder fitted on the
reference data, which keeps counterfactuals close to the data distribution.
Gradient-based counterfactual methods would need the model's weights; the
prototype-guided and plain counterfactual methods of alibi need TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.contract.api import CounterfactualParameters, MethodType
from glassbox.explainers import pictures
from glassbox.explainers.methods.base import ExplanationMethod, Instances
from glassbox.explainers.payloads import InputError


def _train_autoencoder(features: np.ndarray, latent_dim: int, seed: int, steps: int = 1500) -> tuple[Any, Any]:
    """A small autoencoder on standardised reference rows; its latent space is where CFRL searches."""
    import torch

    torch.manual_seed(seed)
    width = features.shape[1]
    hidden = max(16, 2 * width)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, latent_dim), torch.nn.Tanh()
    )
    decoder = torch.nn.Sequential(torch.nn.Linear(latent_dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, width))
    data = torch.tensor(features, dtype=torch.float32)
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = data[torch.randint(0, len(data), (min(128, len(data)),), generator=generator)]
        loss = torch.nn.functional.mse_loss(decoder(encoder(batch)), batch)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return encoder.eval(), decoder.eval()


class _KeepImmutable:
    """CFRL post-processing: immutable features keep the original's values."""

    def __init__(self, columns: list[int]):
        self.columns = columns

    def __call__(self, X_cf: Any, X: np.ndarray, C: Any) -> Any:
        X_cf = np.array(X_cf, copy=True)
        X_cf[:, self.columns] = X[:, self.columns]
        return X_cf


class CounterfactualMethod(ExplanationMethod[CounterfactualParameters]):
    method_type = MethodType.Counterfactual

    def fit(self) -> None:
        from alibi.explainers import CounterfactualRL

        p = self.params
        reference = self.reference
        self.mean = reference.features.mean(axis=0)
        self.scale = reference.features.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        unknown = [f for f in p.immutable_features or [] if f not in reference.feature_names]
        if unknown:
            raise RuntimeError(
                f"counterfactual.immutableFeatures names {unknown}, which are not features ({reference.feature_names})"
            )
        immutable = [reference.feature_names.index(f) for f in p.immutable_features or []]
        encoder, decoder = _train_autoencoder((reference.features - self.mean) / self.scale, p.latent_dim, p.seed)
        self.explainer = CounterfactualRL(
            predictor=self.context.predict,
            encoder=encoder,
            decoder=decoder,
            latent_dim=p.latent_dim,
            coeff_sparsity=p.coeff_sparsity,
            coeff_consistency=p.coeff_consistency,
            train_steps=p.train_steps,
            batch_size=100,
            num_workers=0,
            backend="pytorch",
            seed=p.seed,
            encoder_preprocessor=self._standardise,
            decoder_inv_preprocessor=self._unstandardise,
            postprocessing_funcs=[_KeepImmutable(immutable)] if immutable else [],
        )
        self.explainer.fit(X=reference.features)
        self.classes = int(np.asarray(self.context.predict(reference.features[:1])).shape[-1])

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mean) / self.scale, dtype=np.float32)

    def _unstandardise(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(X) * self.scale + self.mean)

    def explain(self, instances: Instances) -> Any:
        X = np.asarray(instances, dtype=np.float64)
        if self.classes < 2:
            raise InputError("counterfactuals need a classifier that answers one score per class")
        scores = np.asarray(self.context.predict(X))
        # The target is the most likely other class.
        ranked = np.argsort(-scores, axis=1)
        targets = ranked[:, 1]
        return self.explainer.explain(X, Y_t=targets, batch_size=len(X))

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        names = self.reference.feature_names
        original, counterfactual = explanation.data["orig"], explanation.data["cf"]
        lines = []
        for row in range(len(original["X"])):
            x, x_cf = np.asarray(original["X"][row]), np.asarray(counterfactual["X"][row])
            moved = np.abs(x_cf - x) / self.scale
            changes = [f"{names[i]} {x[i]:.3g} -> {x_cf[i]:.3g}" for i in np.argsort(-moved)[:3] if moved[i] > 0.05]
            before, after = (
                int(np.asarray(original["class"]).reshape(-1)[row]),
                int(np.asarray(counterfactual["class"]).reshape(-1)[row]),
            )
            verdict = "" if before != after else " (the class did not change: no valid counterfactual found)"
            lines.append(f"class {before} -> {after} by changing {', '.join(changes) or 'almost nothing'}{verdict}")
        return lines

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        x = np.asarray(explanation.data["orig"]["X"][0])
        x_cf = np.asarray(explanation.data["cf"]["X"][0])
        before = int(np.asarray(explanation.data["orig"]["class"]).reshape(-1)[0])
        after = int(np.asarray(explanation.data["cf"]["class"]).reshape(-1)[0])
        return pictures.attribution_bars(
            self.reference.feature_names,
            (x_cf - x) / self.scale,
            title=f"Counterfactual: class {before} -> {after} (change in standard deviations)",
        )
