"""What goes wrong with records: the store (down, full, locked, a schema from a newer explainer), and a
query a client may not make (the message says what it may)."""

from __future__ import annotations

from glassbox.explainers.serving.errors import InputError


class RecordStoreError(RuntimeError):
    """The store could not be read or written; explanations are still answered unless records are strict."""


class RecordQueryError(InputError):
    """A malformed record id, a record of another model, or a query past its limits (4xx, naming which)."""
