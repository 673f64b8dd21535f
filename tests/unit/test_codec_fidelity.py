"""Every field a translation writes is valid for the target API and model family: the real agents'
requests (tests/fixtures) translated for each vendor, checked against the vendors' documented limits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sluice.core.canonical import ChatRequest, Message, Reasoning, Text
from sluice.core.types import WireFormat
from sluice.formats.anthropic.codec import one_sampler_only
from sluice.formats.codecs import codec_for
from tests.unit.codec_helpers import sse_payloads

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(path: str) -> dict[str, Any]:
    return json.loads((FIXTURES / path).read_text())  # type: ignore[no-any-return]


def translate(source: WireFormat, doc: dict[str, Any], target: WireFormat, model: str) -> dict[str, Any]:
    request = codec_for(source).decode_request(doc, model if source is WireFormat.GEMINI else None)
    request.model = model
    return codec_for(target).encode_request(request)


# --- end-user ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES])
def test_claude_codes_user_id_becomes_an_openai_user_of_at_most_64_characters(target: WireFormat) -> None:
    # "user: string too long. Expected a string with maximum length 64" (OpenAI's limit; the
    # Responses API's safety_identifier, which replaces it, has the same maxLength).
    doc = fixture("claude_code/messages_request.json")
    assert len(doc["metadata"]["user_id"]) > 64
    out = translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-5.5")
    assert 0 < len(out["user"]) <= 64
    again = translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-5.5")
    assert again["user"] == out["user"]  # stable: one end user stays one id for abuse monitoring


def test_a_short_user_id_goes_as_it_is() -> None:
    request = ChatRequest("gpt-5.5", [Message("user", [Text("hi")])], user="user-123")
    assert codec_for(WireFormat.OPENAI_CHAT).encode_request(request)["user"] == "user-123"


def test_bedrock_request_metadata_stays_in_its_pattern() -> None:
    doc = fixture("claude_code/messages_request.json")
    out = translate(WireFormat.ANTHROPIC_MESSAGES, doc, WireFormat.BEDROCK_CONVERSE, "amazon.nova-pro-v1:0")
    assert re.fullmatch(r"[a-zA-Z0-9\s:_@$#=/+,.-]{1,256}", out["requestMetadata"]["user"])


def test_anthropic_user_id_stays_within_256_characters() -> None:
    request = ChatRequest("claude-sonnet-4-6", [Message("user", [Text("hi")])], user="x" * 300)
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert len(out["metadata"]["user_id"]) <= 256


# --- Claude sampling and thinking rules ----------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "one"),
    [
        ("claude-opus-4-1", True),
        ("claude-opus-4-1-20250805", True),
        ("claude-sonnet-4-5-20250929", True),
        ("claude-sonnet-4-6", True),
        ("claude-haiku-4-5", True),
        ("claude-opus-5", True),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", True),
        ("claude-opus-4-20250514", False),
        ("claude-sonnet-4-20250514", False),
        ("claude-3-7-sonnet-20250219", False),
        ("claude-3-5-haiku-20241022", False),
    ],
)
def test_the_families_that_take_temperature_or_top_p_not_both(model: str, one: bool) -> None:
    assert one_sampler_only(model) is one


def test_gemini_clis_sampling_reaches_a_new_claude_model_as_it_accepts_it() -> None:
    # Gemini CLI sends temperature 1, topP 0.95, topK 64 and a thinking budget of 8192.
    doc = fixture("gemini_cli/stream_generate_content_request.json")
    out = translate(WireFormat.GEMINI, doc, WireFormat.ANTHROPIC_MESSAGES, "claude-sonnet-4-6")
    assert out["temperature"] == 1 and "top_p" not in out  # not both, on Sonnet 4.5+
    assert "top_k" not in out  # thinking refuses top_k
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert out["max_tokens"] > out["thinking"]["budget_tokens"]  # the budget must stay below max_tokens


def test_an_older_claude_model_keeps_both_samplers() -> None:
    request = ChatRequest("claude-sonnet-4-20250514", [Message("user", [Text("hi")])], temperature=0.5, top_p=0.9)
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert (out["temperature"], out["top_p"]) == (0.5, 0.9)


def test_thinking_gives_way_to_a_temperature_other_than_1() -> None:
    request = ChatRequest(
        "claude-sonnet-4-6", [Message("user", [Text("hi")])], temperature=0.2, reasoning=Reasoning(budget_tokens=4096)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert "thinking" not in out and out["temperature"] == 0.2


def test_a_thinking_budget_is_kept_below_the_callers_max_tokens() -> None:
    request = ChatRequest(
        "claude-sonnet-4-6", [Message("user", [Text("hi")])], max_tokens=5000, reasoning=Reasoning(budget_tokens=8192)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert out["max_tokens"] == 5000 and out["thinking"]["budget_tokens"] == 5000 - 1024


def test_with_thinking_top_p_outside_its_range_is_dropped() -> None:
    request = ChatRequest(
        "claude-sonnet-4-20250514", [Message("user", [Text("hi")])], top_p=0.5, reasoning=Reasoning(budget_tokens=2048)
    )
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(request)
    assert "top_p" not in out and out["thinking"]["budget_tokens"] == 2048


# --- round-trip state: signed thinking and thought signatures -----------------------------------

ANTHROPIC = codec_for(WireFormat.ANTHROPIC_MESSAGES)
RESPONSES = codec_for(WireFormat.OPENAI_RESPONSES)
GEMINI = codec_for(WireFormat.GEMINI)
SIGNATURE = "EqQBCgIYAhIMsignedbyanthropic=="
CLAUDE_ANSWER = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "I should run it.", "signature": SIGNATURE},
        {"type": "redacted_thinking", "data": "EmwKAhgBEgyopaque"},
        {"type": "text", "text": "Running it."},
        {"type": "tool_use", "id": "toolu_01", "name": "exec_command", "input": {"cmd": "ls"}},
    ],
    "stop_reason": "tool_use",
    "usage": {"input_tokens": 10, "output_tokens": 5},
}
CLAUDE_BLOCKS = CLAUDE_ANSWER["content"][:2]  # type: ignore[index]


def claude_stream() -> bytes:
    def ev(name: str, body: dict[str, Any]) -> str:
        return f"event: {name}\ndata: {json.dumps(body)}\n\n"

    start = {**CLAUDE_ANSWER, "content": [], "stop_reason": None}
    out = ev("message_start", {"type": "message_start", "message": start})
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        ({"type": "thinking", "thinking": "", "signature": ""}, [
            {"type": "thinking_delta", "thinking": "I should run it."},
            {"type": "signature_delta", "signature": SIGNATURE},
        ]),
        ({"type": "redacted_thinking", "data": "EmwKAhgBEgyopaque"}, []),
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Running it."}]),
        ({"type": "tool_use", "id": "toolu_01", "name": "exec_command", "input": {}}, [
            {"type": "input_json_delta", "partial_json": '{"cmd": "ls"}'},
        ]),
    ]  # fmt: skip
    for i, (block, deltas) in enumerate(blocks):
        out += ev("content_block_start", {"type": "content_block_start", "index": i, "content_block": block})
        for delta in deltas:
            out += ev("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
        out += ev("content_block_stop", {"type": "content_block_stop", "index": i})
    out += ev(
        "message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}
    )
    return (out + ev("message_stop", {"type": "message_stop"})).encode()


def _restream(source: Any, target: Any, data: bytes, request: ChatRequest) -> list[tuple[str | None, Any]]:
    decoder, encoder = source.stream_decoder(), target.stream_encoder(request)
    out = b"".join(encoder.encode(e) for e in decoder.feed(data) + decoder.close()) + encoder.close()
    return sse_payloads(out)


def _codex_output(streamed: bool) -> list[dict[str, Any]]:
    request = ChatRequest("claude-sonnet-4-6", [], stream=streamed)
    if not streamed:
        answer = RESPONSES.encode_response(ANTHROPIC.decode_response(CLAUDE_ANSWER), request)
        return answer["output"]  # type: ignore[no-any-return]
    events = _restream(ANTHROPIC, RESPONSES, claude_stream(), request)
    return [d["item"] for n, d in events if n == "response.output_item.done"]


@pytest.mark.parametrize("streamed", [False, True])
def test_claudes_signed_thinking_goes_round_codex_and_back(streamed: bool) -> None:
    output = _codex_output(streamed)
    assert [i["type"] for i in output] == ["reasoning", "reasoning", "message", "function_call"]
    assert all(i["encrypted_content"] for i in output[:2])
    # Codex's next turn: its history with the items as it got them (include: reasoning.encrypted_content).
    turn = {
        "model": "claude-sonnet-4-6",
        "reasoning": {"summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list the files"}]},
            *output,
            {"type": "function_call_output", "call_id": "toolu_01", "output": "a.txt"},
        ],
    }
    out = codec_for(WireFormat.ANTHROPIC_MESSAGES).encode_request(RESPONSES.decode_request(turn))
    assert "thinking" in out  # Codex's reasoning setting still asks for thinking ...
    assistant = out["messages"][1]
    # ... and the assistant turn starts with Claude's own blocks, signature and all, as Anthropic requires.
    assert assistant["content"][:2] == CLAUDE_BLOCKS
    assert assistant["content"][-1]["id"] == "toolu_01"


@pytest.mark.parametrize("streamed", [False, True])
def test_claudes_signed_thinking_goes_round_gemini_cli_and_back(streamed: bool) -> None:
    request = ChatRequest("claude-sonnet-4-6", [], stream=streamed)
    if streamed:
        chunks = [d for _, d in _restream(ANTHROPIC, GEMINI, claude_stream(), request)]
        parts = [p for c in chunks for p in c["candidates"][0]["content"]["parts"]]
    else:
        parts = GEMINI.encode_response(ANTHROPIC.decode_response(CLAUDE_ANSWER), request)["candidates"][0]["content"][
            "parts"
        ]
    [call] = [p for p in parts if "functionCall" in p]
    assert call["thoughtSignature"]  # Gemini CLI sends a function call's signature back with it
    history = [p for p in parts if p.get("text") or "functionCall" in p]
    turn = {
        "contents": [
            {"role": "user", "parts": [{"text": "list the files"}]},
            {"role": "model", "parts": history},
            {"role": "user", "parts": [{"functionResponse": {"name": "exec_command", "response": {"output": "a"}}}]},
        ],
        "generationConfig": {"thinkingConfig": {"thinkingBudget": 2048}},
    }
    out = ANTHROPIC.encode_request(GEMINI.decode_request(turn, "claude-sonnet-4-6"))
    assistant = out["messages"][1]
    assert assistant["content"][:2] == CLAUDE_BLOCKS
    [use] = [b for b in assistant["content"] if b["type"] == "tool_use"]
    [result] = [b for b in out["messages"][2]["content"] if b["type"] == "tool_result"]
    assert result["tool_use_id"] == use["id"]


GEMINI_ANSWER = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "Write", "args": {"file_path": "/tmp/a", "content": "x"}},
                     "thoughtSignature": "CiQBjz1rX2signedbygemini"},
                ],
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
    "modelVersion": "gemini-3-pro-preview",
    "responseId": "resp-1",
}  # fmt: skip


@pytest.mark.parametrize("streamed", [False, True])
def test_geminis_thought_signature_goes_round_claude_code_and_back(streamed: bool) -> None:
    request = ChatRequest("gemini-3-pro-preview", [], stream=streamed)
    if streamed:
        data = f"data: {json.dumps(GEMINI_ANSWER)}\n\n".encode()
        events = _restream(GEMINI, ANTHROPIC, data, request)
        [use] = [d["content_block"] for n, d in events if n == "content_block_start"]
    else:
        [use] = ANTHROPIC.encode_response(GEMINI.decode_response(GEMINI_ANSWER), request)["content"]
    # Anthropic's tool_use ids are ^[a-zA-Z0-9_-]+$: the signature rides in it in that alphabet.
    assert use["type"] == "tool_use" and re.fullmatch(r"[A-Za-z0-9_-]+", use["id"])
    turn = {
        "model": "gemini-3-pro-preview",
        "max_tokens": 1000,
        "messages": [
            {"role": "user", "content": "write a file"},
            {"role": "assistant", "content": [{**use, "input": {"file_path": "/tmp/a", "content": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use["id"], "content": "ok"}]},
        ],
    }
    out = GEMINI.encode_request(ANTHROPIC.decode_request(turn))
    [call] = out["contents"][1]["parts"]
    assert call["thoughtSignature"] == "CiQBjz1rX2signedbygemini"  # where Gemini 3 requires it
    [result] = out["contents"][2]["parts"]
    assert result["functionResponse"]["id"] == call["functionCall"]["id"]  # the provider's own id again
    assert "sluice" not in json.dumps(out)


@pytest.mark.parametrize("streamed", [False, True])
def test_claudes_signed_thinking_goes_round_a_chat_caller_in_the_call_id(streamed: bool) -> None:
    chat = codec_for(WireFormat.OPENAI_CHAT)
    request = ChatRequest("claude-sonnet-4-6", [], stream=streamed)
    if streamed:
        events = _restream(ANTHROPIC, chat, claude_stream(), request)
        deltas = [d["choices"][0]["delta"] for _, d in events if isinstance(d, dict) and d.get("choices")]
        [call_id] = [c["id"] for delta in deltas for c in delta.get("tool_calls", []) if c.get("id")]
    else:
        call_id = chat.encode_response(ANTHROPIC.decode_response(CLAUDE_ANSWER), request)["choices"][0]["message"][
            "tool_calls"
        ][0]["id"]
    turn = {
        "model": "claude-sonnet-4-6",
        "reasoning_effort": "low",
        "messages": [
            {"role": "user", "content": "list the files"},
            {"role": "assistant", "content": "Running it.", "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'}},
            ]},
            {"role": "tool", "tool_call_id": call_id, "content": "a.txt"},
        ],
    }  # fmt: skip
    out = ANTHROPIC.encode_request(chat.decode_request(turn))
    assert out["messages"][1]["content"][:2] == CLAUDE_BLOCKS
    assert out["messages"][1]["content"][-1]["id"] == "toolu_01"
    assert out["messages"][2]["content"][0]["tool_use_id"] == "toolu_01"


@pytest.mark.parametrize(
    ("target", "pattern"),
    [
        (WireFormat.ANTHROPIC_MESSAGES, r"[A-Za-z0-9_-]{1,64}"),  # tool_use.id: ^[a-zA-Z0-9_-]+$
        (WireFormat.BEDROCK_CONVERSE, r"[A-Za-z0-9_-]{1,64}"),  # toolUseId: [a-zA-Z0-9_-]+, 1-64
        (WireFormat.OPENAI_CHAT, r".{1,40}"),  # tool_calls[].id: at most 40 characters
    ],
)
def test_another_vendors_call_ids_are_made_valid_for_the_target(target: WireFormat, pattern: str) -> None:
    # Chat-compatible vendors name calls `functions.Bash:0`; ids of other formats may be long.
    for call_id in ("functions.Bash:0", "call_" + "x" * 70):
        doc = {
            "model": "m",
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call_id, "type": "function", "function": {"name": "Bash", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": call_id, "content": "done"},
            ],
        }  # fmt: skip
        out = json.dumps(codec_for(target).encode_request(codec_for(WireFormat.OPENAI_CHAT).decode_request(doc)))
        ids = re.findall(r'"(?:id|tool_use_id|toolUseId|tool_call_id)": ?"([^"]*)"', out)
        assert len(ids) == 2 and ids[0] == ids[1] and all(re.fullmatch(pattern, i) for i in ids), (target, ids)


@pytest.mark.parametrize("target", [WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES])
def test_gemini_clis_sampling_reaches_an_openai_reasoning_model_as_defaults_only(target: WireFormat) -> None:
    # "Unsupported parameter: 'top_p' is not supported with this model" (GPT-5, the o-series).
    doc = fixture("gemini_cli/stream_generate_content_request.json")
    out = translate(WireFormat.GEMINI, doc, target, "gpt-5-mini")
    assert "top_p" not in out and out.get("temperature", 1) == 1
    assert translate(WireFormat.GEMINI, doc, target, "gpt-4o-mini")["top_p"] == 0.95  # other models keep it


def test_opus_4_7_and_later_get_adaptive_thinking() -> None:
    # "Claude 4.7 and later models do not support" manual extended thinking (budget_tokens).
    doc = fixture("gemini_cli/stream_generate_content_request_gemini3.json")
    out = translate(WireFormat.GEMINI, doc, WireFormat.ANTHROPIC_MESSAGES, "claude-opus-4-7")
    assert out["thinking"] == {"type": "adaptive"} and out["output_config"]["effort"] == "high"
    assert "top_p" not in out and "top_k" not in out


def test_a_system_turn_inside_the_conversation_reaches_bedrock_converse_alternating() -> None:
    # Converse has no system role in `messages` and refuses "A conversation must alternate between user and
    # assistant roles": the system turn is folded into a user turn and merged with its neighbours.
    request = ChatRequest(
        "amazon.nova-pro-v1:0",
        [Message("user", [Text("go")]), Message("system", [Text("notes")]), Message("user", [Text("more")])],
    )
    out = codec_for(WireFormat.BEDROCK_CONVERSE).encode_request(request)
    assert [m["role"] for m in out["messages"]] == ["user"]
    assert [b["text"] for b in out["messages"][0]["content"]] == ["go", "<system>\nnotes\n</system>", "more"]


@pytest.mark.parametrize("target", [WireFormat.OPENAI_CHAT, WireFormat.OPENAI_RESPONSES])
def test_claude_codes_thinking_reaches_an_openai_model_without_reasoning_as_nothing(target: WireFormat) -> None:
    # "Unsupported parameter: 'reasoning.effort' is not supported with this model" (gpt-4.1, gpt-4o...).
    doc = fixture("claude_code/messages_request.json")
    assert "reasoning_effort" not in translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-4o-mini")
    assert "reasoning" not in translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-4.1")
    on_gpt5 = translate(WireFormat.ANTHROPIC_MESSAGES, doc, target, "gpt-5-mini")
    assert on_gpt5.get("reasoning_effort") or on_gpt5.get("reasoning")  # a reasoning model still gets it
