"""The answer side: restore placeholders in the agent's tool calls, and scan what the model
generates, whole or streamed.

Streamed, as one synchronous `feed(chunk) -> bytes` stage of the engine's stream loop (it wraps
the stream observer, which it feeds in between):
- restore: SSE events are split out of the chunks; only when the session has placeholders and an
  event has a "[" is its JSON parsed, its strings restored and the event re-encoded. Fragments of
  one string (tool-call arguments: Anthropic `partial_json`, OpenAI `arguments`, Responses
  `response.function_call_arguments.delta`) split a placeholder anywhere, so the tail that may
  open one is held back (`StreamRestorer`, at most one placeholder's length) until the next
  fragment of the same string. AWS event streams (Bedrock) are restored frame by frame (`StreamGuard`).
- scan: the generated text the observer reads out of the events (text and tool-call arguments,
  in every format) is scanned with a look-behind of LOOK_BEHIND characters, so a secret split
  across chunks is found once its last piece arrives. Values this session's placeholders stand
  for are the agent's own, restored on purpose, not leaks.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Any

import orjson

from sluice.core.errors import ErrorKind, SluiceError
from sluice.formats.aws_eventstream import MAX_HEADERS, MAX_PAYLOAD, FrameDecoder, encode_frame
from sluice.formats.sse import SSEDecoder
from sluice.guardrails.rules import Action, RuleSet
from sluice.guardrails.vault import StreamRestorer, Vault
from sluice.guardrails.walk import Report, restore_doc

LOOK_BEHIND = 512  # longer than any key format but a private key, whose BEGIN line is enough
BATCH = 2048  # characters of generated text scanned at once when no answer rule blocks
# Keys whose string values are fragments of one string split across events: Anthropic's
# `partial_json`, OpenAI's `arguments`, Bedrock Converse's `toolUse.input` (an object elsewhere).
_FRAGMENTS = frozenset({"partial_json", "arguments", "input"})
_MAX_FRAME = MAX_HEADERS + MAX_PAYLOAD + 16


def blocked(rule: str, where: str) -> SluiceError:
    """The error of a `block` rule: names the rule, never what matched."""
    return SluiceError(
        ErrorKind.POLICY_GUARDRAIL,
        f"Blocked by guardrail rule '{rule}' ({where}). The matched content is not shown; ask your platform team.",
        details={"rule": rule, "where": where},
    )


class AnswerScanner:
    """Scans generated text as it grows, with a bounded look-behind."""

    __slots__ = ("_batch", "_known", "_offset", "_pending", "_pending_chars", "_rules", "_seen", "_tail", "report")

    def __init__(self, rules: RuleSet, vault: Vault | None, report: Report) -> None:
        self._rules, self.report = rules, report
        # With a `block` rule on the answer every piece is scanned as it comes (the chunk that
        # completes a secret is not sent); with audit-only rules the text is scanned in batches
        # (`flush` scans the rest at the end), which costs a fraction per streamed KB.
        blocking = any(r.action is Action.BLOCK and "answer" in r.where and not r.providers for r in rules.rules)
        self._batch = 0 if blocking else BATCH
        self._pending: list[str] = []
        self._pending_chars = 0  # their length, kept as they come (summing them per piece was quadratic)
        self._known = frozenset(vault.values.values()) if vault is not None else frozenset()
        self._tail = ""
        self._offset = 0  # where `_tail` starts in the whole answer
        self._seen: set[tuple[int, str]] = set()

    def feed(self, text: str) -> None:
        if not text:
            return
        if self._batch:
            self._pending.append(text)
            self._pending_chars += len(text)
            if self._pending_chars < self._batch:
                return
            text, self._pending, self._pending_chars = "".join(self._pending), [], 0
        self._scan(text)

    def flush(self) -> None:
        if self._pending:
            text, self._pending, self._pending_chars = "".join(self._pending), [], 0
            self._scan(text)

    def _scan(self, text: str) -> None:
        window = self._tail + text
        for f, digest in self._rules.scan(window, "answer", cache=False):
            at = (self._offset + f.start, f.rule)
            value = window[f.start : f.end]
            if at in self._seen or value in self._known:
                continue
            if f.end <= len(self._tail) and f.start < len(self._tail):
                continue  # wholly inside the look-behind: found with the previous piece already
            self._seen.add(at)
            self.report.findings.append((f, digest))
            if f.action is Action.BLOCK:
                raise blocked(f.rule, "answer")
        keep = window[-LOOK_BEHIND:]
        self._offset += len(window) - len(keep)
        self._tail = keep


class StreamGuard:
    """The per-chunk stage: restore -> the observer's own feed -> scan of the new generated text.

    Restore reads SSE events, or AWS event-stream frames (Bedrock: ConverseStream's events, and
    InvokeModel's `chunk` frames, whose base64 `bytes` carry Anthropic's events); which one is told
    by the first bytes when the wire is not SSE (a frame opens with its length and that prelude's
    CRC). A frame that may hold a placeholder is decoded (its CRCs checked), restored and encoded
    again with new CRCs; the others pass as they came."""

    __slots__ = ("_frames", "_observer", "_pieces", "_read", "_restorer", "_scanner", "_sse", "_vault")

    def __init__(self, observer: Any, scanner: AnswerScanner | None, vault: Vault | None, sse: bool) -> None:
        self._observer, self._scanner = observer, scanner
        self._vault = vault if vault is not None and vault.values else None
        self._restorer = StreamRestorer(self._vault) if self._vault is not None else None
        self._sse = SSEDecoder() if sse and self._restorer is not None else None
        # Not SSE: AWS frames or not, known from the first bytes (None: not known yet).
        self._frames: _FrameSplitter | bool | None = None if not sse and self._restorer is not None else False
        if scanner is not None:
            observer.count_output = True
            if observer.captured is None:
                observer.captured = []
        self._pieces = observer.captured
        self._read = 0

    def feed(self, chunk: bytes) -> bytes:
        if self._sse is not None:
            chunk = self._restore(chunk)
        elif self._frames is not False:
            chunk = self._restore_frames(chunk)
        out: bytes = self._observer.feed(chunk)
        pieces = self._pieces
        if self._scanner is not None and pieces is not None and len(pieces) > self._read:
            text = "".join(pieces[self._read :])
            self._read = len(pieces)
            self._scanner.feed(text)
        if self._scanner is not None and self._observer.completed:
            self._scanner.flush()
        return out

    def _restore(self, chunk: bytes) -> bytes:
        assert self._sse is not None
        blocks = self._sse.feed_blocks(chunk)
        if not blocks:
            return b""
        return b"".join(self._event(block) + b"\n\n" for block in blocks)

    def _restore_frames(self, chunk: bytes) -> bytes:
        if self._frames is None:
            if len(chunk) < 12:  # too short to tell: not an event stream of any size
                self._frames = False
                return chunk
            framed = zlib.crc32(chunk[:8]) == int.from_bytes(chunk[8:12], "big")
            self._frames = _FrameSplitter() if framed else False
        if not isinstance(self._frames, _FrameSplitter):
            return chunk
        return b"".join(self._frame(raw) for raw in self._frames.feed(chunk))

    def _frame(self, raw: bytes) -> bytes:
        assert self._restorer is not None
        if b"[" not in raw and not self._restorer.holding:
            return raw
        try:
            [frame] = FrameDecoder().feed(raw)
        except (SluiceError, ValueError):
            return raw  # the observer refuses a corrupt frame with its own error
        if frame.message_type != "event":
            return raw
        try:
            doc = orjson.loads(frame.payload)
        except orjson.JSONDecodeError:
            return raw
        inner = doc.get("bytes") if isinstance(doc, dict) and frame.event_type == "chunk" else None
        if isinstance(inner, str):  # InvokeModel: the model's own event, base64 in a chunk frame
            try:
                event = orjson.loads(base64.b64decode(inner, validate=True))
            except (binascii.Error, ValueError):
                return raw
            if not self._fragments(event, (), False):
                return raw
            doc["bytes"] = base64.b64encode(orjson.dumps(event)).decode()
        elif not self._fragments(doc, (), False):
            return raw
        return encode_frame(frame.headers, orjson.dumps(doc))

    def _event(self, block: bytes) -> bytes:
        assert self._restorer is not None
        if b"[" not in block and not self._restorer.holding:
            return block
        lines = block.split(b"\n")
        for i, line in enumerate(lines):
            if not line.startswith(b"data:"):
                continue
            try:
                doc = orjson.loads(line[5:])
            except orjson.JSONDecodeError:
                return block
            kind = doc.get("type") if isinstance(doc, dict) else None
            if self._fragments(doc, (), kind == "response.function_call_arguments.delta"):
                lines[i] = b"data: " + orjson.dumps(doc)
                return b"\n".join(lines)
            return block
        return block

    def _fragments(self, node: Any, path: tuple[object, ...], responses_delta: bool) -> bool:
        """Restores the strings of one event in place; True when something changed."""
        assert self._restorer is not None and self._vault is not None
        changed = False
        items = node.items() if isinstance(node, dict) else enumerate(node)
        index = node.get("index", node.get("contentBlockIndex")) if isinstance(node, dict) else None
        for key, value in list(items):
            if isinstance(value, str):
                if key in _FRAGMENTS or (responses_delta and key == "delta"):
                    new = self._restorer.feed((*path, index, key), value)
                else:
                    new = self._vault.restore(value)
                if new != value:
                    node[key], changed = new, True
            elif isinstance(value, dict | list):
                changed = self._fragments(value, (*path, index, key), responses_delta) or changed
        return changed


class _FrameSplitter:
    """AWS event-stream frames out of chunks cut anywhere, by their length prefix (the CRCs are
    checked where a frame is decoded: here when it is rewritten, else by the stream observer)."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf + chunk if self._buf else chunk
        frames: list[bytes] = []
        pos = 0
        while len(buf) - pos >= 12:
            total = int.from_bytes(buf[pos : pos + 4], "big")
            if not 16 <= total <= _MAX_FRAME:
                frames.append(buf[pos:])  # impossible: passed on for the observer to refuse
                pos = len(buf)
                break
            if len(buf) - pos < total:
                break
            frames.append(buf[pos : pos + total])
            pos += total
        self._buf = buf[pos:]
        return frames


def restore_answer(body: bytes, vault: Vault | None) -> bytes:
    """A whole answer: placeholders back to values, re-encoded only when one was there."""
    if vault is None or not vault.values or b"[sluice:" not in body:
        return body
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    doc, changed = restore_doc(doc, vault)
    return orjson.dumps(doc) if changed else body
