"""Tool names another vendor refuses, through the gateway with the official SDKs against the strict fakes: Claude
Code's long `mcp__<server>__<tool>` names on OpenAI and Gemini models, a Gemini-side name with `.` and `:` on Claude
and OpenAI models. The provider gets a valid name (the fakes refuse any other, as the real APIs do), the caller gets
its own name back, whole and streamed, and the next turn, which names the tool as the caller got it, is accepted."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import anthropic
import pytest
from google import genai
from google.genai import types

from tests.contract.sdk_calls import WEATHER_SCHEMA, needs_codecs
from tests.contract.test_translation_matrix import KEY, MODELS, matrix_config
from tests.fakes.upstream import FakeUpstreamThread
from tests.support import GatewayThread

LONG = "mcp__claude_code_plugin_marketplace_server__search_repository_issues_by_label_and_state"  # 86 characters
DOTTED = "workspace.files:read_file"
OPENAI_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@pytest.fixture(scope="module")
def gateway(upstream: FakeUpstreamThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayThread]:
    with GatewayThread(matrix_config(upstream.base_url), tmp_path_factory.mktemp("names")) as gw:
        yield gw


def sent_names(upstream: FakeUpstreamThread) -> list[str]:
    """The function names of the provider's last request, in its own format."""
    doc = upstream.requests[-1].json()
    if "contents" in doc:
        return [d["name"] for t in doc["tools"] for d in t["functionDeclarations"]]
    return [t.get("name") or t["function"]["name"] for t in doc["tools"]]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_claude_codes_long_mcp_tool_name_on_openai_and_gemini(
    gateway: GatewayThread, upstream: FakeUpstreamThread, provider: str, stream: bool
) -> None:
    needs_codecs("anthropic")
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=KEY, max_retries=0)
    tools: Any = [{"name": LONG, "description": "Search the issues", "input_schema": WEATHER_SCHEMA}]
    asked: Any = [{"role": "user", "content": "find the bug report; use a tool"}]
    kw: Any = {"model": MODELS[provider], "max_tokens": 200, "tools": tools, "messages": asked}
    choice: Any = {"type": "tool", "name": LONG}
    if stream:
        with client.messages.stream(**kw, tool_choice=choice) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(**kw, tool_choice=choice)
    [mapped] = sent_names(upstream)
    assert mapped != LONG and OPENAI_NAME.fullmatch(mapped)
    [use] = [b for b in first.content if b.type == "tool_use"]
    assert use.name == LONG  # Claude Code dispatches by its own name
    result: Any = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "found"}]}
    history: Any = [*asked, {"role": "assistant", "content": [b.model_dump() for b in first.content]}, result]
    second = client.messages.create(**{**kw, "messages": history})
    assert second.stop_reason == "end_turn" and sent_names(upstream) == [mapped]
    assert LONG not in upstream.requests[-1].body.decode()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_gemini_function_name_with_dots_and_colons_on_claude_and_openai(
    gateway: GatewayThread, upstream: FakeUpstreamThread, provider: str, stream: bool
) -> None:
    needs_codecs("gemini")
    client = genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=gateway.base_url))
    schema = types.Schema.model_validate(WEATHER_SCHEMA)
    declared = [types.Tool(function_declarations=[types.FunctionDeclaration(name=DOTTED, parameters=schema)])]
    forced = types.ToolConfig(
        function_calling_config=types.FunctionCallingConfig(
            mode=types.FunctionCallingConfigMode.ANY, allowed_function_names=[DOTTED]
        )
    )
    config = types.GenerateContentConfig(tools=declared, tool_config=forced)  # type: ignore[arg-type]
    prompt = "read the file; use a tool"
    model = MODELS[provider]
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=prompt, config=config))
    else:
        chunks = [client.models.generate_content(model=model, contents=prompt, config=config)]
    parts = [p for c in chunks for cand in c.candidates or [] for p in (cand.content.parts if cand.content else [])]
    calls = [p.function_call for p in parts if p.function_call]
    [mapped] = sent_names(upstream)
    assert mapped != DOTTED and OPENAI_NAME.fullmatch(mapped)
    assert [c.name for c in calls] == [DOTTED]
    answer = types.FunctionResponse(name=DOTTED, id=calls[0].id, response={"result": "the file"})
    contents: Any = [
        types.Content(role="user", parts=[types.Part(text=prompt)]),
        types.Content(role="model", parts=parts),
        types.Content(role="user", parts=[types.Part(function_response=answer)]),
    ]
    second = client.models.generate_content(
        model=model,
        contents=contents,
        config=types.GenerateContentConfig(tools=declared),  # type: ignore[arg-type]
    )
    assert second.text and sent_names(upstream) == [mapped]
    assert DOTTED not in upstream.requests[-1].body.decode()
