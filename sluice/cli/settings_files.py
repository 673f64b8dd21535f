"""Merging a few values into a client's own settings file (JSON or TOML) without disturbing the rest.

The files belong to the user and to other tools: only the keys we set change, everything else (other
settings, key order, and in TOML comments and layout, which is why tomlkit and not a dump of parsed
data) stays as it was. A file is rewritten only when the merge changes it, after a timestamped backup,
so running `sluice connect --write` twice leaves one backup, not two.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import tomlkit
from tomlkit.exceptions import TOMLKitError

Format = Literal["json", "toml"]


class SettingsFileError(Exception):
    """The existing file cannot be merged into (unreadable, not JSON/TOML, not a table at the top)."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    path: Path
    changed: bool
    backup: Path | None


def render_snippet(patch: Mapping[str, Any], fmt: Format) -> str:
    """The values we would set, in the file's own syntax (what `connect` prints without --write)."""
    if fmt == "json":
        return json.dumps(patch, indent=2) + "\n"
    doc = tomlkit.document()
    _merge_toml(doc, patch)
    return tomlkit.dumps(doc)


def merged_text(existing: str | None, patch: Mapping[str, Any], fmt: Format) -> str:
    if fmt == "json":
        data: Any = {}
        if existing is not None and existing.strip():
            try:
                data = json.loads(existing)
            except ValueError as exc:
                raise SettingsFileError(f"not valid JSON ({exc}); fix or move it, then run again") from None
        if not isinstance(data, dict):
            raise SettingsFileError("its top level is not a JSON object")
        _merge_json(data, patch)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        doc = tomlkit.parse(existing or "")
    except TOMLKitError as exc:
        raise SettingsFileError(f"not valid TOML ({exc}); fix or move it, then run again") from None
    _merge_toml(doc, patch)
    return tomlkit.dumps(doc)


def merge_into_file(path: Path, patch: Mapping[str, Any], fmt: Format, *, private: bool) -> WriteResult:
    """Merge `patch` into `path`; `private` files (they hold a key) end up readable by the owner only."""
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
    except OSError as exc:
        raise SettingsFileError(str(exc)) from None
    try:
        text = merged_text(existing, patch, fmt)
    except SettingsFileError as exc:
        raise SettingsFileError(f"{path}: {exc}") from None
    if text == existing:
        return WriteResult(path, changed=False, backup=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = _backup(path, existing) if existing is not None else None
    mode = 0o600 if private else (path.stat().st_mode & 0o777 if existing is not None else 0o644)
    _atomic_write(path, text, mode)
    return WriteResult(path, changed=True, backup=backup)


def _merge_json(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping):
            current = target.get(key)
            if not isinstance(current, MutableMapping):
                current = target[key] = {}
            _merge_json(current, value)
        else:
            target[key] = value


def _merge_toml(target: MutableMapping[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, Mapping):
            current = target.get(key)
            if not isinstance(current, MutableMapping):
                # A table holding only tables is written as [a.b] alone, without an empty [a] header.
                nested_only = bool(value) and all(isinstance(v, Mapping) for v in value.values())
                current = tomlkit.table(is_super_table=nested_only)
                target[key] = current
            _merge_toml(current, value)
        else:
            target[key] = value


def _backup(path: Path, text: str) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.sluice-{stamp}.bak")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.sluice-{stamp}-{n}.bak")
    # The old file may hold keys of its own: the copy is private whatever the original's mode was.
    _atomic_write(backup, text, 0o600)
    return backup


def _atomic_write(path: Path, text: str, mode: int) -> None:
    # Written beside the target and renamed over it, so a crash never leaves a half-written settings file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
