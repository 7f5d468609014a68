"""The architecture the build enforces (`make lint` runs this): the planes meet only in glassbox.contract.

The operator never imports the data plane, the data plane never imports the operator, the contract
imports neither; only the CLI, local mode and the demo see both. Every module says what it is for in its
first line, and the wheel holds every package in the source roots. Read from the source with `ast`, so a
lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from glassbox_testing.samples import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
ROOTS = {package: REPO / folder for package, folder in PYPROJECT["tool"]["setuptools"]["package-dir"].items()}
# Who may not import whom: a module under the key may import nothing under these prefixes.
FORBIDDEN = {
    "glassbox.explainers": ("glassbox.operator", "glassbox.cli", "glassbox.local", "glassbox.demo"),
    "glassbox.operator": ("glassbox.explainers", "glassbox.cli", "glassbox.local", "glassbox.demo"),
    "glassbox.contract": ("glassbox.operator", "glassbox.explainers", "glassbox.cli", "glassbox.local", "glassbox.demo"),
}


def modules() -> dict[str, Path]:
    """Every module of the `glassbox` package, by dotted name, wherever its source root puts it."""
    found: dict[str, Path] = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts))
            found[name.removesuffix(".__init__")] = path
    return found


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_planes_meet_only_in_the_contract() -> None:
    broken = []
    for name, path in sorted(modules().items()):
        for layer, forbidden in FORBIDDEN.items():
            if name == layer or name.startswith(layer + "."):
                for target in sorted(imported(path)):
                    if any(target == f or target.startswith(f + ".") for f in forbidden):
                        broken.append(f"{name} imports {target}")
    assert not broken, "imports across the planes (move what both need into glassbox.contract):\n" + "\n".join(broken)


# The data plane's rooms, top floor first: a room may import only the rooms after it (and the contract),
# so no import runs back up and no two rooms import each other.
DATA_PLANE_ROOMS = ("predictor", "explainer", "methods", "predictor_calls", "detector", "records", "data", "serving")


def room_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["glassbox", "explainers"] else None


def test_each_room_of_the_data_plane_imports_only_the_rooms_below_it() -> None:
    rooms = {room_of(name) for name in modules()} - {None}
    assert rooms == set(DATA_PLANE_ROOMS), f"rooms of glassbox.explainers {sorted(rooms)}: list each in DATA_PLANE_ROOMS"
    broken = []
    for name, path in sorted(modules().items()):
        room = room_of(name)
        if room is None:
            continue
        below = DATA_PLANE_ROOMS[DATA_PLANE_ROOMS.index(room) + 1 :]
        for target in sorted(imported(path)):
            other = room_of(target)
            if other is not None and other != room and other not in below:
                broken.append(f"{name} imports {target}: {other} is not below {room}")
    assert not broken, (
        "imports running back up between the data plane's rooms (move what both need into a room below both):\n"
        + "\n".join(broken)
    )


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from glassbox.operator.builders import Parent\n")
    assert "glassbox.operator.builders" in imported(module)


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_says_what_it_is_for(name: str) -> None:
    docstring = ast.get_docstring(ast.parse(modules()[name].read_text()))
    assert docstring and docstring.strip(), f"{name} has no docstring saying what it is for"


def test_the_wheel_holds_every_package_of_the_source_roots() -> None:
    """A package left out of pyproject's list is missing from the images (glassbox.explainers.methods once was)."""
    packages = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert packages == set(PYPROJECT["tool"]["setuptools"]["packages"])
