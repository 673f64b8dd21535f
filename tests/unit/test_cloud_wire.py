"""AWS event-stream framing, SigV4 signing, Bedrock errors, the Vertex service-account JWT and
the cloud settings, each checked against an independent implementation (botocore, PyJWT, the
test fakes' own encoder)."""

from __future__ import annotations

import base64
import struct
import zlib

import jwt
import orjson
import pytest
from botocore.eventstream import EventStreamBuffer

from sluice.core.errors import ErrorKind, SluiceError
from sluice.core.types import Operation, WireFormat
from sluice.formats import aws_eventstream as es
from sluice.formats.anthropic import invoke
from sluice.providers.aws import SigV4Signer, bedrock_error
from sluice.providers.bedrock import BedrockProvider
from sluice.providers.google_auth import AUDIENCE, SelfSignedJWT, ServiceAccount
from sluice.settings import ConfigError, ProviderConfig, parse_config
from sluice.upstream.client import Timeouts, UpstreamClient
from tests.fakes import aws_wire
from tests.fakes.cloud import make_service_account


def test_frames_match_the_fake_encoder_and_botocore_reads_them() -> None:
    headers = {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    payload = b'{"bytes":"eyJ0eXBlIjoicGluZyJ9"}'
    mine = es.encode_frame(headers, payload)
    assert mine == aws_wire.frame(headers, payload)
    buffer = EventStreamBuffer()
    buffer.add_data(mine)
    (message,) = list(buffer)
    assert message.headers == headers and message.payload == payload


def test_invoke_stream_becomes_anthropic_sse_whatever_the_chunking() -> None:
    events = [{"type": "message_start", "message": {"id": "m1"}}, {"type": "message_stop"}]
    data = b"".join(aws_wire.chunk(orjson.dumps(e), n) for n, e in enumerate(events))
    data += aws_wire.exception("throttlingException", "slow down")
    translator = invoke.InvokeStreamToSSE()
    out = b"".join(translator.feed(data[i : i + 5]) for i in range(0, len(data), 5))
    assert out.startswith(b'event: message_start\ndata: {"type":"message_start","message":{"id":"m1"}}\n\n')
    assert b"event: message_stop\n" in out
    assert b'event: error\ndata: {"type":"error","error":{"type":"rate_limit_error"' in out
    assert b"Bedrock throttlingException: slow down" in out


def test_anthropic_sse_becomes_invoke_stream_frames() -> None:
    sse = b'event: message_start\ndata: {"type":"message_start"}\n\nevent: ping\ndata: {"type":"ping"}\n\n'
    sse += b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    framed = invoke.SSEToInvokeStream().feed(sse)
    buffer = EventStreamBuffer()
    buffer.add_data(framed)
    first, error = list(buffer)
    assert base64.b64decode(orjson.loads(first.payload)["bytes"]) == b'{"type":"message_start"}'
    assert error.headers[":message-type"] == "exception"
    assert error.headers[":exception-type"] == "serviceUnavailableException"
    assert orjson.loads(error.payload) == {"message": "busy"}


def test_sigv4_headers_verify_with_botocore_and_cover_the_body() -> None:
    account = aws_wire.AwsAccount("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-tok", "us-east-1")
    signer = SigV4Signer(account.access_key_id, account.secret_access_key, account.session_token, account.region)
    url = "http://127.0.0.1:8123/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke"
    body = b'{"anthropic_version":"bedrock-2023-05-31"}'
    headers = signer.headers(url, body, {"content-type": "application/json"})
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert headers["x-amz-security-token"] == "session-tok"
    received = {**headers, "host": "127.0.0.1:8123"}
    assert aws_wire.verify_sigv4(account, "POST", url, received, body) is None
    assert "does not match" in (aws_wire.verify_sigv4(account, "POST", url, received, body + b" ") or "")
    wrong = aws_wire.AwsAccount(account.access_key_id, "other-secret", account.session_token, account.region)
    assert "does not match" in (aws_wire.verify_sigv4(wrong, "POST", url, received, body) or "")


@pytest.mark.parametrize(
    ("status", "name", "kind"),
    [
        (429, "ThrottlingException", ErrorKind.PROVIDER_RATE_LIMITED),
        (503, "ServiceUnavailableException", ErrorKind.PROVIDER_OVERLOADED),
        (400, "ValidationException", ErrorKind.CALLER_BAD_REQUEST),
        (403, "AccessDeniedException", ErrorKind.PROVIDER_AUTH),
        (404, "ResourceNotFoundException", ErrorKind.GATEWAY_NOT_CONFIGURED),
        (408, "ModelTimeoutException", ErrorKind.PROVIDER_TIMEOUT),
        (500, "InternalServerException", ErrorKind.PROVIDER_ERROR),
    ],
)
def test_bedrock_exceptions_map_to_error_kinds(status: int, name: str, kind: ErrorKind) -> None:
    err = bedrock_error("bedrock", status, aws_wire.error_headers(name), b'{"message":"why"}')
    assert err.kind is kind and err.upstream_status == status
    assert err.message == f"Provider 'bedrock' (Bedrock) answered {name}: why"
    # Without the header, the body's __type still names the exception.
    body = orjson.dumps({"__type": f"com.amazon.coral#{name}", "message": "why"})
    assert bedrock_error("bedrock", status, {}, body).kind is kind


def test_self_signed_jwt_verifies_and_is_cached_until_near_expiry() -> None:
    key = make_service_account("proj-1")
    now = [1_900_000_000.0]
    token = SelfSignedJWT(ServiceAccount.load(orjson.dumps(key.info).decode()), clock=lambda: now[0])
    first = token.token()
    email = key.info["client_email"]
    claims = jwt.decode(
        first,
        key.public_key,
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=email,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == email and claims["exp"] - claims["iat"] == 3600
    assert jwt.get_unverified_header(first)["kid"] == key.info["private_key_id"]
    now[0] += 3000
    assert token.token() == first
    now[0] += 400  # within five minutes of expiry: a new token
    assert token.token() != first


def test_service_account_from_a_file_and_bad_input(tmp_path: pytest.TempPathFactory) -> None:
    key = make_service_account()
    path = tmp_path / "sa.json"  # type: ignore[operator]
    path.write_text(orjson.dumps(key.info).decode())
    assert ServiceAccount.load(str(path)).client_email == key.info["client_email"]
    with pytest.raises(ValueError, match="not a service-account key"):
        ServiceAccount.load('{"type": "authorized_user"}')


def test_cloud_settings_env_credentials_and_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLUICE_TEST_AWS_SECRET", raising=False)
    monkeypatch.setenv("SLUICE_TEST_AWS_ID", "AKID")
    doc = {
        "providers": {
            "bedrock": {
                "region": "us-east-1",
                "access_key_id": "env.SLUICE_TEST_AWS_ID",
                "secret_access_key": "env.SLUICE_TEST_AWS_SECRET",
                "models": {"claude-sonnet-4-5": "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
            },
            "vertex": {"region": "global", "credentials": "env.SLUICE_TEST_NO_SA"},
        }
    }
    config = parse_config(doc)
    bedrock = config.providers["bedrock"]
    assert bedrock.access_key_id is not None and bedrock.access_key_id.get_secret_value() == "AKID"
    assert bedrock.secret_access_key is None  # unset variable: the provider answers 503 until it is set
    assert any("no AWS credentials" in w for w in config.warnings())
    assert any("'vertex' has no service-account credentials" in w for w in config.warnings())
    with pytest.raises(ConfigError, match="bedrock needs a region"):
        parse_config({"providers": {"bedrock": {}}})
    with pytest.raises(ConfigError, match="azure needs base_url"):
        parse_config({"providers": {"azure": {"keys": [{"name": "k", "value": "x"}]}}})


def test_a_corrupt_frame_breaks_the_stream() -> None:
    good = aws_wire.chunk(b'{"type":"message_stop"}')
    corrupt = good[:-1] + bytes([good[-1] ^ 0xFF])  # the message CRC no longer matches
    with pytest.raises(SluiceError) as broken:
        invoke.InvokeStreamToSSE().feed(corrupt)
    assert broken.value.kind is ErrorKind.PROVIDER_STREAM_BROKEN


def test_bedrock_serves_bedrock_ids_and_claude_names_only() -> None:
    cfg = ProviderConfig(type="bedrock", region="us-east-1", models={"llama": "meta.llama3-3-70b-instruct-v1:0"})
    provider = BedrockProvider("bedrock", cfg, UpstreamClient(), Timeouts())
    assert [provider.serves(m) for m in ("llama", "claude-opus-4-1", "us.amazon.nova-pro-v1:0", "gpt-5")] == [
        True,
        True,
        True,
        False,
    ]
    assert provider.speaks(WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "claude-opus-4-1")
    assert not provider.speaks(WireFormat.ANTHROPIC_MESSAGES, Operation.GENERATE, "llama")
    assert provider.wire_for("llama", Operation.GENERATE) is WireFormat.BEDROCK_CONVERSE
    assert provider.keys == []  # no credentials: the engine answers 503 rather than call unsigned


def _frames_by_botocore(data: bytes) -> list[tuple[dict[str, str], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [({str(k): str(v) for k, v in m.headers.items()}, bytes(m.payload)) for m in buffer]


def _typed_header(name: str, kind: int, value: bytes) -> bytes:
    return bytes([len(name)]) + name.encode() + bytes([kind]) + value


def _raw_frame(head: bytes, payload: bytes) -> bytes:
    prelude = struct.pack(">II", 16 + len(head) + len(payload), len(head))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + head + payload
    return message + struct.pack(">I", zlib.crc32(message))


def test_the_frame_decoder_reads_what_botocore_reads_whatever_the_chunking() -> None:
    # Every header type botocore knows, then string frames as Bedrock sends them.
    typed = b"".join(
        [
            _typed_header("t", 0, b""),
            _typed_header("f", 1, b""),
            _typed_header("b", 2, b"\xff"),
            _typed_header("s", 3, b"\x80\x00"),
            _typed_header("i", 4, b"\x00\x00\x01\x00"),
            _typed_header("l", 5, b"\xff" * 8),
            _typed_header("a", 6, b"\x00\x03abc"),
            _typed_header("u", 9, bytes(range(16))),
            _typed_header(":event-type", 7, b"\x00\x05chunk"),
        ]
    )
    data = _raw_frame(typed, b"payload") + b"".join(
        es.event_frame(kind, {"n": n, "text": "ünï" * n}) for n, kind in enumerate(["messageStart", "metadata"] * 5)
    )
    expected = _frames_by_botocore(data)
    assert len(expected) == 11
    for size in (1, 3, 16, 100, len(data)):
        decoder = es.FrameDecoder()
        frames = [f for i in range(0, len(data), size) for f in decoder.feed(data[i : i + size])]
        assert [(f.headers, f.payload) for f in frames] == expected


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f[:5] + bytes([f[5] ^ 1]) + f[6:],  # the headers length (prelude CRC)
        lambda f: f[:20] + bytes([f[20] ^ 1]) + f[21:],  # a header byte (message CRC)
        lambda f: f[:-1] + bytes([f[-1] ^ 1]),  # the message CRC itself
        lambda f: _raw_frame(_typed_header("x", 7, b"\x00\xff") + b"", b""),  # a value past the headers
        lambda f: _raw_frame(_typed_header("x", 42, b""), b""),  # an unknown header type
        lambda f: _raw_frame(_typed_header("x", 7, b"\x00\x02\xff\xfe"), b""),  # not UTF-8
    ],
)
def test_the_frame_decoder_refuses_what_is_corrupt(damage: object) -> None:
    good = es.event_frame("metadata", {"usage": {}})
    bad = damage(good)  # type: ignore[operator]
    with pytest.raises(SluiceError) as broken:
        es.FrameDecoder().feed(bad)
    assert broken.value.kind is ErrorKind.PROVIDER_STREAM_BROKEN


def test_the_frame_decoder_refuses_impossible_lengths_before_waiting_for_them() -> None:
    for total, head in ((2**32 - 1, 0), (20, 10), (16 + es.MAX_HEADERS + 1, es.MAX_HEADERS + 1)):
        prelude = struct.pack(">II", total, head)
        with pytest.raises(SluiceError):
            es.FrameDecoder().feed(prelude + struct.pack(">I", zlib.crc32(prelude)))
