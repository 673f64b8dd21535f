"""What the default guardrail set costs, against the gateway's own CPU per request, in the same run.

    python -m bench.guardrails [--requests 400] [--concurrency 4] [--iterations 30] [--no-gateway]
    python -m bench.guardrails --loop N --mode loads|same|new   # for instruction counts, see below

The request is Claude Code's own recorded one (tests/fixtures/claude_code: its system prompt and tool
definitions) with a conversation of about 100 KB added: the agent read this repository's source files
(tool results), one `.env` with an AWS key pair among them. Measured:

1. In-process, CPU microseconds (process time, the minimum over rounds):
   - `parse+encode`: orjson loads and dumps of the body (the floor any body-touching stage pays);
   - `guardrails cold`: the default set on a request never seen (a fresh rule set, empty caches);
   - `guardrails warm`: the steady state of an agent loop: the history was scanned on the previous
     turn (the per-string cache holds it), only the last tool result is new;
   - detect-secrets 1.5's plugins over the same text, if it is installed (it is not a dependency:
     `pip install detect-secrets` to compare);
   - streamed: the answer-side stage per KB of an Anthropic stream (observer alone vs observer +
     guardrails, with the session's placeholders present so every event is looked at).
2. Two `sluice serve` processes in front of the bench upstream, guardrails off and on (the default
   set), the same body posted `--requests` times: gateway CPU µs per request for each, so the
   guardrails' share of the gateway's CPU is read from one run. The body is the same each time, so
   this is the warm case; the cold case is (1).
3. `--loop N --mode M`: only N requests of the in-process loop (parse; `same`: then the guardrails on the
   same body, a session's steady state; `new`: with a new last message each turn), for counting
   instructions, which a shared machine does not disturb: run it under
   `valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null` with N = 10 and 60 and
   each mode; (count(60) - count(10)) / 50 is one request, and `same` minus `loads` is the guardrails.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench import harness, upstream
from sluice.core.types import WireFormat
from sluice.formats.observer import StreamObserver
from sluice.formats.registry import record_of
from sluice.guardrails.service import Guardrails
from sluice.settings import GuardrailsConfig
from sluice.storage.records import VirtualKey

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
KEY = VirtualKey(id="vk-bench", name="bench", key_hash="h", key_hint="sk")
ENV = "AWS_ACCESS_KEY_ID=AKIAQWERTYUIOPASDFGH\nAWS_SECRET_ACCESS_KEY=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\n"


def claude_code_request(context_bytes: int = 100_000) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((REPO / "tests/fixtures/claude_code/messages_request.json").read_text())
    doc["model"], doc["stream"], doc["max_tokens"] = upstream.MODEL, False, 5
    doc.pop("thinking", None)
    doc.pop("context_management", None)
    doc.pop("output_config", None)
    messages = doc["messages"]
    files = sorted((REPO / "sluice").rglob("*.py"))
    size, n = 0, 0
    for path in [REPO / ".env.example", *files]:
        text = ENV if path.name == ".env.example" else path.read_text()
        n += 1
        tool_id = f"toolu_{n:024d}"
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": tool_id, "name": "Read", "input": {"file_path": str(path)}}],
            }
        )
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": text}]})
        size += len(text)
        if size >= context_bytes:
            break
    messages.append({"role": "user", "content": "Now fix the failing test."})
    return doc


def cpu_us(fn: Callable[[], Any], iterations: int, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(iterations):
            fn()
        best = min(best, (time.process_time() - start) / iterations * 1e6)
    return best


def in_process(doc: dict[str, Any], iterations: int) -> dict[str, float]:
    body = orjson.dumps(doc)
    config = GuardrailsConfig(placeholder_key="bench")
    out: dict[str, float] = {"request_kb": len(body) / 1024}
    out["parse_encode_us"] = cpu_us(lambda: orjson.dumps(orjson.loads(body)), iterations)

    def cold() -> None:
        guard = Guardrails(config).start(KEY, "s")
        assert guard is not None
        guard.request_body(orjson.loads(body), body)

    out["guardrails_cold_us"] = cpu_us(cold, max(3, iterations // 3))
    warm_rails = Guardrails(config)
    turn = [0]

    def warm() -> None:
        guard = warm_rails.start(KEY, "s")
        assert guard is not None
        d = orjson.loads(body)
        turn[0] += 1
        d["messages"][-1]["content"] = f"Now fix the failing test (turn {turn[0]})." + " context" * 200
        guard.request_body(d, body)

    warm()
    out["guardrails_warm_us"] = cpu_us(warm, iterations) - cpu_us(lambda: orjson.loads(body), iterations)
    guard = Guardrails(config).start(KEY, "s")
    assert guard is not None
    guard.request_body(orjson.loads(body), body)
    out["findings"] = guard.count
    out.update(streamed(guard))
    out.update(detect_secrets_us(doc))
    return out


def streamed(guard: Any) -> dict[str, float]:
    """Per KB of an Anthropic stream of text deltas: the observer alone, and the guardrails' stage."""
    words = [f" word{i} and some more text here." for i in range(2000)]
    events = b"".join(
        b"event: content_block_delta\ndata: "
        + orjson.dumps({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
        + b"\n\n"
        for w in words
    )
    chunks = [events[i : i + 1400] for i in range(0, len(events), 1400)]  # about one TCP segment each
    kb = len(events) / 1024
    reader = record_of(WireFormat.ANTHROPIC_MESSAGES).reader

    def plain() -> None:
        observer = StreamObserver(reader)
        for c in chunks:
            observer.feed(c)

    def guarded() -> None:
        observer = StreamObserver(reader)
        stage = guard.stream(observer, True)
        for c in chunks:
            stage.feed(c)

    base = cpu_us(plain, 5)
    return {"stream_observer_us_per_kb": base / kb, "stream_guardrails_us_per_kb": (cpu_us(guarded, 5) - base) / kb}


def detect_secrets_us(doc: dict[str, Any]) -> dict[str, float]:
    try:
        from detect_secrets.core.scan import scan_line  # type: ignore[import-not-found]
        from detect_secrets.settings import default_settings  # type: ignore[import-not-found]
    except ImportError:
        return {}
    text = "\n".join(
        str(b.get("content"))
        for m in doc["messages"]
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    )
    with default_settings():
        start = time.process_time()
        for line in text.split("\n"):
            list(scan_line(line))
        return {"detect_secrets_us": (time.process_time() - start) * 1e6}


def gateways(body: bytes, requests: int, concurrency: int, rounds: int = 3) -> dict[str, float]:
    """Gateway CPU µs per request with the guardrails off and on, in one run."""
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-guard-") as tmp:
        fleet = harness.Fleet(Path(tmp))
        try:
            up_port = harness.free_port()
            harness.start_upstream(fleet, up_port, 20, None)
            up_url = f"http://127.0.0.1:{up_port}"
            expected = len(upstream.json_body(20))
            procs = {}
            for name, enabled in (("off", False), ("on", True)):
                port = harness.free_port()
                work = Path(tmp) / name
                work.mkdir()
                config = harness.gateway_config(up_url, work)
                config["guardrails"] = {"enabled": enabled}
                (work / "c.yaml").write_text(yaml.safe_dump(config))
                argv = [harness.sluice_executable(), "serve", "--config", str(work / "c.yaml"), "--port", str(port)]
                argv += ["--store", f"sqlite:///{work / 'b.db'}", "--log-level", "warning"]
                proc = fleet.start(f"gateway-{name}", argv, cores=None, stop_timeout=30)
                harness.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz")
                procs[name] = (proc, port)
            load = harness.LoadGen(fleet, None)
            # The first round warms up both; then rounds alternate off and on, and the least CPU of
            # each is kept (on a shared machine, others' load only ever adds).
            for rnd in range(rounds + 1):
                for name, (proc, port) in procs.items():
                    proc.wait_idle()
                    before = proc.cpu_s()
                    result = _run(load, f"http://127.0.0.1:{port}/v1/messages", body, expected, requests, concurrency)
                    cpu = proc.cpu_s() - before
                    if result["ok"] != requests:
                        raise RuntimeError(f"gateway {name}: {result}")
                    if rnd:
                        key = f"gateway_{name}_us"
                        out[key] = min(out.get(key, float("inf")), cpu * 1e6 / requests)
            load.quit()
        finally:
            fleet.close()
    return out


def _run(
    load: harness.LoadGen, url: str, body: bytes, expected: int, requests: int, concurrency: int
) -> dict[str, Any]:
    cmd = {
        "op": "run",
        "url": url,
        "method": "POST",
        "mode": "json",
        "body": body.decode(),
        "headers": {**harness.request_headers(), "x-claude-code-session-id": "bench-session"},
        "expected_len": expected,
        "requests": requests,
        "concurrency": concurrency,
        "timeout_s": 120,
    }
    stdin, stdout = load.proc.popen.stdin, load.proc.popen.stdout
    assert stdin is not None and stdout is not None
    stdin.write(orjson.dumps(cmd) + b"\n")
    stdin.flush()
    result: dict[str, Any] = orjson.loads(stdout.readline())
    return result


def loop(n: int, mode: str) -> None:
    doc = claude_code_request()
    body = orjson.dumps(doc)
    rails = Guardrails(GuardrailsConfig(placeholder_key="bench"))
    for i in range(n + 2):
        d = orjson.loads(body)
        if mode == "new":
            d["messages"][-1]["content"] = f"Now fix the failing test (turn {i})." + " context" * 200
        if mode != "loads":
            guard = rails.start(KEY, "s")
            assert guard is not None
            guard.request_body(d, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loop", type=int, default=0)
    parser.add_argument("--mode", choices=("loads", "same", "new"), default="same")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--no-gateway", action="store_true")
    args = parser.parse_args()
    if args.loop:
        loop(args.loop, args.mode)
        return
    doc = claude_code_request()
    results = in_process(copy.deepcopy(doc), args.iterations)
    if not args.no_gateway:
        results.update(gateways(orjson.dumps(doc), args.requests, args.concurrency))
    results["python"] = platform.python_version()  # type: ignore[assignment]
    for k, v in results.items():
        print(f"{k:32} {v:10.1f}" if isinstance(v, float | int) else f"{k:32} {v}")
    if "gateway_off_us" in results:
        delta = results["gateway_on_us"] - results["gateway_off_us"]
        print(f"{'guardrails share (warm)':32} {delta / results['gateway_off_us'] * 100:9.1f} %")
        cold = results["guardrails_cold_us"] / results["gateway_off_us"] * 100
        print(f"{'guardrails cold / gateway off':32} {cold:9.1f} %")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guardrails.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
