"""A CycloneDX 1.5 bill of materials of the environment this Python runs in, on stdout.

Run inside an image (`make images` does, for each): every installed Python
distribution with its version, licence and package URL, and every Debian
package of the base with its version. Standard library only, so it runs in any
image with a Python.

    podman run --rm -i --network none --entrypoint python IMAGE - NAME VERSION < images/sbom.py
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import Distribution, distributions
from pathlib import Path

CLASSIFIER = "License :: "


def licence_of(dist: Distribution) -> str:
    """The licence a distribution declares: its SPDX expression, else its License field when that is a name
    (not the licence's text), else its licence classifiers; "unknown" when it declares none."""
    meta = dist.metadata
    expression = (meta.get("License-Expression") or "").strip()
    if expression:
        return expression
    field = (meta.get("License") or "").strip()
    if field and "\n" not in field and len(field) <= 100:
        return field
    classifiers = [c[len(CLASSIFIER) :].split(" :: ")[-1] for c in meta.get_all("Classifier") or [] if c.startswith(CLASSIFIER)]
    return " AND ".join(dict.fromkeys(classifiers)) if classifiers else "unknown"


def python_components() -> list[dict[str, object]]:
    seen: dict[str, dict[str, object]] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if not name or name.lower() in seen:
            continue
        licence = licence_of(dist)
        spdx_like = " AND " in licence or " WITH " in licence or " OR " in licence
        seen[name.lower()] = {
            "type": "library",
            "name": name,
            "version": dist.version,
            "purl": f"pkg:pypi/{name.lower().replace('_', '-')}@{dist.version}",
            "licenses": [{"expression": licence}] if spdx_like else [{"license": {"name": licence}}],
        }
    return sorted(seen.values(), key=lambda c: str(c["name"]).lower())


def debian_components(status: Path = Path("/var/lib/dpkg/status")) -> list[dict[str, object]]:
    """Installed Debian packages; their licences are in /usr/share/doc/PACKAGE/copyright (kept in the image)."""
    if not status.exists():
        return []
    components = []
    for stanza in status.read_text(errors="replace").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and not line.startswith(" "))
        if "Package" not in fields or "installed" not in fields.get("Status", ""):
            continue
        arch = fields.get("Architecture", "all")
        components.append(
            {
                "type": "library",
                "name": fields["Package"],
                "version": fields.get("Version", ""),
                "purl": f"pkg:deb/debian/{fields['Package']}@{fields.get('Version', '')}?arch={arch}",
                "licenses": [{"license": {"name": f"see /usr/share/doc/{fields['Package']}/copyright"}}],
            }
        )
    return sorted(components, key=lambda c: str(c["name"]))


def main(argv: list[str]) -> int:
    name, version = (argv + ["glassbox", "0"])[:2]
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {"component": {"type": "container", "name": name, "version": version}},
        "components": python_components() + debian_components(),
    }
    json.dump(bom, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
