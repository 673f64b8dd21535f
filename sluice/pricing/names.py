"""The names a model goes by, so one price serves them all.

A model reaches pricing as the caller wrote it, as a provider's API spells it, or as an answer's
`model` field names it: `anthropic/claude-sonnet-4-5`, `claude-sonnet-4-5-20250929`,
`us.anthropic.claude-sonnet-4-5-20250929-v1:0` (Bedrock), `claude-sonnet-4-5@20250929` (Vertex),
`models/gemini-2.5-pro` (Gemini), or an Azure deployment's own name. `candidates` lists the
spellings to try, the most specific first, so a dated snapshot with a price of its own keeps it.
"""

from __future__ import annotations

import re

# Longer names are not model names: they are refused a price instead of being matched.
MAX_NAME_LENGTH = 256

_DATE_SUFFIX = re.compile(r"-(\d{8}|\d{4}-\d{2}-\d{2}|latest)$")
# Bedrock model ids and inference profiles: `[geo.]vendor.model[-vN[:M]]`
# (https://docs.aws.amazon.com/bedrock/latest/userguide/models-supported.html,
# https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html).
_BEDROCK_ID = re.compile(
    r"^(?:(?:us|eu|apac|au|jp|ca|us-gov|global)\.)?"
    r"(?:anthropic|openai|meta|amazon|mistral|cohere|deepseek|qwen|ai21|writer|moonshot|google)\.(.+)$"
)
_BEDROCK_VERSION = re.compile(r"-v\d+(?::\d+)?$")


def candidates(model: str, aliases: dict[str, str] | None = None) -> list[str]:
    """Every spelling to look a model up by, most specific first, without repeats."""
    if not model or len(model) > MAX_NAME_LENGTH:
        return []
    out = [model]
    if aliases and model in aliases:  # an Azure deployment named by its caller: price its model
        out.append(aliases[model])
    for name in list(out):
        if "/" in name:
            out.append(name.split("/", 1)[1])
            out.append(name.rsplit("/", 1)[1])
    for name in list(out):
        bedrock = _BEDROCK_ID.match(name)
        if bedrock:
            out.append(bedrock.group(1))
    for name in list(out):
        unversioned = _BEDROCK_VERSION.sub("", name)
        if unversioned != name:
            out.append(unversioned)
    for name in list(out):
        if "@" in name:  # Vertex: claude-sonnet-4-5@20250929
            base, _, version = name.partition("@")
            out.extend((f"{base}-{version}", base))
    for name in list(out):
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped != name:
            out.append(stripped)
    return list(dict.fromkeys(n for n in out if n))
