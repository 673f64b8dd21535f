"""How one alert looks to each sink: a Standard Webhooks delivery, a Slack or Microsoft Teams
incoming-webhook message, an email."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from email.message import EmailMessage
from typing import Any

from sluice.audit.chain import canonical
from sluice.audit.exporters.base import Delivery
from sluice.settings import AlertSinkConfig
from sluice.storage.ports import Store
from sluice.storage.records import AuditRecord


def alert_of(record: AuditRecord) -> dict[str, Any]:
    """The alert an `alert` audit record carries, with its audit sequence number."""
    return {**record.data, "audit_seq": record.seq, "recorded_at": record.ts.isoformat()}


def signing_key(secret: str) -> bytes:
    """A Standard Webhooks secret is `whsec_` and the key in base64; any other string is the key's bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[6:], validate=True)
        except ValueError:
            pass
    return secret.encode()


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook(sink: AlertSinkConfig, alert: dict[str, Any], now: float | None = None) -> Delivery:
    """Standard Webhooks: `webhook-id` (the alert's id: the same on every retry, so a receiver
    de-duplicates), `webhook-timestamp` (seconds, at sending) and `webhook-signature`
    (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body`)."""
    assert sink.url is not None and sink.secret is not None
    body = canonical({"type": f"sluice.alert.{alert['type']}", "timestamp": alert["fired_at"], "data": alert})
    timestamp = int(now if now is not None else time.time())
    msg_id = str(alert["alert_id"])
    headers = {
        **sink.headers,
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(signing_key(sink.secret.get_secret_value()), msg_id, timestamp, body),
    }
    return Delivery(sink.url, body, headers)


def slack(sink: AlertSinkConfig, alert: dict[str, Any]) -> Delivery:
    assert sink.url is not None
    text = f"*Sluice alert* ({alert['severity']}): {alert['summary']}"
    body = canonical({"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]})
    return Delivery(sink.url, body, {**sink.headers, "content-type": "application/json"})


def teams(sink: AlertSinkConfig, alert: dict[str, Any]) -> Delivery:
    """An Adaptive Card message, the format Teams workflows' incoming webhooks take."""
    assert sink.url is not None
    card = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "size": "Medium", "weight": "Bolder", "text": f"Sluice alert ({alert['severity']})"},
            {"type": "TextBlock", "wrap": True, "text": str(alert["summary"])},
            {"type": "FactSet", "facts": [{"title": k, "value": str(v)} for k, v in _facts(alert)]},
        ],
    }
    body = canonical(
        {
            "type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "content": card}],
        }
    )
    return Delivery(sink.url, body, {**sink.headers, "content-type": "application/json"})


def email(sink: AlertSinkConfig, alert: dict[str, Any], developer: str | None = None) -> EmailMessage:
    assert sink.sender is not None
    message = EmailMessage()
    subject = f"[Sluice {alert['severity']}] {alert['summary']}"
    message["Subject"] = " ".join(subject.split())[:200]  # one line, whatever an id contains
    message["From"] = sink.sender
    message["To"] = ", ".join(dict.fromkeys([*sink.to, *([developer] if developer else [])]))
    # The alert id names the message: a mail system that de-duplicates by Message-ID sees it once.
    message["Message-ID"] = f"<{alert['alert_id']}@sluice>"
    message.set_content("\n".join([str(alert["summary"]), "", *(f"{k}: {v}" for k, v in _facts(alert))]))
    return message


def _facts(alert: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(k, v) for k, v in alert.items() if k not in ("summary", "severity") and v is not None]


async def developer_email(store: Store, alert: dict[str, Any]) -> str | None:
    """The primary email, in the directory, of the person whose key the alert is about."""
    if alert.get("scope") != "virtual_key" or not isinstance(alert.get("scope_id"), str):
        return None
    key = await store.key_by_id(alert["scope_id"])
    user_id = key.user_id if key is not None else None
    if not user_id:
        return None
    for obj in await store.list_objects():
        if obj.kind == "user" and obj.id == user_id:
            if obj.body.get("active") is False:
                return None  # deactivated in the directory: no mail
            emails = [
                e for e in obj.body.get("emails") or [] if isinstance(e, dict) and isinstance(e.get("value"), str)
            ]
            primary = [e for e in emails if e.get("primary")] or emails
            value = primary[0]["value"] if primary else None
            return value if value and "@" in value and "\n" not in value and "\r" not in value else None
    return None
