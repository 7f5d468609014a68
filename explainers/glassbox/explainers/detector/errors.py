"""What goes wrong fitting the detector (answered at start-up, before the detector reports ready)."""

from __future__ import annotations


class DetectorFitError(ValueError):
    """The reference data cannot give the detector the user asked for; the message says what would."""
