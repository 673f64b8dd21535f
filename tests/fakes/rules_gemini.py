"""What the Gemini API (``generateContent``, ``streamGenerateContent``; and Vertex AI's ``publishers/google`` models)
refuses. Google answers a 400 ``INVALID_ARGUMENT`` whose message is the text below.

``check(doc, model)`` returns the first refusal, or None."""

from __future__ import annotations

import re
from typing import Any

from tests.fakes import shapes
from tests.fakes.rules_kit import Refusal, as_dict, as_list, first_refusal, signed

SIGNATURE_KIND = "gemini"  # the signature kind of the thought signatures the fake puts on its function calls
# "skip_thought_signature_validator": the value Google documents for function calls that were not produced by the
# model (thought signatures guide, "FAQs", https://ai.google.dev/gemini-api/docs/thought-signatures).
SKIP_SIGNATURE = "skip_thought_signature_validator"
_GEMINI = re.compile(r"gemini-(\d+)(?:\.(\d+))?")
# FunctionDeclaration.name: "Must start with a letter or an underscore. Must be a-z, A-Z, 0-9, or contain
# underscores, dots, colons and dashes, with a maximum length of 64." (google-genai types,
# https://googleapis.github.io/java-genai/javadoc/google-genai/com.google.genai.types/-function-declaration/).
_FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.:-]{0,63}$")


def gemini_major(model: str) -> int | None:
    match = _GEMINI.search(model)
    return int(match.group(1)) if match else None


def _parts(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in as_list(content.get("parts")) if isinstance(p, dict)]


def _calls(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _parts(content) if "functionCall" in p or "function_call" in p]


def _responses(content: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in _parts(content) if "functionResponse" in p or "function_response" in p]


def _contents(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in as_list(doc.get("contents")) if isinstance(c, dict)]


def contents_present(doc: dict[str, Any], model: str) -> Refusal | None:
    # GenerateContentRequest.contents is required (API reference, https://ai.google.dev/api/generate-content).
    if not isinstance(doc.get("contents"), list) or not doc["contents"]:
        return Refusal("* GenerateContentRequest.contents: contents is not specified\n")
    return None


def roles(doc: dict[str, Any], model: str) -> Refusal | None:
    # Content.role: "Must be either 'user' or 'model'" (API reference, https://ai.google.dev/api/caching#Content);
    # the system prompt is systemInstruction.
    for content in _contents(doc):
        if content.get("role", "user") not in ("user", "model"):
            return Refusal("Please use a valid role: user, model.")
    return None


def non_empty_parts(doc: dict[str, Any], model: str) -> Refusal | None:
    # "* GenerateContentRequest.contents[1].parts: contents.parts must not be empty." (vercel/ai#3775,
    # langchain-ai/langchain-google#691, aaif-goose/goose#1585).
    for n, content in enumerate(as_list(doc.get("contents"))):
        if not isinstance(content, dict) or not _parts(content):
            return Refusal(f"* GenerateContentRequest.contents[{n}].parts: contents.parts must not be empty.\n")
    return None


def function_turns(doc: dict[str, Any], model: str) -> Refusal | None:
    # A function call turn follows a user turn or a function response turn; a function response turn follows the
    # function call turn it answers, with one response part per call part: "Please ensure that function call turn
    # comes immediately after a user turn or after a function response turn." (google-gemini/gemini-cli#11814),
    # "Please ensure that function response turn comes immediately after a function call turn."
    # (langchain-ai/langchain#27799, GoogleCloudPlatform/generative-ai#368), "Please ensure that the number of
    # function response parts is equal to the number of function call parts of the function call turn."
    # (google-gemini/gemini-cli#17208, microsoft/vscode#299295); function calling guide,
    # https://ai.google.dev/gemini-api/docs/function-calling.
    contents = _contents(doc)
    for n, content in enumerate(contents):
        before = contents[n - 1] if n > 0 else None
        if content.get("role") == "model" and _calls(content):
            if before is None or before.get("role", "user") != "user":
                return Refusal(
                    "Please ensure that function call turn comes immediately after a user turn or after a function "
                    "response turn."
                )
        answered = _responses(content)
        if answered:
            calls = _calls(before) if before is not None and before.get("role") == "model" else []
            if not calls:
                return Refusal(
                    "Please ensure that function response turn comes immediately after a function call turn."
                )
            if len(answered) != len(calls):
                return Refusal(
                    "Please ensure that the number of function response parts is equal to the number of function call "
                    "parts of the function call turn."
                )
    return None


