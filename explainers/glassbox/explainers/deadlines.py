"""An explanation's deadline, as the exception that ends its work: raised by whatever finds the deadline
passed (a predictor call, a shared call it waits for, the worker about to start), caught where the
explanation is answered (504)."""

from __future__ import annotations


class ExplanationCancelled(RuntimeError):
    """The explanation ran past its deadline: its predictor calls are cut off and its worker thread stops."""
