"""Each explanation draws from its own random state.

alibi and shap draw from numpy's legacy global random state through the
module's functions (`np.random.seed`, `np.random.choice`, ...). Seeding that
state and explaining under one lock would make every explanation in the
process wait for the one before it. Instead, `install()` replaces those module
functions, once, with ones that draw from the calling thread's own
`RandomState` while an explanation runs there, and from the global state
otherwise. `RandomState(seed)` draws exactly what `np.random.seed(seed)`
followed by the module functions draws, so a seed gives alibi's answer
whatever else runs at the same time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

# Replaces functions of numpy's own module, process-wide: written for and checked against numpy 1.26
# (test_methods_table: a process-wide patch meets the version it was written for). Re-read it when numpy moves.
WRITTEN_FOR = ("numpy", "1.26")

_THREAD = threading.local()
_INSTALL = threading.Lock()
_installed = False


def _current() -> np.random.RandomState:
    state = getattr(_THREAD, "state", None)
    return state if state is not None else np.random.mtrand._rand


def _drawing_from_current(name: str) -> Callable[..., Any]:
    def draw(*args: Any, **kwargs: Any) -> Any:
        return getattr(_current(), name)(*args, **kwargs)

    draw.__name__ = draw.__qualname__ = name
    draw.__doc__ = getattr(np.random.RandomState, name).__doc__
    return draw


def legacy_function_names() -> list[str]:
    """The functions of `np.random` that draw from (or seed) the legacy global state."""
    return sorted(n for n in np.random.__all__ if hasattr(np.random.RandomState, n) and callable(getattr(np.random, n, None)))


def install() -> None:
    """Route numpy's legacy random functions through the calling thread's state (idempotent)."""
    global _installed
    with _INSTALL:
        if _installed:
            return
        for name in legacy_function_names():
            setattr(np.random, name, _drawing_from_current(name))
        _installed = True


@contextmanager
def own_random_state(seed: int | None) -> Iterator[np.random.RandomState]:
    """Within this block, this thread's `np.random.*` calls draw from a fresh RandomState(seed)."""
    install()
    previous = getattr(_THREAD, "state", None)
    _THREAD.state = np.random.RandomState(seed)
    try:
        yield _THREAD.state
    finally:
        _THREAD.state = previous
