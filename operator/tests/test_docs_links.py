"""The documentation holds together (`make lint` runs this): every relative link in the README, `docs/`
and the other Markdown pages names a file that exists and, with a `#fragment`, a heading in it; and the
README stays an entry point, short enough to read first.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glassbox_testing.samples import REPO

# Not the project's pages: hidden folders (caches, virtual environments) and build output.
SKIPPED_FOLDERS = {"build", "node_modules"}
README_MOST_LINES = 250
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$")


def pages() -> list[Path]:
    return sorted(
        path
        for path in REPO.rglob("*.md")
        if not any(part.startswith(".") or part in SKIPPED_FOLDERS for part in path.relative_to(REPO).parts)
    )


def prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (a `#` there is a comment, a `](` a string)."""
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchor(heading: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {anchor(found.group(1)) for line in prose(page.read_text()) if (found := HEADING.match(line))}


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    broken = []
    for number, line in enumerate(prose(page.read_text()), start=1):
        for target in LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(root)} (prose line {number}): {target}"
            if not linked.exists():
                broken.append(f"{where}: no file {linked.relative_to(root) if linked.is_relative_to(root) else linked}")
            elif fragment and linked.suffix == ".md" and fragment not in anchors(linked):
                broken.append(f"{where}: {linked.name} has no heading whose anchor is #{fragment}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_names_a_file_and_heading_that_exist(page: Path) -> None:
    broken = broken_links(page)
    assert not broken, "broken links (fix the path, or the #fragment to a heading's anchor):\n" + "\n".join(broken)


def test_the_pages_are_found() -> None:
    found = {str(page.relative_to(REPO)) for page in pages()}
    assert {"README.md", "bench/README.md", "docs/calling.md", "docs/development.md"} <= found


def test_the_checker_sees_a_missing_file_and_a_missing_heading(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other\n\n## A section\n")
    page.write_text(
        "# Page\n\n[fine](other.md#a-section) [here](#page) [gone](missing.md) [no such](other.md#nowhere)\n"
        "```sh\n# a comment, not a heading; [not](a-link.md)\n```\n[site](https://example.org/x)\n"
    )
    broken = broken_links(page, root=tmp_path)
    assert len(broken) == 2 and "missing.md" in broken[0] and "#nowhere" in broken[1], broken


def test_the_readme_is_an_entry_point() -> None:
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= README_MOST_LINES, (
        f"README.md has {lines} lines; keep it an entry point of at most {README_MOST_LINES} "
        "(what it is, the two commands, local mode, installing, a short layout) and move the rest to docs/"
    )
