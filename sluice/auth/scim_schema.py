"""The SCIM discovery documents (RFC 7644 section 4): what this server supports, its resource
types, and the schemas of the attributes it keeps."""

from __future__ import annotations

from typing import Any

from sluice.auth.scim import ENTERPRISE, GROUP_SCHEMA, LIST_SCHEMA, MAX_PAGE, USER_SCHEMA

_SPC = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
_RT = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"


def service_provider_config() -> dict[str, Any]:
    return {
        "schemas": [_SPC],
        "documentationUri": "https://github.com/sluice/sluice/blob/main/docs/sso-scim.md",
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_PAGE},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "The SCIM token whose sha256 is in auth.scim.token_sha256",
                "primary": True,
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig"},
    }


def resource_types() -> list[dict[str, Any]]:
    return [
        {
            "schemas": [_RT],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{"schema": ENTERPRISE, "required": False}],
            "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/User"},
        },
        {
            "schemas": [_RT],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "schema": GROUP_SCHEMA,
            "meta": {"resourceType": "ResourceType", "location": "/scim/v2/ResourceTypes/Group"},
        },
    ]


def _attr(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "type": kind,
        "multiValued": False,
        "required": False,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": "none",
    }
    return {**base, **extra}


def _sub(name: str, *subs: str) -> dict[str, Any]:
    return _attr(name, "complex", multiValued=True, subAttributes=[_attr(s) for s in subs])


def schemas() -> list[dict[str, Any]]:
    user = [
        _attr("userName", required=True, uniqueness="server"),
        _attr("externalId", caseExact=True),
        _attr("displayName"),
        _attr("active", "boolean"),
        _attr("name", "complex", subAttributes=[_attr(s) for s in ("formatted", "givenName", "familyName")]),
        _sub("emails", "value", "type", "primary"),
    ]
    group = [
        _attr("displayName", required=True, uniqueness="server"),
        _attr("externalId", caseExact=True),
        _sub("members", "value", "display", "$ref"),
    ]
    enterprise = [_attr(a) for a in ("employeeNumber", "department", "organization", "costCenter")]
    return [
        _schema(USER_SCHEMA, "User", user),
        _schema(GROUP_SCHEMA, "Group", group),
        _schema(ENTERPRISE, "EnterpriseUser", enterprise),
    ]


def _schema(schema_id: str, name: str, attributes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [_SCHEMA],
        "id": schema_id,
        "name": name,
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": f"/scim/v2/Schemas/{schema_id}"},
    }


def listing(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(resources),
        "startIndex": 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }
