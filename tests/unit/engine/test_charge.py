"""Reserve, extend, settle and release, reached through the engine: every request is settled
once, from one owner, and every failed attempt gives its reservation back."""

from __future__ import annotations

from pathlib import Path

from sluice.core.errors import ErrorKind, SluiceError
from sluice.engine.charge import Charge
from tests.unit.engine.stub import KEY_ID, Stall, make_rig, message, stream_events


async def test_a_whole_answer_is_settled_before_it_is_returned_and_only_once(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    ctx = rig.context()
    rig.primary.script.steps = [message(input_tokens=10, output_tokens=5)]
    outcome = await rig.engine.run(ctx, rig.inbound())
    assert outcome.status == 200 and rig.calls == ["admit", "settle"]
    assert await rig.spend() == [(ctx.request_id, 15)]
    await rig.engine.finish(ctx)
    await rig.engine.settle(ctx)  # idempotent: a second call charges nothing
    assert rig.calls == ["admit", "settle"] and await rig.spend() == [(ctx.request_id, 15)]
    [entry] = rig.recorder.entries
    assert entry.cost_pico == ctx.cost_pico > 0 and entry.attempts == [
        {
            "model": "m",
            "outcome": "ok",
            "provider": "primary",
            "key": ctx.provider_key_name,
            "status": 200,
            "finish_reasons": ["end_turn"],
        }
    ]


async def test_a_stream_is_settled_before_its_last_event_goes_out(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    ctx = rig.context()
    rig.primary.script.steps = [stream_events(input_tokens=12, output_tokens=7)]
    outcome = await rig.engine.run(ctx, rig.inbound(stream=True))
    assert outcome.chunks is not None and ctx.ttfb is not None
    seen: list[bytes] = []
    async for chunk in outcome.chunks:
        if b"message_stop" in chunk:
            assert rig.calls == ["admit", "settle"]  # durable before the caller gets the end
        seen.append(chunk)
    assert b"message_stop" in b"".join(seen) and ctx.answer_complete
    await rig.engine.finish(ctx)
    assert rig.calls == ["admit", "settle"] and await rig.spend() == [(ctx.request_id, 19)]


async def test_a_stream_that_breaks_is_billed_what_it_streamed(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    ctx = rig.context()
    events = stream_events(text="x" * 150)
    broken = SluiceError(ErrorKind.PROVIDER_STREAM_BROKEN, "gone")
    rig.primary.script.steps = [[*events[:3], broken]]
    outcome = await rig.engine.run(ctx, rig.inbound(stream=True))
    assert outcome.chunks is not None
    try:
        async for _ in outcome.chunks:
            pass
    except SluiceError as err:
        assert err is broken
    await rig.engine.finish(ctx)
    assert rig.calls == ["admit", "settle"]
    [(_, tokens)] = await rig.spend()
    assert ctx.usage.output_tokens == 50 and tokens == ctx.usage.input_tokens + 50  # 150 chars / 3


async def test_a_stream_that_fails_before_its_first_byte_is_retried_and_its_reservation_given_back(
    tmp_path: Path,
) -> None:
    rig = await make_rig(tmp_path)
    ctx = rig.context()
    rig.primary.script.steps = [Stall(1.0), stream_events()]  # the first stream sends nothing in time
    outcome = await rig.engine.run(ctx, rig.inbound(stream=True))
    assert outcome.chunks is not None
    assert [a.outcome for a in ctx.attempts] == ["PROVIDER_TIMEOUT", "ok"]
    assert rig.calls == ["admit", "release", "admit"]
    async for _ in outcome.chunks:
        pass
    await rig.engine.finish(ctx)
    assert rig.calls == ["admit", "release", "admit", "settle"]


async def test_a_concurrency_limit_of_one_is_free_again_after_every_kind_of_end(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    rig.primary.script.steps = [
        SluiceError(ErrorKind.PROVIDER_UNREACHABLE, "refused"),
        message(),
        stream_events(),
    ]
    for stream in (False, True, False):
        ctx = rig.context()
        outcome = await rig.engine.run(ctx, rig.inbound(stream=stream))
        if outcome.chunks is not None:
            async for _ in outcome.chunks:
                pass
        await rig.engine.finish(ctx)
    # Each run was admitted past max_concurrent_requests=1: the one before it gave its slot back.
    assert rig.calls.count("admit") == 4 and rig.calls.count("settle") == 3


async def test_charge_settles_once_and_releases_only_what_it_holds(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path)
    charge = Charge(rig.limits, rig.key, "req-x", 0.0)
    await charge.release()  # nothing held: nothing to give back
    assert rig.calls == []
    await charge.reserve(0, 10, 5, 5)
    assert charge.held and charge.limited and charge.budget_headers["x-sluice-budget-id"] == "daily"
    assert await charge.settle(10, 10) is True
    assert await charge.settle(10, 10) is False  # idempotent
    await charge.release()  # settled: nothing to give back
    assert rig.calls == ["admit", "settle"]
    assert [r for r in await rig.spend()] == [("req-x", 10)] and KEY_ID


TOKEN_LIMIT = {
    "rate_limits": [{"id": "tokens", "virtual_key_id": KEY_ID, "token_max_limit": 200, "token_reset_duration": "1d"}]
}


async def test_a_stream_that_outgrows_what_the_limits_allow_is_cut_and_billed_what_it_streamed(
    tmp_path: Path,
) -> None:
    rig = await make_rig(tmp_path, governance=TOKEN_LIMIT)
    ctx = rig.context()
    rig.primary.script.steps = [stream_events(text="y" * 400)]  # ~133 tokens: past the 100 reserved
    outcome = await rig.engine.run(ctx, rig.inbound(stream=True))
    assert outcome.chunks is not None
    sent = []
    try:
        async for chunk in outcome.chunks:
            sent.append(chunk)
    except SluiceError as err:
        assert err.kind.fault == "policy"
    assert len(sent) == 2  # message_start and the block's start; the text that outgrew it is not sent
    await rig.engine.finish(ctx)
    assert rig.calls == ["admit", "extend", "settle"]
    assert ctx.usage.output_tokens == 133


async def test_a_stream_cut_before_its_first_byte_is_refused_and_still_billed(tmp_path: Path) -> None:
    rig = await make_rig(tmp_path, governance=TOKEN_LIMIT)
    ctx = rig.context()
    rig.primary.script.steps = [[b"".join(stream_events(text="y" * 400, output_tokens=133))]]  # one piece
    try:
        await rig.engine.run(ctx, rig.inbound(stream=True))
    except SluiceError as err:
        assert err.kind.fault == "policy"
    else:
        raise AssertionError("the stream was not cut")
    await rig.engine.finish(ctx)
    assert rig.calls == ["admit", "extend", "settle"]  # the provider generated it: billed, not given back
    [(_, tokens)] = await rig.spend()
    assert tokens == ctx.usage.total and ctx.usage.output_tokens == 133
