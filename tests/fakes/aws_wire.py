"""AWS wire details for the fake Bedrock upstream, written apart from sluice's own code so a
shared mistake cannot pass unnoticed: an event-stream frame encoder (prelude, headers, two
CRC32s) and a SigV4 verifier that recomputes the signature with botocore's own signer."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

# A real Bedrock chunk payload carries a random-length padding field `p` next to `bytes`.
_PADDING = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def frame(headers: Mapping[str, str], payload: bytes) -> bytes:
    encoded = b""
    for name, value in headers.items():
        raw = value.encode("utf-8")
        encoded += bytes([len(name)]) + name.encode("ascii") + b"\x07" + struct.pack("!H", len(raw)) + raw
    total_length = 4 + 4 + 4 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total_length, len(encoded))
    prelude_crc = struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    body = prelude + prelude_crc + encoded + payload
    return body + struct.pack("!I", binascii.crc32(body) & 0xFFFFFFFF)


def event(event_type: str, payload: dict[str, object]) -> bytes:
    return frame(
        {":event-type": event_type, ":content-type": "application/json", ":message-type": "event"},
        orjson.dumps(payload),
    )


def chunk(data: bytes, n: int = 0) -> bytes:
    return event("chunk", {"bytes": base64.b64encode(data).decode(), "p": _PADDING[: 10 + n % 40]})


def exception(exception_type: str, message: str) -> bytes:
    return frame(
        {":exception-type": exception_type, ":content-type": "application/json", ":message-type": "exception"},
        orjson.dumps({"message": message}),
    )


def error_headers(name: str) -> dict[str, str]:
    return {"x-amzn-errortype": f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/"}


_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<akid>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[^,]+),\s*Signature=(?P<sig>[0-9a-f]{64})$"
)


@dataclass
class AwsAccount:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    region: str


def verify_sigv4(
    account: AwsAccount, method: str, url: str, headers: Mapping[str, str], body: bytes, service: str = "bedrock"
) -> str | None:
    """None when the request carries a valid signature, else why not (Bedrock's own words where
    it has them). `headers` are the received ones, lower-case."""
    match = _AUTH.match(headers.get("authorization", ""))
    if match is None:
        return "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters."
    if match["akid"] != account.access_key_id:
        return "The security token included in the request is invalid."
    if (match["region"], match["service"]) != (account.region, service):
        return f"Credential should be scoped to a valid region/service, not {match['region']}/{match['service']}."
    stamp = headers.get("x-amz-date", "")
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "Missing or malformed X-Amz-Date."
    if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > 300:
        return "Signature expired."
    if account.session_token is not None and headers.get("x-amz-security-token") != account.session_token:
        return "The security token included in the request is invalid."
    signed = match["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        return "Host and X-Amz-Date must be signed."
    request = AWSRequest(method=method, url=url, data=body, headers={h: headers[h] for h in signed if h in headers})
    request.context["timestamp"] = stamp
    credentials = Credentials(account.access_key_id, account.secret_access_key, account.session_token)
    signer = SigV4Auth(credentials, service, account.region)
    if signer.signed_headers(signer.headers_to_sign(request)) != match["signed"]:
        return "The request signature we calculated does not match the signature you provided (signed headers)."
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    if expected != match["sig"]:
        return "The request signature we calculated does not match the signature you provided."
    return None
