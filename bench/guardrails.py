"""What the default guardrail set costs, against the gateway's own CPU per request, in the same run.

    python -m bench.guardrails [--requests 400] [--concurrency 4] [--iterations 30] [--no-gateway]
    python -m bench.guardrails --callgrind 30 [--callgrind-only]   # gateway instructions, off vs on
    python -m bench.guardrails --loop N --mode loads|same|new   # for instruction counts, see below
    python -m bench.guardrails --crafted 1   # bodies crafted against the detectors, CPU per MB

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
   set), in one run, rounds alternating off and on (the least CPU of each kept): gateway CPU µs per
   request for two traffics of one agent session: `same` (the same body `--requests` times, at
   `--concurrency`) and `new` (follow-ups, each the same history with another last message, one at
   a time). The guardrails' share of the gateway's CPU is read from one run; the cold case is (1).
   `--callgrind N` (or `--callgrind-only`) also runs both gateways under valgrind's callgrind,
   counted from zeroed counters while N requests of each traffic run after a warm-up: instructions per request
   off and on, which the machine's load does not disturb.
3. `--loop N --mode M`: only N requests of the in-process loop (parse; `same`: then the guardrails on the
   same body, a session's steady state; `new`: with a new last message each turn), for counting
   instructions, which a shared machine does not disturb: run it under
   `valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null` with N = 10 and 60 and
   each mode; (count(60) - count(10)) / 50 is one request, and `same` minus `loads` is the guardrails.
4. `--crafted MB`: bodies crafted to make a detector read more than they hold (see
   `crafted_bodies`): CPU seconds per MB of each, and its ratio to one string of plain text.
   What a caller with a key can make the gateway spend per byte it sends; written to
   bench/results/guardrails_crafted.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shutil
import subprocess
import sys
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
from sluice.guardrails.answer import AnswerScanner
from sluice.guardrails.service import Guardrails
from sluice.guardrails.walk import Report
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


def follow_ups(doc: dict[str, Any], n: int) -> list[bytes]:
    """`n` bodies of one session, each the same history with another last message (the agent's
    next turn): every request differs from the one before it in its last item only."""
    out = []
    for i in range(n):
        d = copy.deepcopy(doc)
        d["messages"][-1]["content"] = f"Now fix the failing test (turn {i})." + " context" * 200
        out.append(orjson.dumps(d))
    return out


def _gateway_pair(fleet: harness.Fleet, tmp: Path, valgrind: Path | None = None) -> dict[str, tuple[Any, int]]:
    """The bench upstream and two `sluice serve` on it, guardrails off and on (the default set);
    under callgrind with `valgrind` (a folder for its dumps), instrumentation off until asked."""
    up_port = harness.free_port()
    harness.start_upstream(fleet, up_port, 20, None)
    up_url = f"http://127.0.0.1:{up_port}"
    procs = {}
    for name, enabled in (("off", False), ("on", True)):
        port = harness.free_port()
        work = tmp / name
        work.mkdir()
        config = harness.gateway_config(up_url, work)
        config["guardrails"] = {"enabled": enabled}
        (work / "c.yaml").write_text(yaml.safe_dump(config))
        argv = [harness.sluice_executable(), "serve", "--config", str(work / "c.yaml"), "--port", str(port)]
        argv += ["--store", f"sqlite:///{work / 'b.db'}", "--log-level", "warning"]
        if valgrind is not None:
            out = valgrind / f"callgrind.{name}.out"
            grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
            argv = [*grind, sys.executable, *argv]
        proc = fleet.start(f"gateway-{name}", argv, cores=None, stop_timeout=60)
        harness.wait_healthy(proc, f"http://127.0.0.1:{port}/healthz", timeout=300 if valgrind else 30)
        procs[name] = (proc, port)
    return procs


def _send(load: harness.LoadGen, port: int, bodies: list[bytes], requests: int, concurrency: int) -> None:
    """`requests` posts: the one body `requests` times at `concurrency`, or the bodies in turn, one at a time."""
    url, expected = f"http://127.0.0.1:{port}/v1/messages", len(upstream.json_body(20))
    runs = (
        [(bodies[0], requests, concurrency)]
        if len(bodies) == 1
        else [(bodies[i % len(bodies)], 1, 1) for i in range(requests)]
    )
    for body, n, c in runs:
        result = _run(load, url, body, expected, n, c)
        if result["ok"] != n:
            raise RuntimeError(f"gateway on port {port}: {result}")


def gateways(doc: dict[str, Any], requests: int, concurrency: int, rounds: int = 3) -> dict[str, float]:
    """Gateway CPU µs per request with the guardrails off and on, in one run, for two traffics:
    `same` (the same body each time, at `concurrency`) and `new` (one session's follow-ups, each with
    a new last message, one at a time)."""
    traffic = {"same": [orjson.dumps(doc)], "new": follow_ups(doc, 16)}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-guard-") as tmp:
        fleet = harness.Fleet(Path(tmp))
        try:
            procs = _gateway_pair(fleet, Path(tmp))
            load = harness.LoadGen(fleet, None)
            # The first round warms up both; then rounds alternate off and on, and the least CPU of
            # each is kept (on a shared machine, others' load only ever adds).
            for rnd in range(rounds + 1):
                for mode, bodies in traffic.items():
                    n = requests if mode == "same" else max(40, requests // 4)
                    for name, (proc, port) in procs.items():
                        proc.wait_idle()
                        before = proc.cpu_s()
                        _send(load, port, bodies, n, concurrency)
                        cpu = proc.cpu_s() - before
                        if rnd:
                            key = f"gateway_{mode}_{name}_us"
                            out[key] = min(out.get(key, float("inf")), cpu * 1e6 / n)
            load.quit()
        finally:
            fleet.close()
    return out


def callgrind(doc: dict[str, Any], requests: int, keep: Path | None = None) -> dict[str, float]:
    """Instructions per request of the two gateways (valgrind's callgrind, counted only while
    the measured requests run, after a warm-up), for both traffics: not disturbed by the machine's load.
    With `keep`, each dump is copied there as callgrind.<off|on>.<mode> (for callgrind_annotate)."""
    traffic = {"same": [orjson.dumps(doc)], "new": follow_ups(doc, 16)}
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="sluice-bench-guard-cg-") as tmp:
        fleet = harness.Fleet(Path(tmp))
        try:
            procs = _gateway_pair(fleet, Path(tmp), valgrind=Path(tmp))
            load = harness.LoadGen(fleet, None)
            control = ["callgrind_control"]
            for name, (proc, port) in procs.items():
                for bodies in traffic.values():
                    _send(load, port, bodies, 20, 1)  # warm: caches, the session's memo
                for mode, bodies in traffic.items():
                    # From zeroed counters (toggling instrumentation with -i gave counts that went
                    # backwards, with threads: see bench/gateway_callgrind.py).
                    time.sleep(1.0)
                    subprocess.run([*control, "-z", str(proc.pid)], check=True, capture_output=True)
                    _send(load, port, bodies, requests, 1)
                    time.sleep(1.0)  # the request log's batch, written after the answer, is counted
                    subprocess.run([*control, "-d", str(proc.pid)], check=True, capture_output=True)
                    dumps = sorted(Path(tmp).glob(f"callgrind.{name}.out.*"), key=lambda f: int(f.suffix[1:]))
                    out[f"callgrind_{mode}_{name}_ir"] = _total_ir(dumps[-1]) / requests
                    if keep is not None:
                        keep.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(dumps[-1], keep / f"callgrind.{name}.{mode}")
            load.quit()
        finally:
            fleet.close()
    return out


def _total_ir(path: Path) -> float:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("summary:"):  # this dump's part (totals: since the start)
            return float(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


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


def crafted_bodies(size: int) -> dict[str, dict[str, Any]]:
    """Bodies of about `size` characters crafted against the detectors: each repeats a piece that
    makes some search read more than the text it holds (a window per junction, a footer or close
    looked for after every opener, a value tested against every other). `text` is the baseline:
    plain prose in one string."""

    def blocks(piece: str, n: int = 0) -> dict[str, Any]:
        blocks = [{"type": "text", "text": piece} for _ in range(n or size // len(piece))]
        return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": blocks}]}

    def one(piece: str) -> dict[str, Any]:
        return {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": piece * (size // len(piece))}]}

    def tool(piece: str) -> dict[str, Any]:
        use = {"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}
        result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": piece * (size // len(piece))}
        return {
            "model": "m",
            "max_tokens": 5,
            "messages": [{"role": "assistant", "content": [use]}, {"role": "user", "content": [result]}],
        }

    return {
        "text": one("lorem ipsum dolor sit amet "),
        "text blocks": blocks("lorem ipsum dolor sit amet, consectetur adipiscing elit " * 3),
        "two-character blocks": blocks("ab", size // 6),
        "key-opening blocks": blocks("-----BEGIN PRIVATE KEY-----\nMIIE" + "Ab1+" * 30),
        "env blocks": blocks("SECRET_KEY=" + "a1B2c3D4e5" * 15),
        "token blocks": blocks("x ghp_" + "A" * 150),
        "env values and tokens": one("key=a1b2c3d4e5f6 ghp_" + "A" * 36 + " "),
        "placeholders and tokens": one("[sluice:env_secret:0123456789ab] ghp_" + "B" * 36 + " "),
        "key headers (tool result)": tool("-----BEGIN PRIVATE KEY-----"),
        "comment openers (tool result)": tool("<!--"),
        "exfiltration verbs (tool result)": tool("send the secrets "),
        "emails": one("a@b.co "),
    }


def crafted(size: int) -> dict[str, Any]:
    """CPU seconds per MB of body for each crafted body (request_body of a fresh session: nothing
    cached), and its ratio to plain text's."""
    out: dict[str, Any] = {}
    base = 0.0
    for name, doc in crafted_bodies(size).items():
        body = orjson.dumps(doc)
        best = float("inf")
        for _ in range(3):
            guard = Guardrails(GuardrailsConfig(placeholder_key="bench")).start(KEY, "crafted")
            assert guard is not None
            parsed = orjson.loads(body)
            start = time.process_time()
            guard.request_body(parsed, body)
            best = min(best, time.process_time() - start)
        per_mb = best / (len(body) / 1e6)
        base = base or per_mb
        out[name] = {
            "mb": round(len(body) / 1e6, 2),
            "cpu_s_per_mb": round(per_mb, 4),
            "x_text": round(per_mb / base, 1),
        }
        print(f"{name:34} {len(body) / 1e6:5.2f} MB {per_mb:8.3f} s/MB {per_mb / base:7.1f} x text", flush=True)
    # The answer side: a streamed answer's text as it comes, one delta at a time (a model can be
    # asked for one character per token); the default set batches what it scans.
    config = GuardrailsConfig(placeholder_key="bench")
    rules = Guardrails(config).sets[config.default]
    for piece in ("a", "abcd"):
        scanner = AnswerScanner(rules, None, Report())
        start = time.process_time()
        for _ in range(size // len(piece)):
            scanner.feed(piece)
        scanner.flush()
        per_mb = (time.process_time() - start) / (size / 1e6)
        name = f"answer of {len(piece)}-character deltas"
        out[name] = {"mb": round(size / 1e6, 2), "cpu_s_per_mb": round(per_mb, 4), "x_text": round(per_mb / base, 1)}
        print(f"{name:34} {size / 1e6:5.2f} MB {per_mb:8.3f} s/MB {per_mb / base:7.1f} x text", flush=True)
    return out


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
    parser.add_argument("--callgrind", type=int, default=0, help="also count instructions over N requests per traffic")
    parser.add_argument("--callgrind-only", action="store_true", help="only the instruction counts (N: --callgrind)")
    parser.add_argument("--callgrind-keep", type=Path, help="copy the callgrind dumps to this folder")
    parser.add_argument("--crafted", type=float, default=0, help="only the crafted bodies, of this many MB")
    args = parser.parse_args()
    if args.crafted:
        found = crafted(int(args.crafted * 1e6))
        RESULTS.mkdir(exist_ok=True)
        found["python"] = platform.python_version()
        (RESULTS / "guardrails_crafted.json").write_text(json.dumps(found, indent=2) + "\n")
        return
    if args.loop:
        loop(args.loop, args.mode)
        return
    doc = claude_code_request()
    results: dict[str, Any] = {} if args.callgrind_only else in_process(copy.deepcopy(doc), args.iterations)
    if not args.no_gateway and not args.callgrind_only:
        results.update(gateways(doc, args.requests, args.concurrency))
    if args.callgrind or args.callgrind_only:
        results.update(callgrind(doc, args.callgrind or 30, args.callgrind_keep))
    results["python"] = platform.python_version()
    for k, v in results.items():
        print(f"{k:32} {v:12.1f}" if isinstance(v, float | int) else f"{k:32} {v}")
    for mode in ("same", "new"):
        for unit, off_k, on_k in (
            ("CPU", f"gateway_{mode}_off_us", f"gateway_{mode}_on_us"),
            ("instructions", f"callgrind_{mode}_off_ir", f"callgrind_{mode}_on_ir"),
        ):
            if off_k in results:
                share = (results[on_k] - results[off_k]) / results[off_k] * 100
                results[f"share_{mode}_{'cpu' if unit == 'CPU' else 'ir'}_pct"] = share
                print(f"{f'guardrails share, {mode}, {unit}':40} {share:7.1f} %")
    if "guardrails_cold_us" in results and "gateway_same_off_us" in results:
        cold = results["guardrails_cold_us"] / results["gateway_same_off_us"] * 100
        print(f"{'guardrails cold / gateway off':40} {cold:7.1f} %")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "guardrails.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
