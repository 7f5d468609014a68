from __future__ import annotations

from typing import Any

import pytest

from glassbox_testing.samples import load_sample


@pytest.fixture
def credit_risk() -> dict[str, Any]:
    return load_sample("tabular-pytorch-gpu")
