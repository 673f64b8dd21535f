"""Model names are caller input, and several providers put them in URL paths (Gemini, Vertex,
Bedrock, Azure deployments). One rule decides which names the gateway takes (pure).

A caller's name may hold only the characters real model names use: ASCII letters and digits and
`. _ - ~ : @ +` (`claude-sonnet-4-5@20250929`, `us.anthropic.claude-haiku-4-5-20251001-v1:0`,
`ft:gpt-4o-mini:org:suffix:id`, `llama3:8b`), and `/` between non-empty segments: a
`provider/model` prefix (`openai/gpt-4o`) or a vendor's own namespaced name that travels in the
request body (`meta-llama/Llama-3.1-8B-Instruct` on an OpenAI-compatible server). Everything that
could change an upstream path, query or host is refused: `\\`, `?`, `#`, `%` (so no
percent-encoding, once or twice, of anything), whitespace, control and non-ASCII characters, `..`
and `.` segments, empty segments, over-long names.

A provider that puts the model in a URL path takes no `/` at all (`check_url_model`): the name
that reaches it after aliases and routing is checked again there, so neither the caller nor a
rule can make a path segment out of it. Providers still escape the name with
`urllib.parse.quote(name, safe="")` where they build the URL: the check says what is refused,
the escaping keeps what is accepted inert.
"""

from __future__ import annotations

import re

from sluice.core.errors import ErrorKind, SluiceError

MAX_LENGTH = 256
_ALLOWED = re.compile(r"[A-Za-z0-9._~:@+/-]+")
_SHOWN = 80  # characters of a refused name quoted back in the error


def model_name_problem(name: object) -> str | None:
    """Why `name` cannot be a model name, or None when it can."""
    if not isinstance(name, str) or not name:
        return "a model name must be a non-empty string"
    if len(name) > MAX_LENGTH:
        return f"a model name has at most {MAX_LENGTH} characters"
    if not _ALLOWED.fullmatch(name):
        return "a model name may hold only ASCII letters, digits and . _ - ~ : @ + /"
    if ".." in name:
        return "a model name may not contain '..'"
    # The parts between slashes, tested on the whole name (no list of parts per request): an
    # empty part is a slash at either end or two in a row, a '.' part is a lone dot between them.
    if name[0] == "/" or name[-1] == "/" or "//" in name:
        return "'/' in a model name only separates non-empty parts (provider/model)"
    if name == "." or name.startswith("./") or name.endswith("/.") or "/./" in name:
        return "a model name may not have a '.' part"
    return None


def check_model_name(name: str) -> str:
    """The caller's model name, or a 400 (CALLER_BAD_REQUEST) saying why it is refused."""
    problem = model_name_problem(name)
    if problem is not None:
        shown = _shown(name)
        raise SluiceError(
            ErrorKind.CALLER_BAD_REQUEST, f"Invalid model name {shown}: {problem}.", details={"model": shown}
        )
    return name


def check_url_model(name: str, provider: str) -> str:
    """A model name about to go into `provider`'s URL path: the caller's rule, and no `/`."""
    check_model_name(name)
    if "/" in name:
        raise SluiceError(
            ErrorKind.CALLER_BAD_REQUEST,
            f"Invalid model name {_shown(name)} for provider '{provider}': it puts the model in its URL "
            "path, so the name may not contain '/'.",
            details={"model": _shown(name)},
        )
    return name


def _shown(name: str) -> str:
    """The name as an ASCII-only quoted literal (control and odd characters escaped), cut short."""
    return ascii(name[:_SHOWN] + ("..." if len(name) > _SHOWN else ""))
