"""Schemathesis fuzzes the admin API from its own OpenAPI document, against a real gateway over a
real socket: no 5xx, every status, content type and body as documented."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, positive_data_acceptance

from tests.support import GatewayThread

TOKEN = "fuzz-bootstrap-token-0123456789abcdef"
# ignored_auth would resend our explicit header: the 401 of every endpoint without a credential is
# checked in test_rbac_matrix.py instead.
EXCLUDED = [ignored_auth]
# positive_data_acceptance expects every schema-valid body to be accepted. These bodies have rules
# JSON Schema cannot say (a routing rule's CEL expression must compile, a budget needs exactly one
# scope, durations like '1d', a provider's type follows from its name): they answer a precise 422,
# which the documented-status check still verifies.
SEMANTIC = (
    "/api/budgets",
    "/api/rate-limits",
    "/api/routing-rules",
    "/api/aliases",
    "/api/providers",
    "/api/mcp-servers",
    "/api/access-profiles",  # durations of its budgets and rate limits
    "/api/stops",  # a stop names its target unless it is the organisation's
    "/api/policy/simulate",  # its `config` is a whole config file, validated as `sluice serve` does
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SLUICE_ADMIN_TOKEN", TOKEN)
        mp.setenv("SLUICE_SECRETS_KEY", "fuzz secrets key")
        config: dict[str, Any] = {"providers": {"fake": {}}, "audit": {"hmac_key": "fuzz-audit-key-0123456789"}}
        with GatewayThread(config, tmp) as gw:
            yield gw


def test_admin_api_matches_its_openapi(gateway: GatewayThread) -> None:
    """Every operation, thirty generated cases each (the same ones every run). Driven through
    hypothesis directly: schemathesis' pytest plugin does not load under this pytest."""
    schema = schemathesis.openapi.from_url(f"{gateway.base_url}/api/openapi.json")
    headers = {"authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 60
    for operation in operations:
        excluded = EXCLUDED + ([positive_data_acceptance] if operation.path.startswith(SEMANTIC) else [])
        try:
            fuzz(operation, gateway.base_url, headers, excluded)
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.label}: {exc}"[:3000])
    assert not failures, "\n\n".join(failures)


def fuzz(operation: Any, base_url: str, headers: dict[str, str], excluded: list[Any]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=excluded)

    check()


def test_document_is_openapi_31(gateway: GatewayThread) -> None:
    import requests

    doc = requests.get(f"{gateway.base_url}/api/openapi.json", timeout=10).json()
    assert doc["openapi"] == "3.1.0"
    assert "/api/keys/{key_id}/rotate" in doc["paths"]
    assert doc["paths"]["/api/keys"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
