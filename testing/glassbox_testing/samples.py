"""The sample manifests in crds/samples, for the operator's unit tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "crds" / "samples").glob("*.yaml"))


def load_sample(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "crds" / "samples" / f"{name}.yaml").read_text()))
