"""Each image's bill of materials (build/sbom/, written by `make images` from the image's own environment)
names exactly what its lock pinned, at the pinned versions, and the licence a reviewer must read first."""

from __future__ import annotations

import json
import re

import pytest

from glassbox_testing.cluster import REPO

from .conftest import require_image, tag

IMAGES = {
    "operator": ("operator", "", "operator/requirements.lock"),
    "explainer": ("explainer", "", "explainers/requirements-explainer.lock"),
    # the predictor image is the explainer image's environment
    "predictor": ("predictor", "", "explainers/requirements-explainer.lock"),
    "explainer-cpu": ("explainer", "-cpu", "explainers/requirements-explainer-cpu.lock"),
    "predictor-cpu": ("predictor", "-cpu", "explainers/requirements-explainer-cpu.lock"),
}


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("image", list(IMAGES))
def test_the_bill_of_materials_holds_the_locks_packages_and_names_the_licences(image: str) -> None:
    name, suffix, lock = IMAGES[image]
    require_image(tag(name, suffix))
    path = REPO / "build" / "sbom" / f"glassbox-{image}.cdx.json"
    assert path.exists(), f"{path} is missing: make images writes it"
    bom = json.loads(path.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["metadata"]["component"]["name"] == f"glassbox-{image}"
    installed = {normal(c["name"]): c for c in bom["components"] if c["purl"].startswith("pkg:pypi/")}
    pinned = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", (REPO / lock).read_text(), re.M))
    missing = {n: v for n, v in pinned.items() if installed.get(normal(n), {}).get("version") != v}
    assert not missing, f"{image}: the image lacks these pins of {lock} (or has other versions): {missing}"
    assert "glassbox" in installed and "pip" not in installed, sorted(installed)
    extra = set(installed) - {normal(n) for n in pinned} - {"glassbox"}
    assert not extra, f"{image}: installed beyond its lock: {extra}"
    if name != "operator":
        alibi = installed["alibi"]
        assert alibi["licenses"] == [{"license": {"name": "Business Source License 1.1"}}], alibi
