"""The OpenAPI 3.1 document of the admin API, generated from the endpoint table and its pydantic
models (OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what pydantic emits)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from sluice.http.admin.framework import Endpoint, ErrorBody

_PARAM = re.compile(r"{(\w+)}")
_ERRORS = {
    401: "No credential, or one no authenticator accepts",
    403: "The caller's roles do not allow this on this resource",
    404: "No such object",
    409: "Conflicts with the current state (exists already, still referred to, revoked)",
    422: "The request does not validate; `error.details` gives each field's path",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(endpoints: list[Endpoint], *, version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [(ErrorBody, "serialization")]
    for ep in endpoints:
        if ep.body is not None:
            models.append((ep.body, "validation"))
        if ep.response is not None:
            models.append((ep.response, "serialization"))
    unique = list(dict.fromkeys(models))
    refs, defs = models_json_schema(unique, ref_template="#/components/schemas/{model}")
    schemas = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        operation: dict[str, Any] = {
            "operationId": ep.operation_id,
            "summary": ep.summary,
            "tags": [ep.tag],
            "security": [{"bearer": []}],
            "x-sluice-action": ep.action,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
                for name in _PARAM.findall(ep.path)
            ],
            "responses": {},
        }
        if ep.description:
            operation["description"] = ep.description
        if ep.query is not None:
            operation["parameters"] += _query_parameters(ep.query)
        if ep.body is not None:
            operation["requestBody"] = {
                "required": any(f.is_required() for f in ep.body.model_fields.values()),
                "content": {"application/json": {"schema": refs[(ep.body, "validation")]}},
            }
        ok: dict[str, Any] = {"description": "OK" if ep.status < 300 else "Done"}
        if ep.response is not None:
            ok["content"] = {"application/json": {"schema": refs[(ep.response, "serialization")]}}
            if ep.csv:
                ok["content"]["text/csv"] = {"schema": {"type": "string"}}
        operation["responses"][str(ep.status)] = ok
        for status in sorted({401, 403, 422, *ep.errors}):
            operation["responses"][str(status)] = {
                "description": _ERRORS[status],
                "content": {"application/json": {"schema": _ref("ErrorBody")}},
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sluice admin API",
            "version": version,
            "description": "Virtual keys, governance configuration, usage and audit. See docs/admin-api.md.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        description = prop.pop("description", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if description:
            param["description"] = description
        params.append(param)
    return params
