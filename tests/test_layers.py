"""The import graph of uqf_cli follows the layer order written in docs/architecture.md ("Layers").

Every module is parsed with ``ast`` (nothing is imported): module-level imports, imports inside
functions and ``TYPE_CHECKING`` blocks, and ``import_module("uqf_cli.x...")`` calls all count. A package
may import only packages of a lower layer; packages on one layer may not import each other; and there
is no cycle between packages. Each failure names the importing module, its line and the import.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "uqf_cli"
DOC = ROOT / "docs" / "architecture.md"
TOP = "uqf_cli"  # the root package's own __init__ (version, lazy access to subpackages)


@dataclass(frozen=True)
class Import:
    """One import of a uqf_cli package by a module of another package."""

    module: str  # its path from the folder holding uqf_cli/
    line: int
    target: str  # the dotted name imported
    source_pkg: str
    target_pkg: str

    def describe(self) -> str:
        return f"{self.module}:{self.line} ({self.source_pkg}) imports {self.target}"


def read_layers(doc: Path = DOC) -> dict[str, int]:
    """Package -> layer number, from the table of the "## Layers" section (column 1 layer, column 2 packages)."""
    text = doc.read_text(encoding="utf-8")
    section = text.split("\n## Layers", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for row in section.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for name in re.findall(r"`([A-Za-z_]+)`", cells[1].split("(")[0]):
                layers[name] = int(cells[0])
    return layers


def package_of(parts: list[str], subpackages: set[str]) -> str | None:
    """The uqf_cli package a dotted name (split) belongs to; None outside uqf_cli."""
    if not parts or parts[0] != TOP:
        return None
    if len(parts) > 1 and parts[1] in subpackages:
        return parts[1]
    return TOP


def module_name(path: Path, package_dir: Path) -> tuple[list[str], bool]:
    """Dotted name (split) of a module file, and whether it is a package's ``__init__``."""
    rel = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if rel[-1] == "__init__":
        return rel[:-1], True
    return rel, False


