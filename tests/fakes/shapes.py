"""The JSON types the real APIs require of the request fields the fakes read, so a fake refuses a
wrong type with the provider's 400 (as the real API does) instead of crashing into a 500.

Sources: the official SDKs' typed request params, which mirror each API reference:
- Anthropic Messages (anthropic-sdk-python `types/message_create_params.py`): `messages` an array of
  objects with `role` and `content` (a string or an array of blocks), `tools` an array of objects,
  `tool_choice` an object, `system` a string or array, `stop_sequences` an array of strings,
  `metadata` and `thinking` objects, `stream` a boolean, `temperature` a number, `top_k` an integer.
  Errors: 400 `invalid_request_error`, "<field>: Input should be a valid <type>".
- OpenAI Chat Completions (openai-python `types/chat/completion_create_params.py`): `messages` an
  array of objects, `tools` an array of objects, `tool_choice` a string or object, `stream` a
  boolean, `stream_options`, `metadata`, `response_format` objects, `n`, `max_tokens`,
  `max_completion_tokens` integers, `user` a string, `logprobs` a boolean. Errors: 400
  "Invalid type for '<field>': expected <an X>, but got <a Y> instead."
- OpenAI Responses (`types/responses/response_create_params.py`) and Embeddings
  (`types/embedding_create_params.py`) likewise.
- Gemini generateContent (google-genai `types.GenerateContentConfig`/REST reference): `contents` an
  array of Content objects (each with a `parts` array), `generationConfig`, `systemInstruction`,
  `toolConfig` objects, `tools` and `safetySettings` arrays. Errors: 400 INVALID_ARGUMENT,
  "Invalid value at '<field>'".
"""

from __future__ import annotations

from typing import Any

_OBJECT, _ARRAY, _STRING, _BOOL, _INT, _NUMBER = "object", "array", "string", "boolean", "integer", "number"

ANTHROPIC = {
    "messages": (_ARRAY,),
    "tools": (_ARRAY,),
    "tool_choice": (_OBJECT,),
    "system": (_STRING, _ARRAY),
    "stop_sequences": (_ARRAY,),
    "metadata": (_OBJECT,),
    "thinking": (_OBJECT,),
    "stream": (_BOOL,),
    "temperature": (_NUMBER,),
    "top_k": (_INT,),
}
OPENAI_CHAT = {
    "messages": (_ARRAY,),
    "tools": (_ARRAY,),
    "tool_choice": (_STRING, _OBJECT),
    "stream": (_BOOL,),
    "stream_options": (_OBJECT,),
    "metadata": (_OBJECT,),
    "response_format": (_OBJECT,),
    "n": (_INT,),
    "max_tokens": (_INT,),
    "max_completion_tokens": (_INT,),
    "user": (_STRING,),
    "logprobs": (_BOOL,),
}
OPENAI_RESPONSES = {
    "input": (_STRING, _ARRAY),
    "instructions": (_STRING,),
    "stream": (_BOOL,),
    "tools": (_ARRAY,),
    "max_output_tokens": (_INT,),
    "background": (_BOOL,),
    "store": (_BOOL,),
    "previous_response_id": (_STRING,),
    "reasoning": (_OBJECT,),
    "metadata": (_OBJECT,),
    "text": (_OBJECT,),
    "stream_options": (_OBJECT,),
}
OPENAI_EMBEDDINGS = {
    "input": (_STRING, _ARRAY),
    "dimensions": (_INT,),
    "encoding_format": (_STRING,),
    "user": (_STRING,),
}
GEMINI = {
    "contents": (_ARRAY,),
    "generationConfig": (_OBJECT,),
    "systemInstruction": (_OBJECT,),
    "toolConfig": (_OBJECT,),
    "tools": (_ARRAY,),
    "safetySettings": (_ARRAY,),
}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _NUMBER
    if isinstance(value, str):
        return _STRING
    return _ARRAY if isinstance(value, list) else _OBJECT


def _fits(value: Any, allowed: tuple[str, ...]) -> bool:
    kind = json_type(value)
    return kind in allowed or (kind == _INT and _NUMBER in allowed)


def wrong_field(
    doc: dict[str, Any], spec: dict[str, tuple[str, ...]], *, null_content: bool = False
) -> tuple[str, str, str] | None:
    """(field, expected type, given type) of the first present field of the wrong JSON type, also
    one level down for the arrays of objects the fakes walk (messages, tools, contents).
    `null_content`: a message's content may be null (OpenAI Chat, an assistant turn with tool_calls)."""
    for field, allowed in spec.items():
        if field not in doc:
            continue
        value = doc[field]
        if not _fits(value, allowed):
            return field, " or ".join(allowed), json_type(value)
        if field in ("messages", "tools", "contents") and isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    return f"{field}[{i}]", _OBJECT, json_type(item)
                content = item.get("content")
                allowed_content = _fits(content, (_STRING, _ARRAY)) or (null_content and content is None)
                if field == "messages" and "content" in item and not allowed_content:
                    return f"{field}[{i}].content", "string or array", json_type(content)
                if field == "contents" and "parts" in item and not isinstance(item["parts"], list):
                    return f"{field}[{i}].parts", _ARRAY, json_type(item["parts"])
    return None


def anthropic_message(wrong: tuple[str, str, str]) -> str:
    field, expected, _ = wrong
    return f"{field.replace('[', '.').replace(']', '')}: Input should be a valid {expected.split(' or ')[0]}"


def openai_message(wrong: tuple[str, str, str]) -> str:
    field, expected, given = wrong
    return f"Invalid type for '{field}': expected {_a(expected)}, but got {_a(given)} instead."


def gemini_message(wrong: tuple[str, str, str]) -> str:
    field, expected, given = wrong
    return f"Invalid value at '{field}': expected {expected}, got {given}"


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind
