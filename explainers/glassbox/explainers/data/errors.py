"""What goes wrong loading: a file not where its URI says, an unreadable model artifact, reference
rows the method cannot use. Each message says what was expected; the servers stop at start-up with it."""

from __future__ import annotations


class StorageError(RuntimeError):
    """A file could not be fetched from its URI; the message names the URI and what would be right."""


class ArtifactError(RuntimeError):
    """The model artifact is missing or unreadable; the message says what was expected."""


class ReferenceDataError(ValueError):
    """Reference rows that cannot be read or do not fit the model; the message says what would."""
