"""The guardrails of a running gateway: rule sets built from the config, resolved per key
(its id, its access profile, its team, else the default), the sessions' placeholder vaults, and
one `RequestGuard` per request that the engine calls at its stages."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from sluice.formats.json_body import encode_body
from sluice.guardrails.answer import AnswerScanner, StreamGuard, blocked, restore_answer
from sluice.guardrails.rewrite import replace_all, rewrite
from sluice.guardrails.rules import MAX_EVENTS, Action, Finding, Rule, RuleSet, default_rules, deny_list, regex_rule
from sluice.guardrails.vault import Vault, Vaults
from sluice.guardrails.walk import Report, guard_doc, guard_text
from sluice.settings import GuardrailRuleConfig, GuardrailsConfig
from sluice.storage.records import VirtualKey

# `Alerts.fire(alert_id, kind, severity, summary, **facts)` (sluice.alerts), or None without alerts.
FireAlert = Callable[..., Awaitable[object]]


class AuditAppend(Protocol):
    @property
    def enabled(self) -> bool: ...

    async def append_all(self, kind: str, actor: str, items: list[dict[str, Any]]) -> object: ...


def rule_of(cfg: GuardrailRuleConfig) -> Rule:
    kw: dict[str, Any] = {
        "action": Action(cfg.action),
        "where": frozenset(cfg.where),
        "kinds": frozenset(cfg.kinds),
        "providers": frozenset(cfg.providers),
    }
    if cfg.detector == "deny":
        return deny_list(cfg.name, cfg.terms, **kw)
    if cfg.detector == "regex":
        return regex_rule(cfg.name, cfg.patterns, **kw)
    return Rule(cfg.name, cfg.detector, **kw)


class Guardrails:
    def __init__(self, config: GuardrailsConfig) -> None:
        self.key = _key_of(config)
        self.vaults = Vaults(self.key)
        self.config = config
        self.sets = build_sets(config, self.key)
        self.alerts: FireAlert | None = None  # set by the composition root when alerts are configured

    def reconfigure(self, config: GuardrailsConfig) -> None:
        """A live reload: the rule sets are rebuilt from the new section (a new set's caches start
        empty, so a rule added or removed applies to the next request). The sessions' vaults stay:
        a placeholder the agent's history carries is still restored; a new `placeholder_key` keys
        the placeholders and hashes made from now on."""
        key = self.key if config.placeholder_key == self.config.placeholder_key else _key_of(config)
        sets = build_sets(config, key)
        # No await between these: a request resolves its set against one configuration.
        self.key, self.config, self.sets = key, config, sets
        self.vaults.rekey(key)

    def rules_for(self, key: VirtualKey) -> RuleSet | None:
        c = self.config
        if not c.enabled:
            return None
        name = c.keys.get(key.id)
        if name is None and key.profile_id is not None:
            name = c.access_profiles.get(key.profile_id)
        if name is None and key.team_id is not None:
            name = c.teams.get(key.team_id)
        if name is None:
            name = c.default
        return self.sets.get(name) if name else None

    async def mcp_output(
        self, key: VirtualKey, result: Any, record: dict[str, Any], emit: Callable[..., Awaitable[None]]
    ) -> str | None:
        """An MCP tool's output on its way to the agent, scanned where `mcp`: each finding an audit
        event (through `emit`); returns the rule of a `block` finding, for the caller to refuse.
        Secrets are not rewritten here: the output goes to the agent on the developer's machine,
        and the LLM request that carries it onwards is redacted on the request path."""
        rules = self.rules_for(key)
        if rules is None or not rules.wants("mcp"):
            return None
        report = Report()
        for item in getattr(result, "content", None) or ():
            text = getattr(item, "text", None)
            if isinstance(text, str):
                guard_text(text, "mcp", rules, None, report)
        structured = getattr(result, "structured_content", None)
        if structured:
            guard_text(orjson.dumps(structured).decode(), "mcp", rules, None, report)
        names = ("method", "server", "tool", "session", "tool_use_id")
        base: dict[str, Any] = {k: record[k] for k in names if k in record}
        for event in report.events()[:MAX_EVENTS]:
            await emit("guardrail", key, {**base, **event})
        # A retried call (the same tool_use_id, or the same arguments in the same MCP session) names
        # the same alert, which then is not sent again.
        call = record.get("tool_use_id") or f"{record.get('session')}:{record.get('arguments_sha256')}"
        await fire_alerts(self.alerts, report, f"mcp:{key.id}:{call}", {"virtual_key": key.id, **base})
        hit = report.blocked
        return hit.rule if hit is not None else None

    def start(self, key: VirtualKey, session_id: str | None) -> RequestGuard | None:
        rules = self.rules_for(key)
        if rules is None:
            return None
        # Placeholders are per agent session; a caller without one gets one vault per key.
        session = f"{key.id}\0{session_id or ''}"
        return RequestGuard(rules, self.vaults.of(session), self.alerts, session)


def _key_of(config: GuardrailsConfig) -> bytes:
    secret = config.placeholder_key
    return secret.encode() if secret else os.urandom(32)


def build_sets(config: GuardrailsConfig, key: bytes) -> dict[str, RuleSet]:
    sets: dict[str, RuleSet] = {}
    for name, s in config.sets.items():
        rules = {r.name: r for r in default_rules()} if s.builtin else {}
        rules.update({r.name: rule_of(r) for r in s.rules})
        sets[name] = RuleSet(tuple(rules.values()), key=key, restore=s.restore)
    return sets


class RequestGuard:
    """One request's guardrails: what they found (`report`) and the session's vault."""

    __slots__ = ("alerts", "report", "rules", "session", "vault")

    def __init__(
        self, rules: RuleSet, vault: Vault, alerts: FireAlert | None = None, session: str | None = None
    ) -> None:
        self.rules, self.vault, self.report, self.alerts, self.session = rules, vault, Report(), alerts, session

    async def record(self, request_id: str, actor: str, audit: AuditAppend | None) -> None:
        """After the answer: one audit event per decision (sealed together), and one alert per
        `alert` rule that matched (its id is the request's and the rule's, so a retried attempt of
        the same request does not alert twice)."""
        if not self.report.findings:
            return  # nearly every request: nothing to record, and no reason to yield the loop
        if audit is not None and audit.enabled:
            await audit.append_all("guardrail", actor, [{"request_id": request_id, **e} for e in self.events()])
        if self.alerts is not None:
            await fire_alerts(self.alerts, self.report, request_id, {"request_id": request_id, "virtual_key": actor})

    def request(self, doc: dict[str, Any]) -> Report:
        """Scans and redacts the request body in place. Raises on `block`."""
        found = guard_doc(doc, self.rules, self.vault, self.session)
        self.report.findings.extend(found.findings)
        hit = found.blocked
        if hit is not None:
            raise blocked(hit.rule, hit.where)
        return found

    def request_body(self, doc: dict[str, Any], body: bytes) -> bytes:
        """The body to send: the caller's bytes, with each redacted value's JSON form replaced by
        its placeholder (guardrails.rewrite: the caller's encoding kept, and only what changed since
        the session's previous body searched); the parsed body re-encoded when a value's JSON form
        is not found as it is (another escaping)."""
        session = self.session
        before = self.rules.recent_of(session) if session is not None else None
        found = self.request(doc)  # remembers this request's strings in place of `before`
        if not found.changed:
            return body
        if found.split:
            # A value split across strings was redacted part by part, each in its own string (a part
            # can be one character, never to be replaced wherever it occurs): the redacted document
            # is encoded, then each whole value goes wherever else it occurs in it.
            return replace_all(encode_body(doc), found.replaced)
        done = rewrite(body, found.replaced, before.rewritten if before is not None else None)
        if done is None:
            return encode_body(doc)  # escaped otherwise than orjson escapes it
        out, memo = done
        if session is not None:
            self.rules.remember_rewrite(session, memo)
        return out

    def to_provider(self, doc: dict[str, Any], provider: str) -> None:
        """The rules for some providers only, once the provider is known. Raises on `block`."""
        scoped = self.rules.for_provider(provider)
        if scoped is None:
            return
        found = guard_doc(doc, scoped, None)
        self.report.findings.extend(found.findings)
        hit = found.blocked
        if hit is not None:
            raise blocked(hit.rule, f"{hit.where} to {provider}")

    def answer(self, body: bytes) -> bytes:
        """A whole answer: scanned (raises on `block`), placeholders restored."""
        if self.rules.wants("answer"):
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if doc is not None:
                scanner = AnswerScanner(self.rules, self.vault, self.report)
                _strings(doc, scanner)
                scanner.flush()
        return restore_answer(body, self.vault) if self.rules.restore else body

    def stream(self, observer: Any, sse: bool) -> StreamGuard | None:
        scanner = AnswerScanner(self.rules, self.vault, self.report) if self.rules.wants("answer") else None
        restore = self.rules.restore and bool(self.vault.values)
        if scanner is None and not restore:
            return None
        return StreamGuard(observer, scanner, self.vault if restore else None, sse)

    @property
    def count(self) -> int:
        return len(self.report.findings)

    def events(self) -> list[dict[str, object]]:
        return self.report.events()[:MAX_EVENTS]


async def fire_alerts(fire: FireAlert | None, report: Report, scope: str, facts: dict[str, Any]) -> None:
    """One alert per `alert` rule that matched in `report`, its id stable for `scope` (a request,
    an MCP call). What it says: the rule, where, the kinds, how many matches, and the keyed hash
    and length of the first (never the content)."""
    if fire is None:
        return
    by_rule: dict[str, list[tuple[Finding, str]]] = {}
    for finding, digest in report.findings:
        if finding.action is Action.ALERT:
            by_rule.setdefault(finding.rule, []).append((finding, digest))
    for rule, found in by_rule.items():
        first, digest = next(((f, d) for f, d in found if d), found[0])
        where = sorted({f.where for f, _ in found})
        await fire(
            f"guardrail:{scope}:{rule}",
            "guardrail",
            "warning",
            f"Guardrail rule '{rule}' matched {len(found)} time(s) ({', '.join(where)})",
            rule=rule,
            where=where,
            kinds=sorted({f.kind for f, _ in found}),
            matches=len(found),
            length=first.end - first.start,
            hmac=digest,
            **facts,
        )


def _strings(node: Any, scanner: AnswerScanner, depth: int = 0) -> None:
    if depth > 128:  # a provider's answer is not this deep; do not recurse without bound
        return
    if isinstance(node, str):
        scanner.feed(node + "\n")
    elif isinstance(node, dict):
        for key, value in node.items():
            if key not in ("id", "type", "model", "role", "signature"):
                _strings(value, scanner, depth + 1)
    elif isinstance(node, list):
        for value in node:
            _strings(value, scanner, depth + 1)
