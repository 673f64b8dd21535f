"""The same failing tool call, counted in each wire format's conversation shape."""

from __future__ import annotations

from typing import Any

from sluice.sessions.tool_loops import failing_calls


def _most(doc: dict[str, Any]) -> tuple[tuple[str, str], int] | None:
    found = failing_calls(doc)
    return found.most_common(1)[0] if found else None


def test_anthropic_counts_only_results_flagged_as_errors_and_ignores_key_order() -> None:
    messages: list[dict[str, Any]] = []
    for i, (args, error) in enumerate(
        [({"a": 1, "b": 2}, True), ({"b": 2, "a": 1}, True), ({"a": 1, "b": 2}, False), ({"a": 1, "b": 3}, True)]
    ):
        messages.append(
            {"role": "assistant", "content": [{"type": "tool_use", "id": f"t{i}", "name": "Bash", "input": args}]}
        )
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{i}", "is_error": error}]}
        )
    assert _most({"messages": messages}) == (("Bash", '{"a":1,"b":2}'), 2)


def test_a_result_for_an_unknown_call_id_counts_for_nothing() -> None:
    # A caller cannot make an innocent call look looped by pointing error results at it, nor the reverse.
    messages = [
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Read", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "nope", "is_error": True}]},
    ]
    assert _most({"messages": messages}) is None


def test_openai_chat_failures_are_read_from_the_outputs() -> None:
    messages: list[dict[str, Any]] = []
    outputs = ['{"error": "no such file"}', "Error: boom", "all good", '{"metadata": {"exit_code": 2}}', "Exit code: 0"]
    for i, output in enumerate(outputs):
        call = {"id": f"c{i}", "type": "function", "function": {"name": "sh", "arguments": '{ "cmd" : "ls" }'}}
        messages += [
            {"role": "assistant", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": output},
        ]
    assert _most({"messages": messages}) == (("sh", '{"cmd":"ls"}'), 3)


def test_responses_items_as_codex_sends_them() -> None:
    items: list[dict[str, Any]] = [{"type": "message", "role": "user", "content": "go"}]
    for i in range(4):
        items.append(
            {"type": "function_call", "call_id": f"f{i}", "name": "shell", "arguments": '{"command":["make"]}'}
        )
        out = "Exit code: 2\nWall time: 0.1 seconds" if i else '{"output":"ok","metadata":{"exit_code":0}}'
        items.append({"type": "function_call_output", "call_id": f"f{i}", "output": out})
    assert _most({"input": items}) == (("shell", '{"command":["make"]}'), 3)


def test_gemini_pairs_responses_by_name_in_order() -> None:
    contents: list[dict[str, Any]] = []
    for i in range(3):
        contents.append({"role": "model", "parts": [{"functionCall": {"name": "run", "args": {"x": 1}}}]})
        response = {"error": "failed"} if i else {"output": "fine"}
        contents.append({"role": "user", "parts": [{"functionResponse": {"name": "run", "response": response}}]})
    assert _most({"contents": contents}) == (("run", '{"x":1}'), 2)


def test_bedrock_converse_tool_results_with_error_status() -> None:
    messages = []
    for i in range(2):
        messages.append(
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": f"u{i}", "name": "t", "input": {}}}]}
        )
        messages.append({"role": "user", "content": [{"toolResult": {"toolUseId": f"u{i}", "status": "error"}}]})
    assert _most({"messages": messages}) == (("t", "{}"), 2)


def test_hostile_shapes_do_not_raise() -> None:
    for doc in ({"messages": "x"}, {"messages": [1, None, {"content": [1, {"type": "tool_use"}]}]}, {"input": [None]},
                {"contents": [{"parts": [{"functionResponse": {"response": "no"}}]}]}, {}):  # fmt: skip
        failing_calls(doc)  # type: ignore[arg-type]
