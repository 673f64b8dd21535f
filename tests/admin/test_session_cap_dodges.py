"""Ways around a session cap that must not work, through the gateway in process."""

from __future__ import annotations

from pathlib import Path

from tests.admin.conftest import Client, admin_config, start

SECRET = "sk-sluice-capped-0000000000000000"


async def _ask(c: Client, model: str, session: str | None = "s-1", **extra: object) -> tuple[int, str]:
    headers = {"x-api-key": SECRET, "anthropic-version": "2023-06-01"}
    if session:
        headers["x-claude-code-session-id"] = session
    body = {"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}
    reply = await c.post("/v1/messages", json=body, token=None, headers=headers)
    return reply.status, reply.body.decode()


async def test_an_unpriced_model_does_not_pass_a_session_cap_at_zero_dollars(tmp_path: Path) -> None:
    config = admin_config(tmp_path)
    config["virtual_keys"] = [{"id": "vk-capped", "value": SECRET, "provider_configs": [{"provider": "fake"}]}]
    config["session_caps"] = [{"id": "cap", "virtual_key_id": "vk-capped", "max_cost": 1}]
    services, c = await start(config)
    try:
        assert (await _ask(c, "echo"))[0] == 200  # priced in admin_config
        status, body = await _ask(c, "some-unpriced-model")
        assert status == 403 and "price" in body
    finally:
        await services.stop()
