"""Gemini request field names in either spelling.

Google's REST API follows the proto3 JSON mapping, whose parsers accept a field's lowerCamelCase
JSON name (`parametersJsonSchema`) and its original proto name (`parameters_json_schema`) alike.
Clients use both: the Gemini CLI sends camelCase, some google-genai versions snake_case. The codec
reads camelCase, so a request is brought to camelCase first, field names only: the names that
are the caller's own data are left as they are, namely function arguments and results (`args`,
`response`), JSON-Schema values (`parametersJsonSchema`, `responseJsonSchema`), the property
names of a `Schema` (`parameters`, `responseSchema`), and free-form values (`labels`, `example`,
`default`, `partMetadata`).
"""

from __future__ import annotations

from typing import Any

# Values that are the caller's data (a protobuf Struct or Value, or a map with the caller's keys).
_OPAQUE = frozenset(
    {"args", "response", "parametersJsonSchema", "responseJsonSchema", "labels", "partMetadata", "example", "default"}
)
_SCHEMAS = frozenset({"parameters", "responseSchema"})  # Gemini's OpenAPI-style Schema messages
_SCHEMA_VALUES = frozenset({"enum", "required", "propertyOrdering", "example", "default"})


def camel(key: str) -> str:
    """`parameters_json_schema` -> `parametersJsonSchema`; other names as they are."""
    if "_" not in key or key.startswith("_"):
        return key
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_request(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a Gemini request body with every field name in camelCase."""
    return _message(doc)  # type: ignore[no-any-return]


def _message(value: Any) -> Any:
    if isinstance(value, list):
        return [_message(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = camel(key)
        if name in _OPAQUE:
            out[name] = item
        elif name in _SCHEMAS:
            out[name] = _schema(item)
        else:
            out[name] = _message(item)
    return out


def _schema(value: Any) -> Any:
    if isinstance(value, list):
        return [_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = camel(key)
        if name == "properties" and isinstance(item, dict):
            out[name] = {prop: _schema(sub) for prop, sub in item.items()}  # property names are the caller's
        elif name in _SCHEMA_VALUES:
            out[name] = item
        else:
            out[name] = _schema(item)
    return out
