"""Each provider's `parse_error`: an error answer becomes an ErrorKind (what retries, fallbacks
and breakers decide on) and, when the body may reach the caller, the reply itself."""

from __future__ import annotations

import orjson
import pytest

from sluice.core.errors import ErrorKind
from sluice.core.types import Operation, WireFormat
from sluice.providers.base import ProviderCall, ProviderReply, kind_of_status, seconds_of
from sluice.providers.fake import FakeProvider
from sluice.providers.registry import build_providers
from sluice.settings import parse_config
from sluice.upstream.client import UpstreamClient


def call(wire: WireFormat, provider: object) -> ProviderCall:
    keys = getattr(provider, "keys", [])
    return ProviderCall(wire, Operation.GENERATE, "m", b"{}", {}, {}, "", False, keys[0] if keys else None)


PROVIDERS = parse_config(
    {
        "providers": {
            "anthropic": {"base_url": "http://127.0.0.1:9", "keys": [{"name": "main", "value": "sk-secret-1"}]},
            "bedrock": {"type": "bedrock", "region": "us-east-1", "keys": [{"name": "br", "value": "ABSK-x"}]},
        }
    }
)


@pytest.mark.parametrize(
    "status,kind",
    [
        (400, ErrorKind.CALLER_BAD_REQUEST),
        (404, ErrorKind.CALLER_BAD_REQUEST),
        (408, ErrorKind.PROVIDER_TIMEOUT),
        (429, ErrorKind.PROVIDER_RATE_LIMITED),
        (500, ErrorKind.PROVIDER_ERROR),
        (501, ErrorKind.PROVIDER_REFUSED),
        (503, ErrorKind.PROVIDER_OVERLOADED),
        (529, ErrorKind.PROVIDER_OVERLOADED),
    ],
)
def test_http_provider_errors_keep_their_body_for_the_caller(status: int, kind: ErrorKind) -> None:
    provider = build_providers(PROVIDERS, UpstreamClient())["anthropic"]
    body = orjson.dumps({"type": "error", "error": {"message": "echoed key sk-secret-1"}})
    err = provider.parse_error(
        ProviderReply(status, "application/json", {"retry-after": "2"}, body=body),
        call(WireFormat.ANTHROPIC_MESSAGES, provider),
    )
    assert err.kind is kind and kind_of_status(status) is kind and err.retry_after == 2.0
    assert err.reply is not None and err.reply.body is not None
    assert b"sk-secret-1" not in err.reply.body and b"[redacted]" in err.reply.body  # never the gateway's key


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_gateway_credential_is_said_by_the_gateway(status: int) -> None:
    provider = build_providers(PROVIDERS, UpstreamClient())["anthropic"]
    err = provider.parse_error(
        ProviderReply(status, "application/json", body=b"{}"), call(WireFormat.ANTHROPIC_MESSAGES, provider)
    )
    assert err.kind is ErrorKind.PROVIDER_AUTH and err.reply is None and "'main'" in err.message


def test_bedrock_errors_are_read_from_the_aws_error_type() -> None:
    provider = build_providers(PROVIDERS, UpstreamClient())["bedrock"]
    reply = ProviderReply(
        400,
        "application/json",
        {"x-amzn-errortype": "ThrottlingException:http://internal.amazon.com/"},
        body=b'{"message":"slow down"}',
    )
    err = provider.parse_error(reply, call(WireFormat.ANTHROPIC_MESSAGES, provider))
    assert err.kind is ErrorKind.PROVIDER_RATE_LIMITED and err.reply is None and err.upstream_status == 400
    assert "ThrottlingException: slow down" in err.message and err.retry_after == 1.0


def test_the_fake_provider_answers_its_errors_and_parses_them() -> None:
    fake = FakeProvider()
    err = fake.parse_error(
        ProviderReply(429, "text/plain", {"retry-after": "1"}, body=b"rate limited"), call(WireFormat.OPENAI_CHAT, fake)
    )
    assert err.kind is ErrorKind.PROVIDER_RATE_LIMITED and err.retry_after == 1.0 and err.reply is None


@pytest.mark.parametrize(
    "value,seconds", [("3", 3.0), ("0.5", 0.5), ("nan", None), ("inf", None), ("-1", None), ("soon", None)]
)
def test_retry_after_is_read_only_when_it_is_a_sane_number(value: str, seconds: float | None) -> None:
    assert seconds_of(value) == seconds
