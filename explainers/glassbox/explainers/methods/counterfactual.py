"""Counterfactuals, black-box over the predictor's API: the fewest features changed, in the data's distribution.

The search (`counterfactual_search`) changes one feature per predictor call to a value the target class's
nearest reference rows have, then reverts what the class does not need, and checks the answer against the
target class's reference rows. It needs no training and no TensorFlow, and sees the model only through
its predictions.

alibi's CounterfactualRL (PyTorch backend) can give the starting point instead (`search: cfrl`): it is
trained at load time and answers with one forward pass of its actor, but it decodes through an
autoencoder, so every feature moves a little (measured on the demo's model: a median of 28 of 30 features
changed by more than 0.05 standard deviations); the same revert and distribution steps follow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.contract.api import CounterfactualParameters, CounterfactualSearch, MethodType
from glassbox.explainers.data import pictures
from glassbox.explainers.methods import counterfactual_search
from glassbox.explainers.methods.base import ExplanationMethod, Instances
from glassbox.explainers.methods.counterfactual_search import ClassNeighbourhoods, Features, Goal, Scorer
from glassbox.explainers.serving.errors import InputError

# A feature counts as changed when it moved by more than this many of the reference data's standard deviations.
CHANGED = 0.05
# Reference rows the model scores at load time to group them by class (a seeded sample beyond).
MAX_FITTED_ROWS = 20_000


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
        p = self.params
        reference = self.reference
        unknown = [f for f in p.immutable_features or [] if f not in reference.feature_names]
        if unknown:
            raise RuntimeError(
                f"counterfactual.immutableFeatures names {unknown}, which are not features ({reference.feature_names})"
            )
        self.mean = reference.features.mean(axis=0)
        self.scale = reference.features.std(axis=0)
        self.scale[self.scale == 0] = 1.0
        immutable = [reference.feature_names.index(f) for f in p.immutable_features or []]
        mutable = np.ones(reference.width, dtype=bool)
        mutable[immutable] = False
        continuous = np.array([i not in reference.categorical_names for i in range(reference.width)])
        self.features = Features(mutable=mutable, continuous=continuous)
        rows = reference.features
        if len(rows) > MAX_FITTED_ROWS:
            rows = rows[np.sort(np.random.default_rng(p.seed).choice(len(rows), MAX_FITTED_ROWS, replace=False))]
        scores = np.asarray(self.context.predict(rows))
        self.classes = int(scores.shape[-1]) if scores.ndim == 2 else 1
        self.neighbourhoods = ClassNeighbourhoods(rows, scores.reshape(len(rows), -1).argmax(axis=1), self.scale, p.seed)
        self.cfrl = self._fit_cfrl(immutable) if p.search is CounterfactualSearch.cfrl else None

    def _fit_cfrl(self, immutable: list[int]) -> Any:
        from alibi.explainers import CounterfactualRL

        p = self.params
        features = self.reference.features
        encoder, decoder = _train_autoencoder((features - self.mean) / self.scale, p.latent_dim, p.seed)
        cfrl = CounterfactualRL(
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
        cfrl.fit(X=features)
        return cfrl

    def _standardise(self, X: np.ndarray) -> np.ndarray:
        return np.asarray((X - self.mean) / self.scale, dtype=np.float32)

    def _unstandardise(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(np.asarray(X) * self.scale + self.mean)

    def explain(self, instances: Instances) -> Any:
        """Towards the most likely other class for which a counterfactual is found."""
        return self._explain(np.asarray(instances, dtype=np.float64), None)

    def explain_towards(self, instances: Instances, targets: list[int]) -> Any:
        """Towards the class the request names for each instance; an instance already of it is its own answer."""
        reachable = sorted(self.neighbourhoods.classes)
        for target in targets:
            if not 0 <= target < self.classes:
                raise InputError(f"target {target} is not a class of this model: its classes are 0 to {self.classes - 1}")
            if target not in self.neighbourhoods.classes:
                raise InputError(
                    f"no reference row is of class {target} as the model predicts them, so a counterfactual "
                    f"for it could not be checked against that class's data; the classes with rows are {reachable}"
                )
        return self._explain(np.asarray(instances, dtype=np.float64), targets)

    def _explain(self, X: np.ndarray, wanted: list[int] | None) -> Any:
        from alibi.api.interfaces import Explanation

        if self.classes < 2:
            raise InputError("counterfactuals need a classifier that answers one score per class")
        scorer = Scorer(self.context.predict)
        scores = scorer.scores(X)
        starts = self._cfrl_starts(self.cfrl, X, scores, wanted) if self.cfrl is not None else [None] * len(X)
        found, targets = [], []
        for index, (x, row_scores, start) in enumerate(zip(X, scores, starts, strict=True)):
            counterfactual, target = self._search(x, row_scores, start, scorer, None if wanted is None else wanted[index])
            found.append(counterfactual)
            targets.append(target)
        counterfactuals = np.array(found)
        # The answer's classes are the predictor's for the counterfactuals as sent.
        classes = scorer.scores(counterfactuals).argmax(axis=1)
        moved = np.abs(counterfactuals - X) / self.scale
        # Judged against the class the predictor gives it (the target, unless only leaving the instance's class
        # was reachable), or the target's where that class has no reference rows.
        known = self.neighbourhoods.classes
        judged_as = [int(c) if int(c) in known else t for c, t in zip(classes, targets, strict=True)]
        names = self.reference.feature_names
        p = self.params
        return Explanation(
            meta={
                "name": "SparseCounterfactual" if self.cfrl is None else "CounterfactualRL+sparse",
                "type": ["blackbox"],
                "explanations": ["local"],
                "params": {
                    "search": p.search.value,
                    "targets_requested": wanted is not None,
                    "candidate_rows": p.candidate_rows,
                    "max_changed_features": p.max_changed_features,
                    "immutable_features": p.immutable_features or [],
                    "changed_above_standard_deviations": CHANGED,
                },
                "version": None,
            },
            data={
                "orig": {"X": X, "class": scores.argmax(axis=1).reshape(-1, 1)},
                "cf": {"X": counterfactuals, "class": classes.reshape(-1, 1)},
                "target": np.array(targets).reshape(-1, 1),
                "changed_features": [[names[i] for i in np.flatnonzero(row > CHANGED)] for row in moved],
                "distance_standard_deviations": moved.sum(axis=1),
                # Distance to the nearest reference row of the counterfactual's class over that class's typical
                # nearest-neighbour distance (95% of its rows are that close to another): at most 1 is in distribution.
                "distribution_ratio": np.array(
                    [self.neighbourhoods.distance_ratio(cf, c)[0] for cf, c in zip(counterfactuals, judged_as, strict=True)]
                ),
                "predictor_calls": scorer.calls,
            },
        )

    def _cfrl_starts(self, cfrl: Any, X: np.ndarray, scores: np.ndarray, wanted: list[int] | None) -> list[np.ndarray | None]:
        """CFRL's counterfactuals for the wanted classes (by default the runner-ups), as the search's starting points."""
        runner_up = np.argsort(-scores, axis=1, kind="stable")[:, 1]
        answer = cfrl.explain(X, Y_t=runner_up if wanted is None else np.array(wanted), batch_size=len(X))
        return list(np.asarray(answer.data["cf"]["X"], dtype=np.float64).reshape(X.shape))

    def _search(
        self, x: np.ndarray, scores: np.ndarray, start: np.ndarray | None, scorer: Scorer, wanted: int | None
    ) -> tuple[np.ndarray, int]:
        """With no `wanted` class: the counterfactual for the most likely other class one is found for; then
        one that only leaves the instance's class (where the other classes are tied with each other); where
        neither is found, the instance itself, for the runner-up class. With one: the counterfactual for it,
        else the instance itself (already of that class, or none found)."""
        predicted = int(np.argmax(scores))
        ranked = [int(c) for c in np.argsort(-scores, kind="stable") if int(c) != predicted]
        if wanted is not None:
            if wanted == predicted:
                return x.copy(), wanted
            ranked = [wanted]
        reachable = [c for c in ranked if c in self.neighbourhoods.classes]
        goals = [Goal(c) for c in reachable]
        if reachable and wanted is None:
            goals.append(Goal(reachable[0], leave=predicted))
        for goal in goals:
            counterfactual = counterfactual_search.search(
                x,
                goal,
                self.features,
                scorer,
                self.neighbourhoods,
                self.params.candidate_rows,
                self.params.max_changed_features,
                self.params.distribution_steps,
                start=start if goal is goals[0] else None,
            )
            if counterfactual is not None:
                return counterfactual, goal.target
        return x.copy(), ranked[0]

    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        data = explanation.data
        names = self.reference.feature_names
        lines = []
        for row in range(len(data["orig"]["X"])):
            x, x_cf = np.asarray(data["orig"]["X"][row]), np.asarray(data["cf"]["X"][row])
            before, after = int(data["orig"]["class"][row][0]), int(data["cf"]["class"][row][0])
            target = int(data["target"][row][0])
            if before == after == target:
                lines.append(f"class {before}: already the class asked for, nothing to change")
                continue
            if before == after:
                tried = f"to class {target}" if explanation.meta["params"].get("targets_requested") else "to another class"
                lines.append(f"class {before}: no counterfactual found (no change the search tried moved it {tried})")
                continue
            moved = np.abs(x_cf - x) / self.scale
            changed = [i for i in np.argsort(-moved, kind="stable") if moved[i] > CHANGED]
            moves = ", ".join(f"{names[i]} {x[i]:.3g} -> {x_cf[i]:.3g}" for i in changed)
            ratio = float(data["distribution_ratio"][row])
            lines.append(
                f"class {before} -> {after} by changing {len(changed)} of {len(x)} features: {moves or 'almost nothing'}; "
                f"{'within' if ratio <= 1 else 'outside'} class {after}'s reference data "
                f"(its nearest row {ratio:.2f}x the class's typical neighbour distance)"
            )
        return lines

    def picture(self, explanation: Any, instances: Instances) -> bytes:
        data = explanation.data
        x, x_cf = np.asarray(data["orig"]["X"][0]), np.asarray(data["cf"]["X"][0])
        before, after = int(data["orig"]["class"][0][0]), int(data["cf"]["class"][0][0])
        change = (x_cf - x) / self.scale
        changed = np.flatnonzero(np.abs(change) > CHANGED)
        names = self.reference.feature_names
        labels = [f"{names[i]}: {x[i]:.3g} -> {x_cf[i]:.3g}" for i in changed]
        return pictures.attribution_bars(
            labels or ["(no feature changed)"],
            change[changed] if len(changed) else np.zeros(1),
            title=f"Counterfactual: class {before} -> {after}, {len(changed)} of {len(x)} features changed\n"
            "(change in standard deviations of the reference data)",
        )
