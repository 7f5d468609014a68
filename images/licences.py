"""The licence summary of the images' bills of materials (build/sbom/*.cdx.json, written by `make images`).

    python3 images/licences.py build/sbom/*.cdx.json

For each image: how many Python packages under each licence, and, by name, every
package whose licence is not a common permissive one (source-available, copyleft,
proprietary or undeclared), so that a reviewer reads those first.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

PERMISSIVE = re.compile(
    r"^(MIT|BSD|Apache|PSF|Python Software Foundation|ISC|Zlib|zlib|Unlicense|CC0|HPND|Historical Permission|"
    r"Boost|BSL-1\.0|NCSA|UPL|MIT-CMU|0BSD|3-Clause BSD|Academic Free|The Unlicense|Public Domain)",
    re.IGNORECASE,
)


def licence(component: dict[str, object]) -> str:
    entry = (component.get("licenses") or [{}])[0]  # type: ignore[index]
    return str(entry.get("expression") or (entry.get("license") or {}).get("name") or "unknown")


# Common spellings of the same licences in package metadata, as SPDX names.
SPELLINGS = {
    "mit license": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache": "Apache-2.0",
    "apache software license": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache 2.0 license": "Apache-2.0",
    "bsd license": "BSD",
    "3-clause bsd license": "BSD-3-Clause",
    "isc license": "ISC",
    "python software foundation license": "PSF-2.0",
}


def spdx(name: str) -> str:
    return SPELLINGS.get(name.strip().lower(), name.strip())


def needs_review(name: str) -> bool:
    """Whether a licence is outside the common permissive ones. An SPDX expression is read as such: OR passes
    when either side does, AND when both do, and an exception (LLVM's) keeps its licence's verdict."""
    keyword = r"(?:AND|OR|WITH)\b"
    tokens = re.findall(rf"\(|\)|{keyword}|(?!{keyword})[^\s()]+(?:\s+(?!{keyword})[^\s()]+)*", name)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def factor() -> bool:
        if peek() == "(":
            take()
            verdict = expression()
            if peek() == ")":
                take()
            return verdict
        verdict = bool(PERMISSIVE.match(take())) if peek() is not None else False
        if peek() == "WITH":
            take(), take()
        return verdict

    def term() -> bool:
        verdict = factor()
        while peek() == "AND":
            take()
            verdict = factor() and verdict
        return verdict

    def expression() -> bool:
        verdict = term()
        while peek() == "OR":
            take()
            verdict = term() or verdict
        return verdict

    return not expression()


def summary(path: Path) -> list[str]:
    bom = json.loads(path.read_text())
    python = [c for c in bom["components"] if str(c.get("purl", "")).startswith("pkg:pypi/")]
    debian = [c for c in bom["components"] if str(c.get("purl", "")).startswith("pkg:deb/")]
    counts = Counter(spdx(licence(c)) for c in python)
    name = bom["metadata"]["component"]["name"]
    lines = [f"{name}: {len(python)} Python packages, {len(debian)} Debian packages (licences in /usr/share/doc/*/copyright)"]
    common = ", ".join(f"{n} {k}" for k, n in counts.most_common() if not needs_review(k))
    lines.append(f"  permissive: {common}")
    for component in python:
        if needs_review(licence(component)):
            lines.append(f"  review: {component['name']} {component['version']}: {licence(component)}")
    return lines


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        print("\n".join(summary(Path(argument))))
