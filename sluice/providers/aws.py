"""AWS request signing (SigV4, with botocore's own signer) and Bedrock's errors.

botocore is used for the signature only: it computes headers in memory and never opens a
connection, so the request still goes out through sluice's one upstream client (sluice.upstream).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from sluice.core.errors import ErrorKind
from sluice.providers.base import ProviderError

SERVICE = "bedrock"  # the signing name of bedrock-runtime


class SigV4Signer:
    def __init__(self, access_key_id: str, secret_access_key: str, session_token: str | None, region: str) -> None:
        self.region = region
        self._credentials = Credentials(access_key_id, secret_access_key, session_token or None)

    def headers(self, url: str, body: bytes, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers to send: `headers` plus x-amz-date, authorization (and the session token)."""
        request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
        SigV4Auth(self._credentials, SERVICE, self.region).add_auth(request)
        return {k.lower(): str(v) for k, v in request.headers.items()}


# Bedrock's exceptions (x-amzn-errortype) by what the gateway makes of them.
_KINDS: dict[str, ErrorKind] = {
    "ThrottlingException": ErrorKind.PROVIDER_RATE_LIMITED,
    "ModelNotReadyException": ErrorKind.PROVIDER_RATE_LIMITED,
    "ServiceQuotaExceededException": ErrorKind.PROVIDER_RATE_LIMITED,
    "ServiceUnavailableException": ErrorKind.PROVIDER_OVERLOADED,
    "InternalServerException": ErrorKind.PROVIDER_ERROR,
    "ModelErrorException": ErrorKind.PROVIDER_ERROR,
    "ModelStreamErrorException": ErrorKind.PROVIDER_ERROR,
    "ModelTimeoutException": ErrorKind.PROVIDER_TIMEOUT,
    "AccessDeniedException": ErrorKind.PROVIDER_AUTH,
    "UnrecognizedClientException": ErrorKind.PROVIDER_AUTH,
    "InvalidSignatureException": ErrorKind.PROVIDER_AUTH,
    "ExpiredTokenException": ErrorKind.PROVIDER_AUTH,
    "IncompleteSignatureException": ErrorKind.PROVIDER_AUTH,
    "ValidationException": ErrorKind.CALLER_BAD_REQUEST,
    # The model id does not exist in this account or region: the gateway's model map is wrong.
    "ResourceNotFoundException": ErrorKind.GATEWAY_NOT_CONFIGURED,
}
_BY_STATUS: dict[int, ErrorKind] = {
    400: ErrorKind.CALLER_BAD_REQUEST,
    401: ErrorKind.PROVIDER_AUTH,
    403: ErrorKind.PROVIDER_AUTH,
    404: ErrorKind.GATEWAY_NOT_CONFIGURED,
    408: ErrorKind.PROVIDER_TIMEOUT,
    429: ErrorKind.PROVIDER_RATE_LIMITED,
    503: ErrorKind.PROVIDER_OVERLOADED,
}


def error_type_of(headers: Mapping[str, str], body: bytes) -> str:
    """`ThrottlingException` from `x-amzn-errortype: ThrottlingException:http://internal...`, or
    from the body's `__type` (`...#ThrottlingException`) when the header is missing."""
    raw = headers.get("x-amzn-errortype", "")
    if not raw:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = {}
        raw = str(doc.get("__type", "")) if isinstance(doc, dict) else ""
    return raw.partition(":")[0].rpartition("#")[2]


def bedrock_error(provider: str, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
    kind_name = error_type_of(headers, body)
    kind = _KINDS.get(kind_name) or _BY_STATUS.get(status) or ErrorKind.PROVIDER_ERROR
    try:
        doc = orjson.loads(body)
        message = str(doc.get("message") or doc.get("Message") or "") if isinstance(doc, dict) else ""
    except orjson.JSONDecodeError:
        message = body.decode("utf-8", "replace")[:300]
    what = kind_name or f"HTTP {status}"
    retry_after = 1.0 if kind is ErrorKind.PROVIDER_RATE_LIMITED else None
    message = f"Provider '{provider}' (Bedrock) answered {what}: {message}".rstrip(": ")
    return ProviderError(kind, message, status, retry_after=retry_after)