def imported_names(tree: ast.AST, name: list[str], is_init: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a module, at any depth, relative ones resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name if is_init else name[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from uqf_cli import rec` imports the subpackage rec; `from uqf_cli.rec import x` the package rec
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names] if base == TOP else [
                (node.lineno, base)]
        elif isinstance(node, ast.Call) and _called_name(node.func) == "import_module" and node.args:
            target = _leading_text(node.args[0])
            if target:
                found.append((node.lineno, target.rstrip(".")))
    return found


def _called_name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _leading_text(arg: ast.expr) -> str:
    """The constant start of a string or f-string argument ("uqf_cli.rec." of f"uqf_cli.rec.{name}")."""
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
        return str(arg.values[0].value)
    return ""


def cross_package_imports(package_dir: Path = PACKAGE_DIR) -> list[Import]:
    """Every import, in every module, of one uqf_cli package by another."""
    subpackages = {p.name for p in package_dir.iterdir() if (p / "__init__.py").is_file()}
    subpackages |= {p.stem for p in package_dir.glob("*.py") if p.stem != "__init__"}
    out = []
    for path in sorted(package_dir.rglob("*.py")):
        name, is_init = module_name(path, package_dir)
        source_pkg = package_of(name, subpackages)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported_names(tree, name, is_init):
            target_pkg = package_of(target.split("."), subpackages)
            if target_pkg is not None and source_pkg is not None and target_pkg != source_pkg:
                where = path.relative_to(package_dir.parent).as_posix()
                out.append(Import(where, line, target, source_pkg, target_pkg))
    return out


def layer_violations(imports: list[Import], layers: dict[str, int]) -> list[str]:
    """Imports of a package not on a lower layer (or of/from a package the layer table lacks)."""
    problems = []
    for imp in imports:
        missing = [p for p in (imp.source_pkg, imp.target_pkg) if p not in layers]
        if missing:
            problems.append(f"{imp.describe()}: package {missing[0]!r} has no layer in docs/architecture.md")
        elif layers[imp.target_pkg] >= layers[imp.source_pkg]:
            where = "the same layer as" if layers[imp.target_pkg] == layers[imp.source_pkg] else "a layer above"
            problems.append(f"{imp.describe()}: {imp.target_pkg} (layer {layers[imp.target_pkg]}) is on {where} "
                            f"{imp.source_pkg} (layer {layers[imp.source_pkg]})")
    return problems


def package_cycles(imports: list[Import]) -> list[str]:
    """Each cycle between packages, as the chain of imports that closes it (one example import per edge)."""
    edges: dict[str, dict[str, Import]] = defaultdict(dict)
    for imp in imports:
        edges[imp.source_pkg].setdefault(imp.target_pkg, imp)
    cycles: list[str] = []
    seen: set[frozenset[str]] = set()

    def walk(start: str, node: str, path: list[Import]) -> None:
        for nxt, imp in sorted(edges[node].items()):
            if nxt == start:
                key = frozenset(i.source_pkg for i in [*path, imp])
                if key not in seen:
                    seen.add(key)
                    cycles.append(" -> ".join(i.describe() for i in [*path, imp]))
            elif nxt > start and all(i.source_pkg != nxt for i in path):
                walk(start, nxt, [*path, imp])

    for pkg in sorted(edges):
        walk(pkg, pkg, [])
    return cycles


# --------------------------------------------------------------------------------------------
# The checks on uqf_cli
# --------------------------------------------------------------------------------------------


def test_every_package_has_a_layer() -> None:
    layers = read_layers()
    packages = {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").is_file()}
    packages |= {p.stem for p in PACKAGE_DIR.glob("*.py") if p.stem != "__init__"} | {TOP}
    assert not packages - set(layers), f"packages without a layer in docs/architecture.md: {packages - set(layers)}"
    assert not set(layers) - packages, f"layers name packages that do not exist: {set(layers) - packages}"


def test_no_import_from_a_higher_layer() -> None:
    problems = layer_violations(cross_package_imports(), read_layers())
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_cycle_between_packages() -> None:
    cycles = package_cycles(cross_package_imports())
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


# --------------------------------------------------------------------------------------------
# The checker itself can fail: a toy package with an upward lazy import and a cycle
# --------------------------------------------------------------------------------------------


def _toy_package(tmp_path: Path) -> Path:
    pkg = tmp_path / "uqf_cli"
    for sub, body in {
        "core": "",
        "files": "from uqf_cli.core import x\n",
        "data": "def f():\n    from uqf_cli.files.jsonio import read_json\n",
        "embed": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from uqf_cli.data import Dataset\n",
    }.items():
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text(body)
    (pkg / "__init__.py").write_text("")
    return pkg


def test_checker_finds_lazy_upward_import_and_cycle(tmp_path: Path) -> None:
    pkg = _toy_package(tmp_path)
    layers = {TOP: 0, "core": 1, "files": 2, "data": 3, "embed": 4}
    assert layer_violations(cross_package_imports(pkg), layers) == []
    (pkg / "files" / "fingerprints.py").write_text("def g():\n    from uqf_cli.embed import build_texts\n")
    problems = layer_violations(cross_package_imports(pkg), layers)
    assert len(problems) == 1
    assert "uqf_cli/files/fingerprints.py:2 (files) imports uqf_cli.embed" in problems[0]
    assert "a layer above" in problems[0]
    cycles = package_cycles(cross_package_imports(pkg))
    assert len(cycles) == 1 and "fingerprints.py:2" in cycles[0] and "embed/__init__.py:3" in cycles[0]


def test_checker_refuses_same_layer_relative_and_unlisted(tmp_path: Path) -> None:
    pkg = _toy_package(tmp_path)
    (pkg / "data" / "cold.py").write_text("from ..embed import texts\n")
    (pkg / "tui").mkdir()
    (pkg / "tui" / "__init__.py").write_text("import importlib\nimportlib.import_module(f'uqf_cli.core.{1}')\n")
    problems = layer_violations(cross_package_imports(pkg), {TOP: 0, "core": 1, "files": 2, "data": 3, "embed": 3})
    assert any("data/cold.py:1 (data) imports uqf_cli.embed" in p and "the same layer" in p for p in problems)
    assert any("tui/__init__.py:2" in p and "'tui' has no layer" in p for p in problems)
