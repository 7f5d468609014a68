"""What every explanation method is: fitted at load time, then asked to explain.

Methods are blocking (alibi's code is): the server runs them in worker threads.
Black-box methods see the model only through `context.predict`, which calls
the predictor's API; white-box methods get the model's weights in
`context.model`.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar, cast

import numpy as np

from glassbox.contract.api import PARAMETER_FIELD_OF, PARAMETER_MODEL_OF, ApiModel, MethodSpec, MethodType
from glassbox.explainers.data.reference_data import ReferenceTable
from glassbox.explainers.serving.errors import InputError

Predict = Callable[[Any], np.ndarray]
Instances = np.ndarray | list[str]
# A method's parameter model (AnchorTabularParameters, ...): `self.params` is typed by it.
Params = TypeVar("Params", bound=ApiModel)


class FittedCopies:
    """Fitted alibi explainers keep the explanation in progress on themselves
    (the instance's label, the beam search, shap's coalition matrix), so two
    explanations must not share one. Each concurrent explanation borrows its
    own copy, deep-copied from the fitted original on first need and reused
    after; the objects in `shared` (the predictor's client, a spaCy pipeline) are
    shared by all copies, not copied."""

    def __init__(self, fitted: Any, shared: tuple[Any, ...] = ()):
        self._fitted = fitted  # never lent: copies are made from it
        self._shared = shared
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[Any]:
        with self._lock:
            explainer = self._idle.pop() if self._idle else None
        if explainer is None:
            explainer = copy.deepcopy(self._fitted, memo={id(o): o for o in self._shared})
        try:
            yield explainer
        finally:
            with self._lock:
                self._idle.append(explainer)


@dataclass
class MethodContext:
    """What a method may use: the predictor's API, reference data, and (white-box) the model."""

    predict: Predict
    reference: ReferenceTable | None = None
    model: Any = None  # a torch module, for white-box methods
    device: str = "cpu"
    tokenizer: Any = None  # glassbox.explainers.data.torch_artifacts.Tokenizer, for text models


class ExplanationMethod(ABC, Generic[Params]):
    method_type: ClassVar[MethodType]
    # Most instances one request may ask to explain.
    max_instances: ClassVar[int] = 64
    takes_text: ClassVar[bool] = False

    def __init__(self, spec: MethodSpec, context: MethodContext):
        self.spec = spec
        self.context = context
        block = getattr(spec, PARAMETER_FIELD_OF[self.method_type])
        # The method's parameters, with their defaults when the spec gives none.
        self.params = cast(Params, block if block is not None else PARAMETER_MODEL_OF[self.method_type]())

    @property
    def name(self) -> str:
        return self.spec.effective_name

    @property
    def reference(self) -> ReferenceTable:
        if self.context.reference is None:
            raise RuntimeError(f"{self.method_type.value} needs reference data")
        return self.context.reference

    @abstractmethod
    def fit(self) -> None:
        """Load-time work: fit on reference data, precompute what can be."""

    @abstractmethod
    def explain(self, instances: Instances) -> Any:
        """An alibi `Explanation` for these instances (blocking)."""

    def explain_towards(self, instances: Instances, targets: list[int]) -> Any:
        """An explanation towards the class named for each instance (a request's `target`): counterfactuals only."""
        raise InputError(
            f"'target' names the class a counterfactual should reach; {self.name} is {self.method_type.value}, "
            "which takes none: leave 'target' out, or ask a Counterfactual method"
        )

    @abstractmethod
    def summarize(self, explanation: Any, instances: Instances) -> list[str]:
        """One sentence per instance, for people."""

    @abstractmethod
    def picture(self, explanation: Any, instances: Instances) -> bytes:
        """A PNG of the explanation."""

    # ------------------------------------------------------------------ input checks

    def check_instances(self, instances: Instances) -> Instances:
        """The instances this method can explain, or an InputError naming what is wrong."""
        if len(instances) > self.max_instances:
            raise InputError(
                f"{self.name} explains at most {self.max_instances} instance{'s' if self.max_instances > 1 else ''} "
                f"per request; got {len(instances)}: send them in separate requests",
                413,
            )
        if self.takes_text:
            if not isinstance(instances, list):
                raise InputError(f"{self.name} explains text: send instances as strings")
            return instances
        if isinstance(instances, list):
            raise InputError(f"{self.name} explains numeric instances, not strings")
        if self.context.reference is None:
            return instances
        expected = self.reference.features.shape[1:]
        if len(expected) == 1:
            if instances.ndim != 2:
                raise InputError(f"instances must be rows of {self.reference.width} numbers; got shape {list(instances.shape)}")
            if instances.shape[1] != self.reference.width:
                names = ", ".join(self.reference.feature_names[:6]) + (", ..." if self.reference.width > 6 else "")
                raise InputError(f"each instance must have {self.reference.width} features ({names}); got {instances.shape[1]}")
        elif instances.shape[1:] != expected:
            raise InputError(
                f"each instance must have shape {list(expected)} like the reference data; got {list(instances.shape[1:])}"
            )
        return instances


def top_contributions(names: list[str], values: np.ndarray, count: int = 3) -> str:
    """'f0 +0.31, f4 -0.12, f2 +0.05': the largest contributions by size."""
    order = np.argsort(-np.abs(values))[:count]
    return ", ".join(f"{names[i]} {values[i]:+.3g}" for i in order)
