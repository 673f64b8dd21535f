"""The same tool call failing over and over in one conversation, read from the request body
(each request of an agent carries its whole conversation so far).

A call is its tool name and its arguments in canonical form (parsed and key-sorted when they are
JSON, so a model re-spacing them does not make a new call); a failure is what each format says
is one:
- Anthropic Messages: a `tool_result` block with `is_error: true` for the `tool_use` id;
- Bedrock Converse: a `toolResult` with `status: "error"`;
- Gemini: a `functionResponse` whose `response` holds an `error`;
- OpenAI Chat and Responses, which have no error flag: a tool output that is a JSON object with
  an `error`, or a non-zero `exit_code` (also under `metadata`, as Codex sends), or whose text
  starts with "Error" or with "Exit code: N" for a non-zero N (what Codex's shell tool prints).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import orjson

_EXIT = re.compile(r"^\s*exit code:\s*(-?\d+)", re.IGNORECASE)


def _canonical(args: Any) -> str:
    if isinstance(args, str):
        text: str = args
        try:
            args = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text.strip()
    try:
        return orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return repr(args)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content if isinstance(p, dict | str)
        )
    return ""


def _openai_failed(output: Any) -> bool:
    text = _text_of(output).lstrip()
    if text.startswith("{"):
        try:
            parsed = orjson.loads(text)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):
            if parsed.get("error"):
                return True
            meta = parsed.get("metadata")
            code = parsed.get("exit_code", meta.get("exit_code") if isinstance(meta, dict) else None)
            return isinstance(code, int) and code != 0
    match = _EXIT.match(text)
    if match:
        return int(match.group(1)) != 0
    return text[:5].lower() == "error"


Calls = dict[str, tuple[str, Any]]  # call id -> (tool name, its arguments as sent)


def _fail(calls: Calls, call_id: Any, failed: Counter[tuple[str, str]]) -> None:
    found = calls.get(str(call_id))
    if found is not None:  # canonical only for the calls that failed: most never do
        failed[found[0], _canonical(found[1])] += 1


def failing_calls(doc: dict[str, Any]) -> Counter[tuple[str, str]]:
    """How many times each (tool name, canonical arguments) failed in the conversation."""
    calls: Calls = {}
    failed: Counter[tuple[str, str]] = Counter()
    messages = doc.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                _message(message, calls, failed)
    items = doc.get("input")
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict):
                _responses_item(item, calls, failed)
    contents = doc.get("contents")
    if isinstance(contents, list):
        _gemini(contents, failed)
    return failed


def _message(message: dict[str, Any], calls: Calls, failed: Counter[tuple[str, str]]) -> None:
    for call in message.get("tool_calls") or ():  # OpenAI Chat: the assistant's calls
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            function = call["function"]
            calls[str(call.get("id"))] = (str(function.get("name")), function.get("arguments"))
    if message.get("role") == "tool":  # OpenAI Chat: one tool's output
        if _openai_failed(message.get("content")):
            _fail(calls, message.get("tool_call_id"), failed)
        return
    content = message.get("content")
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("tool_use", "server_tool_use"):
            calls[str(block.get("id"))] = (str(block.get("name")), block.get("input"))
        elif kind == "tool_result":
            if block.get("is_error") is True:
                _fail(calls, block.get("tool_use_id"), failed)
        elif isinstance(block.get("toolUse"), dict):  # Bedrock Converse
            use = block["toolUse"]
            calls[str(use.get("toolUseId"))] = (str(use.get("name")), use.get("input"))
        elif isinstance(block.get("toolResult"), dict):
            result = block["toolResult"]
            if result.get("status") == "error":
                _fail(calls, result.get("toolUseId"), failed)


def _responses_item(item: dict[str, Any], calls: Calls, failed: Counter[tuple[str, str]]) -> None:
    kind = item.get("type")
    if kind == "function_call":
        calls[str(item.get("call_id"))] = (str(item.get("name")), item.get("arguments"))
    elif kind == "custom_tool_call":
        calls[str(item.get("call_id"))] = (str(item.get("name")), item.get("input"))
    elif kind == "local_shell_call":
        calls[str(item.get("call_id"))] = ("local_shell", item.get("action"))
    elif kind in ("function_call_output", "custom_tool_call_output", "local_shell_call_output"):
        if _openai_failed(item.get("output")):
            _fail(calls, item.get("call_id"), failed)


def _gemini(contents: list[Any], failed: Counter[tuple[str, str]]) -> None:
    # Gemini pairs a response with its call by id when it has one, else by name, in order.
    pending: dict[str, list[tuple[str, Any]]] = {}
    by_id: dict[str, tuple[str, Any]] = {}
    for content in contents:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            call = part.get("functionCall")
            if isinstance(call, dict):
                found = (str(call.get("name")), call.get("args"))
                if call.get("id"):
                    by_id[str(call["id"])] = found
                else:
                    pending.setdefault(found[0], []).append(found)
            answer = part.get("functionResponse")
            if isinstance(answer, dict):
                matched = by_id.pop(str(answer.get("id")), None) if answer.get("id") else None
                if matched is None:
                    queue = pending.get(str(answer.get("name")))
                    matched = queue.pop(0) if queue else None
                response = answer.get("response")
                if matched is not None and isinstance(response, dict) and response.get("error"):
                    failed[matched[0], _canonical(matched[1])] += 1