def thought_signatures(doc: dict[str, Any], model: str) -> Refusal | None:
    # Gemini 3 models validate thought signatures on the function calls of the current turn (everything after the
    # last user text): the first functionCall part of each model step must carry the thoughtSignature the model gave
    # it, unchanged ("Function call is missing a thought_signature in functionCall parts. ... Additional data,
    # function call `default_api:Task`, position 2. Please refer to https://ai.google.dev/gemini-api/docs/
    # thought-signatures for more details." lbjlaq/Antigravity-Manager#139, erain/glue v1.8.0; thought signatures
    # guide, "Function calling"). Gemini 2.5 tolerates their absence. A signature the model did not issue is
    # "Corrupted thought signature." (https://docs.apiyi.com/en/faq/gemini-thought-signature-missing).
    contents = _contents(doc)
    for content in contents:
        for part in _parts(content):
            signature = part.get("thoughtSignature", part.get("thought_signature"))
            if signature is None or signature == SKIP_SIGNATURE:
                continue
            call = as_dict(part.get("functionCall", part.get("function_call")))
            if not signed(SIGNATURE_KIND, str(call.get("name", "")), signature):
                return Refusal("Corrupted thought signature.")
    major = gemini_major(model)
    if major is None or major < 3:
        return None
    start = 0
    for n, content in enumerate(contents):
        if (
            content.get("role", "user") == "user"
            and any("text" in p for p in _parts(content))
            and not _responses(content)
        ):
            start = n + 1
    for n in range(start, len(contents)):
        calls = _calls(contents[n]) if contents[n].get("role") == "model" else []
        if calls and not (calls[0].get("thoughtSignature") or calls[0].get("thought_signature")):
            name = as_dict(calls[0].get("functionCall", calls[0].get("function_call"))).get("name")
            return Refusal(
                "Function call is missing a thought_signature in functionCall parts. This is required for tools to "
                "work correctly, and missing thought_signature may lead to degraded model performance. Additional "
                f"data, function call `default_api:{name}` , position {n + 1}. Please refer to "
                "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
            )
    return None


def thinking_config(doc: dict[str, Any], model: str) -> Refusal | None:
    # thinkingLevel is for Gemini 3 and later: "If you use the thinking_level parameter with a model earlier than
    # Gemini 3, the model returns an error" (thinking guide, https://ai.google.dev/gemini-api/docs/thinking, quoted in
    # juspay/neurolink#1707; a 400 INVALID_ARGUMENT per Kilo-Org/kilocode#5139), and "You cannot use both
    # thinking_level and thinking_budget in the same request. Doing so will return a 400 error"
    # (https://ai.google.dev/gemini-api/docs/gemini-3, quoted by gemini_ex's ThinkingConfig docs). The wording of
    # these two messages is the fake's.
    config = as_dict(as_dict(doc.get("generationConfig", doc.get("generation_config"))).get("thinkingConfig"))
    level = config.get("thinkingLevel", config.get("thinking_level"))
    budget = config.get("thinkingBudget", config.get("thinking_budget"))
    if level is not None and budget is not None:
        return Refusal("You can only set one of thinking budget and thinking level.")
    major = gemini_major(model)
    if level is not None and major is not None and major < 3:
        return Refusal("Thinking level is not supported for this model.")
    return None


def function_names(doc: dict[str, Any], model: str) -> Refusal | None:
    for t, tool in enumerate(as_list(doc.get("tools"))):
        declarations = as_dict(tool).get("functionDeclarations", as_dict(tool).get("function_declarations"))
        for n, declaration in enumerate(as_list(declarations)):
            if not _FUNCTION_NAME.match(str(as_dict(declaration).get("name", ""))):
                return Refusal(
                    f"* GenerateContentRequest.tools[{t}].function_declarations[{n}].name: Invalid function name. "
                    "Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), "
                    "dots (.), colons (:), or dashes (-), with a maximum length of 64.\n"
                )
    return None


def field_types(doc: dict[str, Any], model: str) -> Refusal | None:
    # Every field the fakes read has the JSON type the API's reference gives it (tests.fakes.shapes cites the typed
    # request params): a wrong one is the API's 400, never a crash of the fake.
    wrong = shapes.wrong_field(doc, shapes.GEMINI)
    return None if wrong is None else Refusal(shapes.gemini_message(wrong))


RULES = (
    field_types,
    contents_present,
    roles,
    non_empty_parts,
    function_turns,
    thought_signatures,
    thinking_config,
    function_names,
)


def check(doc: dict[str, Any], model: str) -> Refusal | None:
    """The first rule of generateContent that ``doc`` (sent for ``model``) breaks, or None."""
    return first_refusal(RULES, doc, model)
