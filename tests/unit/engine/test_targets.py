"""The retry and fallback loop, decided on error kinds alone, without HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.core.errors import ErrorKind, SluiceError
from sluice.engine.targets import Step, next_step
from tests.unit.engine.stub import Rig, failure, make_rig, message


@pytest.mark.parametrize(
    "kind,primary,last,retries_left,step",
    [
        (ErrorKind.PROVIDER_RATE_LIMITED, True, False, True, Step.RETRY),
        (ErrorKind.PROVIDER_RATE_LIMITED, True, False, False, Step.NEXT),
        (ErrorKind.PROVIDER_ERROR, False, True, False, Step.STOP),
        (ErrorKind.PROVIDER_AUTH, True, False, True, Step.NEXT),  # another key or provider, not the same again
        (ErrorKind.CALLER_BAD_REQUEST, True, False, True, Step.STOP),  # a provider's 400 is the caller's
        (ErrorKind.PROVIDER_REFUSED, True, False, True, Step.STOP),  # a 501: nothing will change it
        (ErrorKind.POLICY_BUDGET_EXCEEDED, True, False, True, Step.STOP),  # the request itself is refused
        (ErrorKind.POLICY_MODEL_DENIED, False, False, True, Step.NEXT),  # a fallback the key may not use
        (ErrorKind.POLICY_MODEL_DENIED, False, True, True, Step.STOP),
        (ErrorKind.CALLER_UNTRANSLATABLE, False, False, True, Step.NEXT),
        (ErrorKind.CALLER_UNTRANSLATABLE, True, False, True, Step.STOP),
    ],
)
def test_next_step_by_kind(kind: ErrorKind, primary: bool, last: bool, retries_left: bool, step: Step) -> None:
    assert next_step(kind, primary=primary, last_target=last, retries_left=retries_left) is step


async def run(rig: Rig, model: str = "primary/m") -> tuple[object, list[dict[str, object]]]:
    ctx = rig.context()
    try:
        outcome: object = await rig.engine.run(ctx, rig.inbound(model))
    except SluiceError as err:
        outcome = err
    await rig.engine.finish(ctx)
    return outcome, [a.as_dict() for a in ctx.attempts]


async def test_a_429_is_retried_with_the_other_key_and_its_reservation_given_back(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(429, {"retry-after": "0"}), message()]
    outcome, attempts = await run(rig)
    assert getattr(outcome, "status", None) == 200
    assert [a["outcome"] for a in attempts] == ["upstream 429", "ok"]
    assert len({call.key.name for call in rig.primary.calls if call.key}) == 2  # rotated
    assert rig.calls == ["admit", "release", "admit", "settle"]


async def test_a_provider_400_reaches_the_caller_as_it_is_without_retry_or_fallback(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(400)]
    outcome, _attempts = await run(rig)
    assert getattr(outcome, "status", None) == 400 and b"upstream said 400" in (getattr(outcome, "body", b"") or b"")
    assert len(rig.primary.calls) == 1 and rig.backup.calls == []
    assert rig.calls == ["admit", "settle"]  # an answer the caller gets is charged (its request counts)
    [entry] = rig.recorder.entries
    assert (entry.status, entry.decision, entry.reason) == (400, "error", "provider answered 400")


async def test_failures_on_every_retry_fall_back_to_the_next_target(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(500), failure(503)]
    outcome, attempts = await run(rig)
    assert getattr(outcome, "status", None) == 200
    assert getattr(outcome, "headers", {})["x-sluice-fallback"] == "backup/m"
    assert [(a.get("provider"), a["outcome"]) for a in attempts] == [
        ("primary", "upstream 500"),
        ("primary", "upstream 503"),
        ("backup", "ok"),
    ]
    assert rig.calls == ["admit", "release", "admit", "release", "admit", "settle"]
    assert len(await rig.spend()) == 1


async def test_the_last_targets_failure_is_the_answer_and_is_charged_once(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(500), failure(500)]
    rig.backup.script.steps = [failure(529), failure(529)]
    outcome, attempts = await run(rig)
    assert getattr(outcome, "status", None) == 529  # the provider's own answer, as before
    assert [a["outcome"] for a in attempts][-1] == "upstream 529"
    assert rig.calls.count("settle") == 1 and rig.calls.count("admit") == 4


async def test_a_retry_after_longer_than_the_gateway_waits_moves_on_or_answers(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(429, {"retry-after": "30"})]
    rig.backup.script.steps = [failure(429, {"retry-after": "30"})]
    outcome, _attempts = await run(rig)
    assert getattr(outcome, "status", None) == 429
    assert len(rig.primary.calls) == 1 and len(rig.backup.calls) == 1  # neither held the caller 30 s


async def test_an_open_breaker_on_the_last_target_is_said_not_an_internal_error(tmp_path: Path) -> None:
    # Found on the way: the old loop ended without an answer when the last target raised a
    # retryable error with a Retry-After longer than it waits (the open breaker's), and the
    # request failed with "Internal gateway error" (500) instead of the breaker's 502.
    rig = await make_rig(tmp_path, governance={"routing": {"circuit_breaker": {"failure_threshold": 1}}})
    rig.primary.script.steps = [failure(500), failure(500)]
    await run(rig, "primary/m")
    rig.key = type(rig.key)(rig.key.id, rig.key.name, "h", "h", rig.key.grants)  # no fallbacks
    outcome, _attempts = await run(rig, "primary/m")
    assert isinstance(outcome, SluiceError) and outcome.kind is ErrorKind.PROVIDER_UNREACHABLE
    assert "circuit breaker is open" in outcome.message
    assert len(rig.primary.calls) == 2  # the second request reached no provider


async def test_the_gateways_rejected_credential_is_not_shown_and_falls_back(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [failure(401)]
    outcome, attempts = await run(rig)
    assert getattr(outcome, "status", None) == 200 and attempts[0]["outcome"] == "PROVIDER_AUTH"
    rig.primary.script.steps = [failure(401)]
    rig.backup.script.steps = [failure(403)]
    outcome, _ = await run(rig)
    assert isinstance(outcome, SluiceError) and outcome.kind is ErrorKind.PROVIDER_AUTH
    assert outcome.message.startswith("Provider 'backup' rejected a request without credential")


async def test_a_connection_failure_is_retried_and_counts_against_the_key(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [SluiceError(ErrorKind.PROVIDER_UNREACHABLE, "refused"), message()]
    outcome, attempts = await run(rig)
    assert getattr(outcome, "status", None) == 200
    assert [a["outcome"] for a in attempts] == ["PROVIDER_UNREACHABLE", "ok"]
    assert rig.calls == ["admit", "release", "admit", "settle"]
