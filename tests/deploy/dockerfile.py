"""Reads the Dockerfile into stages of (instruction, argument) pairs, continuation lines joined,
so tests can check what the image does and run its build steps outside a container."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [arg for ins, arg in self.steps if ins == instruction]


def stages(path: Path = ROOT / "Dockerfile") -> list[Stage]:
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # comments may sit between continuation lines too
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Stage] = []
    for line in logical:
        instruction, _, arg = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            words = arg.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            out.append(Stage(words[0], name))
        elif out:
            out[-1].steps.append((instruction, arg.strip()))
    return out
