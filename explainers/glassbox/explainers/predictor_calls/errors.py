"""What goes wrong calling the predictor: the predictor itself (down, slow, refusing, answering garbage),
or the explanation's deadline, as the exception that ends its work: raised by whatever finds the deadline
passed (a predictor call, a shared call it waits for, the worker about to start, the wait for a worker),
caught where the explanation is answered (504)."""

from __future__ import annotations


class PastDeadline(RuntimeError):
    """The explanation ran past its deadline: its predictor calls are cut off and its worker thread stops.
    `cause` says where it was found, when that is known."""

    def __init__(self, cause: str | None = None):
        super().__init__(cause or "past the deadline")
        self.cause = cause


class PredictorError(RuntimeError):
    """The predictor is down, slow, refused the call, or answered garbage; `status` is what the explainer answers,
    `down` whether the predictor could not be reached, was not ready or did not answer in time (rather than
    refusing this call's input or answering it wrongly)."""

    def __init__(self, message: str, status: int = 502, down: bool = False):
        super().__init__(message)
        self.status = status
        self.down = down


class CallPastDeadline(TimeoutError):
    """One HTTP call's deadline came before its whole answer did (a TimeoutError: the caller decides
    whether that is the explanation's PastDeadline or a predictor too slow for its own timeout)."""
