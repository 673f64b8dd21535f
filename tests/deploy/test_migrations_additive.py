"""Rolling updates rely on every migration only adding (tables, nullable columns): old replicas
keep serving on the new schema while new ones start (docs/deployment.md, "Upgrades"). A migration
that drops, renames or alters in its upgrade() must be released as not rolling; this test makes
that a deliberate choice instead of an accident."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT

VERSIONS = sorted((ROOT / "sluice" / "storage" / "migrations" / "versions").glob("[0-9]*.py"))
NOT_ROLLING = {"drop_column", "drop_table", "alter_column", "rename_table", "drop_index", "drop_constraint"}


@pytest.mark.parametrize("path", VERSIONS, ids=lambda p: p.name)
def test_upgrade_only_adds(path: Path) -> None:
    tree = ast.parse(path.read_text())
    (upgrade,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade"]
    called = {
        node.func.attr
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not called & NOT_ROLLING, f"{path.name} upgrade() calls {sorted(called & NOT_ROLLING)}"


def test_there_are_migrations() -> None:
    assert len(VERSIONS) >= 10
