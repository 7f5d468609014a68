"""One log format for kserve's lines and ours."""

from __future__ import annotations

import logging

import kserve


def configure_logging(log_config_file: str | None) -> None:
    kserve.logging.configure_logging(log_config_file)
    ours = logging.getLogger("glassbox")
    ours.handlers = list(logging.getLogger(kserve.logging.KSERVE_LOGGER_NAME).handlers)
    ours.setLevel(logging.INFO)
    ours.propagate = False
