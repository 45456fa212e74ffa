"""Gate runner throughput against the local OpenAI-compatible server, vs a bare openai loop.

Run: .venv/bin/python -m bench.bench_gates [--latency-ms 20] [--calls 320] [--rounds 3]

Starts ``relctl gate serve-local-model`` as a child process (its own interpreter, so server work
does not share the client's GIL) with a fixed simulated latency per answer. For concurrency 1,
8 and 32 it times, in alternating order over ``--rounds`` rounds:

(a) the gate runner over the example golden set (data block, structured-output request,
    validation, repairs, checkpoint file, trace records), with transcripts redacted once per
    golden set as ``relctl gate run`` does for both arms before sending; and, as a second
    figure, redacting each call on the request path;
(b) a bare ``AsyncOpenAI`` loop with a semaphore sending the same pre-built requests the plain
    way (``messages=``, ``response_format=``) and discarding the answers: the issue's baseline;
(c) the same bare loop passing ``messages`` and ``response_format`` through ``extra_body`` as
    the runner does (the same JSON on the wire, without the SDK's per-call transform of them),
    so the runner is also compared with a bare loop using the SDK as cheaply: what the runner
    itself costs.

Each measure is timed from creating its client to closing it (one client per run, as the
runner makes), after an untimed warm-up of both. The order rotates every round; the best round
of each is reported in golden-set calls per second, with the client's CPU time per call (least
of the rounds: far less noisy than throughput on a loaded machine). Then redaction throughput
in transcripts per second.
The server lives in the product (relctl.adapters.openai_compatible_server) because this
benchmark and the demo need it and must not import tests/.
"""

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI
from relctl.adapters.gate_runner import (
    EndpointConfig,
    GateRunner,
    RedactedTranscript,
    ReleaseUnderTest,
    structured_format,
)
from relctl.adapters.redaction import Redactor
from relctl.domain.gate_prompt import CALL_REF_HEADER, build_messages
from relctl.domain.gates import SCORECARD_SCHEMA, Arm, ModelPricing
from relctl.domain.golden import GoldenCall, parse_golden_lines

