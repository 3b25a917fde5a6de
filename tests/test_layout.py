"""The package layout's import rules (docs/architecture.md), checked on the source."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dplogs"

# package -> dplogs packages it may import (besides itself and the top-level dplogs.errors /
# dplogs.escape / dplogs.files / dplogs.__init__)
ALLOWED: dict[str, set[str]] = {
    "schema": set(),
    "ingest": {"schema"},
    "privacy": {"schema"},
    "backends": {"schema", "privacy"},
    "engine": {"schema", "privacy", "backends", "ingest", "detect"},
    "detect": {"schema", "privacy", "backends", "ingest"},
    "report": {"engine", "schema", "privacy"},
    "audit": {"engine", "detect", "backends", "privacy", "schema", "ingest"},
    "cli": {"schema", "ingest", "privacy", "engine", "backends", "detect", "report", "audit"},
}
PRIVACY_ONLY = ("opendp", "dp_accounting")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _modules():
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        yield (rel.parts[0] if len(rel.parts) > 1 else None), path


def test_every_package_is_in_the_table():
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages == set(ALLOWED)


def test_import_rules():
    bad = []
    for package, path in _modules():
        for name in _imports(path):
            top = name.split(".")[0]
            if top in PRIVACY_ONLY and package != "privacy":
                bad.append(f"{path.relative_to(PKG)} imports {name} (only dplogs/privacy may)")
            if top != "dplogs" or package is None:
                continue
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else None
            if target in (None, package, "errors", "escape", "files"):
                continue
            if target == "cli" or target not in ALLOWED[package]:
                bad.append(f"{path.relative_to(PKG)} imports {name}")
    assert not bad, "\n".join(bad)
