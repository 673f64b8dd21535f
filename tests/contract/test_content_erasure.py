"""Erasure through a running gateway: content captured from a real (streamed) request is sealed
by digest, so erasing it leaves the record, its MAC and the signed checkpoints valid."""

from __future__ import annotations

from pathlib import Path

import anthropic

from sluice.audit.chain import verify
from sluice.cli import audit as audit_cli
from tests.contract.test_audit import KEY, config, records
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread


def test_captured_content_is_erased_and_the_chain_still_verifies(tmp_path: Path) -> None:
    with FakeUpstreamThread() as upstream:
        cfg = config(upstream.base_url, capture_content={"virtual_keys": ["vk-audited"]})
        with GatewayThread(cfg, tmp_path) as gateway:
            client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
            with client.messages.stream(
                model="claude-haiku-4-5", max_tokens=30, messages=[{"role": "user", "content": "my medical history"}]
            ) as stream:
                "".join(stream.text_stream)
            gateway.request_log()
            from sluice.app import open_retention

            erased = gateway.call(open_retention(gateway.services).erase_person(key="vk-audited", actor="cli:dpo"))
            found = records(gateway)
            keys = gateway.services.config.audit.keys()
            audit_config = gateway.services.config.audit
            store_url = gateway.services.config.store.url
    assert len(erased.records) == 1
    (request,) = [r for r in found if r.kind == "request"]
    assert request.data["content"]["erased"] is True and "medical" not in str(request.data)
    assert verify(found, keys).ok
    import asyncio

    from sluice.audit import checkpoints

    verdict = asyncio.run(audit_cli.verify_store(store_url, checkpoints.with_defaults(audit_config, store_url)))
    assert verdict.ok, verdict.problem  # the chain and the checkpoints signed before the erasure
