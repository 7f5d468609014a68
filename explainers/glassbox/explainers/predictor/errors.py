"""The predictor's own refusals, beside the ones every server shares (glassbox.explainers.serving.errors)."""

from __future__ import annotations

from glassbox.explainers.serving.errors import InputError


class ShapeMismatch(InputError):
    """The instances' shape is not the one the model takes (400, naming both)."""


class Overloaded(Exception):
    """The queue holds as many rows as it may: the caller should answer 503 and ask the client to retry."""
