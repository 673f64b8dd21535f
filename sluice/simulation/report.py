"""What a replay found: per developer, per team and in total, how many requests the proposal
would have refused (and by which rule), rerouted or degraded, and what they would have cost."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sluice.pricing.table import pico_to_dollars

# unchanged: served as logged; rerouted: to another model or provider; degraded: rerouted to
# one that costs less for the same usage; refused: the proposal refuses it; allowed: the live
# gateway refused it and the proposal would not (it never ran, so its cost is unknown: $0).
Outcome = Literal["unchanged", "rerouted", "degraded", "refused", "allowed"]
OUTCOMES: tuple[Outcome, ...] = ("unchanged", "rerouted", "degraded", "refused", "allowed")


@dataclass(slots=True)
class Tally:
    requests: int = 0
    unchanged: int = 0
    rerouted: int = 0
    degraded: int = 0
    refused: int = 0
    allowed: int = 0
    cost_before_pico: int = 0  # what the log says the requests cost
    cost_after_pico: int = 0  # what they would cost under the proposal (refused: nothing)
    refused_by: dict[str, int] = field(default_factory=dict)  # rule (limit id or refusal kind) -> requests

    def add(self, outcome: Outcome, before: int, after: int, rule: str | None) -> None:
        self.requests += 1
        if outcome == "unchanged":
            self.unchanged += 1
        elif outcome == "refused":
            self.refused += 1
            assert rule is not None
            self.refused_by[rule] = self.refused_by.get(rule, 0) + 1
        elif outcome == "rerouted":
            self.rerouted += 1
        elif outcome == "degraded":
            self.degraded += 1
        else:
            self.allowed += 1
        self.cost_before_pico += before
        self.cost_after_pico += after

    def merge(self, other: Tally) -> None:
        for name in ("requests", "unchanged", "rerouted", "degraded", "refused", "allowed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_before_pico += other.cost_before_pico
        self.cost_after_pico += other.cost_after_pico
        for rule, n in other.refused_by.items():
            self.refused_by[rule] = self.refused_by.get(rule, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "unchanged": self.unchanged,
            "rerouted": self.rerouted,
            "degraded": self.degraded,
            "refused": self.refused,
            "allowed": self.allowed,
            "refused_by": dict(sorted(self.refused_by.items(), key=lambda kv: (-kv[1], kv[0]))),
            "cost_before_usd": _usd(self.cost_before_pico),
            "cost_after_usd": _usd(self.cost_after_pico),
            "cost_change_usd": _usd(self.cost_after_pico - self.cost_before_pico),
        }


@dataclass
class Report:
    since: datetime
    until: datetime | None
    total: Tally = field(default_factory=Tally)
    developers: dict[str, Tally] = field(default_factory=dict)  # the key's owner, else the key id
    teams: dict[str, Tally] = field(default_factory=dict)  # "" for keys without a team
    reroutes: dict[str, int] = field(default_factory=dict)  # "provider/model -> provider/model" -> requests
    skipped: dict[str, int] = field(default_factory=dict)  # rows not replayed, by reason
    unpriced: dict[str, int] = field(default_factory=dict)  # models with usage and no price -> requests
    warnings: list[str] = field(default_factory=list)
    # Request ids by outcome, at most `sample` each (all of them when sample is None).
    examples: dict[str, list[str]] = field(default_factory=dict)
    examples_at: dict[str, list[datetime]] = field(default_factory=dict)  # their times, for `merged`
    sample: int | None = 20
    seconds: float = 0.0

    def add(
        self,
        request_id: str,
        at: datetime,
        developer: str,
        team: str,
        outcome: Outcome,
        before: int,
        after: int,
        rule: str | None = None,
    ) -> None:
        self.total.add(outcome, before, after, rule)
        tally = self.developers.get(developer)
        if tally is None:
            tally = self.developers[developer] = Tally()
        tally.add(outcome, before, after, rule)
        tally = self.teams.get(team)
        if tally is None:
            tally = self.teams[team] = Tally()
        tally.add(outcome, before, after, rule)
        if outcome != "unchanged":
            found = self.examples.get(outcome)
            if found is None:
                found = self.examples[outcome] = []
                self.examples_at[outcome] = []
            if self.sample is None or len(found) < self.sample:
                found.append(request_id)
                self.examples_at[outcome].append(at)

    @classmethod
    def merged(cls, parts: list[Report], sample: int | None) -> Report:
        """The report of one replay from those of replays of disjoint parts of the same log (by
        keys that share no counter): tallies and counts added up, examples the first ones in
        (time, request id) order, as one replay meets them. Warnings are the first part's."""
        out = cls(parts[0].since, parts[0].until, sample=sample, warnings=list(parts[0].warnings))
        for part in parts:
            out.total.merge(part.total)
            for mine, theirs in ((out.developers, part.developers), (out.teams, part.teams)):
                for name, tally in theirs.items():
                    mine.setdefault(name, Tally()).merge(tally)
            for counts, more in (
                (out.reroutes, part.reroutes),
                (out.skipped, part.skipped),
                (out.unpriced, part.unpriced),
            ):
                for name, n in more.items():
                    counts[name] = counts.get(name, 0) + n
        for outcome in OUTCOMES:
            met = sorted(
                (at, rid)
                for part in parts
                for at, rid in zip(part.examples_at.get(outcome, ()), part.examples.get(outcome, ()), strict=True)
            )[:sample]
            if met:
                out.examples_at[outcome] = [at for at, _ in met]
                out.examples[outcome] = [rid for _, rid in met]
        return out

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        def ranked(tallies: dict[str, Tally]) -> list[dict[str, Any]]:
            interesting = sorted(
                tallies.items(),
                key=lambda kv: (-(kv[1].refused + kv[1].rerouted + kv[1].degraded + kv[1].allowed), kv[0]),
            )
            return [{"id": name, **tally.as_dict()} for name, tally in interesting]

        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat() if self.until else None,
            "seconds": round(self.seconds, 3),
            "total": self.total.as_dict(),
            "developers": ranked(self.developers),
            "teams": ranked(self.teams),
            "reroutes": dict(sorted(self.reroutes.items(), key=lambda kv: (-kv[1], kv[0]))),
            "skipped": self.skipped,
            "unpriced": self.unpriced,
            "warnings": self.warnings,
            "examples": self.examples,
        }

    def text(self, top: int = 20) -> list[str]:
        """The report for a terminal."""
        t = self.total
        lines = [
            f"replayed {t.requests} request(s) since {self.since.isoformat()} in {self.seconds:.1f}s",
            f"  unchanged {t.unchanged}, rerouted {t.rerouted}, degraded {t.degraded}, refused {t.refused}, "
            f"newly allowed {t.allowed}",
            f"  cost ${_usd(t.cost_before_pico)} -> ${_usd(t.cost_after_pico)} "
            f"(change ${_usd(t.cost_after_pico - t.cost_before_pico)})",
        ]
        if self.skipped:
            lines.append("  not replayed: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if t.refused_by:
            ranked = list(t.as_dict()["refused_by"].items())
            lines.append(f"refused by rule ({len(ranked)} rules):")
            lines += [f"  {rule}: {n}" for rule, n in ranked[:top]]
        if self.reroutes:
            lines.append("rerouted:")
            lines += [f"  {route}: {n}" for route, n in list(self.as_dict()["reroutes"].items())[:top]]
        for title in ("teams", "developers"):
            lines.append(f"{title} (most affected first):")
            for row in [r for r in self.as_dict()[title] if r["requests"]][:top]:
                name = row["id"] or "(no team)"
                lines.append(
                    f"  {name}: {row['requests']} req, refused {row['refused']}, rerouted {row['rerouted']}, "
                    f"degraded {row['degraded']}, cost ${row['cost_before_usd']} -> ${row['cost_after_usd']}"
                )
        if self.unpriced:
            lines.append("unpriced models (charged $0): " + ", ".join(sorted(self.unpriced)))
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


def _usd(pico: int) -> str:
    return f"{pico_to_dollars(pico):.4f}"