GOLDEN = Path(__file__).resolve().parents[1] / "examples" / "golden" / "csat-golden.jsonl"
MODEL = "bench-2026-01-01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(port: int, latency_ms: float) -> subprocess.Popen[bytes]:
    code = "from relctl.entrypoints.cli_gate import gate_app; gate_app()"
    proc = subprocess.Popen([sys.executable, "-c", code, "serve-local-model", "--port",
                             str(port), "--latency-ms", str(latency_ms)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("local model server did not start")


def release() -> ReleaseUnderTest:
    return ReleaseUnderTest(release_id="bench", arm=Arm.CANDIDATE, prompt_template="Score it.",
                            model=MODEL, temperature=0, seed=1, output_schema=SCORECARD_SCHEMA)


CPU: dict[str, list[float]] = {}  # client CPU seconds per call, by measure, every round


async def runner_rate(url: str, calls: list[GoldenCall], concurrency: int,
                      redacted: dict[str, RedactedTranscript] | None = None) -> float:
    """The runner over ``calls``; with ``redacted`` (built once per golden set, as
    ``relctl gate run`` does for both arms) redaction is off the request path."""
    config = EndpointConfig(base_url=url, api_key="bench", concurrency=concurrency,
                            pricing={MODEL: ModelPricing(input_per_million=1,
                                                         output_per_million=1)})
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu = time.perf_counter(), time.process_time()
        traces = await GateRunner(config).run(release(), calls, Path(scratch) / "c.jsonl",
                                              redacted=redacted)
        elapsed = time.perf_counter() - started
        CPU.setdefault("runner" if redacted else "runner-cold", []).append(
            (time.process_time() - cpu) / len(calls))
    assert all(t.error is None for t in traces)
    return len(calls) / elapsed


async def bare_rate(url: str, requests: list[tuple[str, list[Any]]], concurrency: int,
                    raw_format: bool = False) -> float:
    """A bare SDK loop; ``raw_format`` passes ``messages`` and ``response_format`` in
    ``extra_body`` as the runner does (same JSON on the wire, no SDK transform of them per
    call)."""
    semaphore = asyncio.Semaphore(concurrency)
    fmt: Any = structured_format(release())  # what the runner asks for
    # Timed from creating the client to closing it, as the runner is: each makes one client
    # per run, and creating one costs ~36 ms of CPU (its TLS context), ~4 % of a run here.
    started, cpu = time.perf_counter(), time.process_time()
    async with AsyncOpenAI(base_url=url, api_key="bench", max_retries=0) as client:
        async def one(call_id: str, messages: Any) -> None:
            args: dict[str, Any] = (
                {"messages": [], "extra_body": {"messages": messages, "response_format": fmt}}
                if raw_format else {"messages": messages, "response_format": fmt})
            async with semaphore:
                await client.chat.completions.create(
                    model=MODEL, temperature=0, seed=1,
                    extra_headers={CALL_REF_HEADER: call_id}, **args)

        async with asyncio.TaskGroup() as group:
            for call_id, messages in requests:
                group.create_task(one(call_id, messages))
    elapsed = time.perf_counter() - started
    CPU.setdefault("bare-raw" if raw_format else "bare", []).append(
        (time.process_time() - cpu) / len(requests))
    return len(requests) / elapsed


def redaction_rate(calls: list[GoldenCall], seconds: float = 3.0,
                   bare_names: bool = True) -> float:
    redactor = Redactor(bare_names=bare_names)
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for call in calls:
            redactor.redact(call.transcript)
        done += len(calls)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--calls", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32",
                        help="comma-separated concurrency levels to measure")
    args = parser.parse_args()
    base = parse_golden_lines(GOLDEN.read_text("utf-8").splitlines())
    calls = [base[i % len(base)].model_copy(update={"call_id": f"b-{i:05d}"})
             for i in range(args.calls)]
    redactor = Redactor()
    requests = [(c.call_id, build_messages("Score it.", redactor.redact(c.transcript).text))
                for c in calls]
    redacted = GateRunner(EndpointConfig(base_url="-", pricing={})).redact_all(calls)
    port = free_port()
    server = start_server(port, args.latency_ms)
    url = f"http://127.0.0.1:{port}/v1"
    print(f"{len(calls)} golden-set calls, server latency {args.latency_ms:g} ms, "
          f"best of {args.rounds} rounds")
    try:
        # Untimed warm-up: the first client made in a process also pays the SDK's lazy imports
        # (~130 ms of CPU), which would fall on whichever measure happens to go first.
        asyncio.run(runner_rate(url, calls[:32], 8, redacted))
        asyncio.run(bare_rate(url, requests[:32], 8))
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            best = dict.fromkeys(("runner", "runner-cold", "bare", "bare-raw"), 0.0)
            measures = {
                "runner": lambda c=concurrency: runner_rate(url, calls, c, redacted),
                "runner-cold": lambda c=concurrency: runner_rate(url, calls, c),
                "bare": lambda c=concurrency: bare_rate(url, requests, c),
                "bare-raw": lambda c=concurrency: bare_rate(url, requests, c, raw_format=True),
            }
            order = list(measures)
            CPU.clear()
            for index in range(args.rounds):
                for name in order[index % 4:] + order[:index % 4]:  # rotate who goes first
                    best[name] = max(best[name], asyncio.run(measures[name]()))
            cpu = {name: min(values) * 1000 for name, values in CPU.items()}
            print(f"concurrency {concurrency:2d}:")
            for name, label in (
                    ("runner", "gate runner (redacted once per golden set)"),
                    ("runner-cold", "gate runner redacting on the request path"),
                    ("bare", "bare openai loop (response_format=)"),
                    ("bare-raw", "bare loop, as the runner, via extra_body")):
                print(f"    {label:44s} {best[name]:7.1f} calls/s, client CPU "
                      f"{cpu[name]:.2f} ms/call")
            print(f"    ratio gate runner / bare loop: {best['runner'] / best['bare'] * 100:5.1f} %"
                  f" (vs the extra_body loop {best['runner'] / best['bare-raw'] * 100:5.1f} %;"
                  f" redacting on the path {best['runner-cold'] / best['bare'] * 100:5.1f} %)")
    finally:
        server.terminate()
        server.wait(timeout=10)
    mean = sum(len(c.transcript) for c in base) / len(base)
    without, with_names = 0.0, 0.0
    for index in range(args.rounds):  # alternate, best of the rounds
        for bare in ((False, True) if index % 2 == 0 else (True, False)):
            rate = redaction_rate(base, 1.5, bare_names=bare)
            if bare:
                with_names = max(with_names, rate)
            else:
                without = max(without, rate)
    print(f"redaction (mean {mean:.0f} characters): {with_names:.0f} transcripts/s with bare "
          f"names from the shipped list, {without:.0f} transcripts/s with context-only names "
          f"(same run; ratio {with_names / without * 100:.1f} %)")


if __name__ == "__main__":
    main()
