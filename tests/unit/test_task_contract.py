"""Only sluice/core/tasks.py creates background tasks (ARCHITECTURE.md): `spawn` keeps a reference, so
the collector cannot drop a task mid-flight, and logs a crash instead of losing it. A bare
create_task / ensure_future / TaskGroup / Task(...) anywhere else fails this scan.

`asyncio.gather` over coroutines is allowed: it awaits what it starts (structured, nothing
outlives the caller), which is not a background task."""

from __future__ import annotations

import ast
from pathlib import Path

import sluice

ROOT = Path(sluice.__file__).resolve().parent
FORBIDDEN = {"create_task", "ensure_future", "TaskGroup", "run_coroutine_threadsafe"}
# `asyncio.Task` is also a type (annotations): only a call of it creates one.
# (path under sluice/, name) -> why it may stay. Keep this short.
ALLOWED: dict[tuple[str, str], str] = {}


def _offences(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Task":
            found.append((node.lineno, "Task"))
        elif isinstance(node, ast.ImportFrom) and node.module == "asyncio":
            found += [(node.lineno, a.name) for a in node.names if a.name in FORBIDDEN]
    return found


def test_only_core_tasks_creates_tasks() -> None:
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == "core/tasks.py":
            continue
        for line, name in _offences(ast.parse(path.read_text(), rel)):
            if (rel, name) not in ALLOWED:
                offences.append(f"sluice/{rel}:{line}: {name} (use sluice.core.tasks.spawn)")
    assert not offences, "\n".join(offences)


def test_the_scan_catches_each_spelling() -> None:
    source = (
        "import asyncio\nfrom asyncio import create_task\n"
        "asyncio.create_task(f())\nloop.create_task(f())\nasyncio.ensure_future(f())\n"
        "async with asyncio.TaskGroup() as tg: pass\nasyncio.Task(f())\n"
    )
    names = sorted(name for _, name in _offences(ast.parse(source)))
    assert names == ["Task", "TaskGroup", "create_task", "create_task", "create_task", "ensure_future"]
