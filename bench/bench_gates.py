"""Gate runner throughput against the local OpenAI-compatible server, vs a bare openai loop.

Run: .venv/bin/python -m bench.bench_gates [--latency-ms 20] [--calls 320] [--rounds 3]

Starts ``relctl gate serve-local-model`` as a child process (its own interpreter, so server work
does not share the client's GIL) with a fixed simulated latency per answer. For concurrency 1,
8 and 32 it times, in alternating order over ``--rounds`` rounds: (a) the gate runner over the
example golden set (redaction, data block, structured-output request, tenacity, validation,
repairs, checkpoint file, trace records) and (b) a bare ``AsyncOpenAI`` loop with a semaphore
sending the same pre-built requests and discarding the answers. The best round of each is
reported in golden-set calls per second. Then redaction throughput in transcripts per second.
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
from relctl.adapters.gate_runner import EndpointConfig, GateRunner, ReleaseUnderTest
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


async def runner_rate(url: str, calls: list[GoldenCall], concurrency: int) -> float:
    config = EndpointConfig(base_url=url, api_key="bench", concurrency=concurrency,
                            pricing={MODEL: ModelPricing(input_per_million=1,
                                                         output_per_million=1)})
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        traces = await GateRunner(config).run(release(), calls, Path(scratch) / "c.jsonl")
        elapsed = time.perf_counter() - started
    assert all(t.error is None for t in traces)
    return len(calls) / elapsed


async def bare_rate(url: str, requests: list[tuple[str, list[Any]]], concurrency: int) -> float:
    semaphore = asyncio.Semaphore(concurrency)
    fmt: Any = {"type": "json_schema", "json_schema": {
        "name": "scorecard", "schema": SCORECARD_SCHEMA, "strict": True}}
    async with AsyncOpenAI(base_url=url, api_key="bench", max_retries=0) as client:
        async def one(call_id: str, messages: Any) -> None:
            async with semaphore:
                await client.chat.completions.create(
                    model=MODEL, messages=messages, temperature=0, seed=1, response_format=fmt,
                    extra_headers={CALL_REF_HEADER: call_id})

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for call_id, messages in requests:
                group.create_task(one(call_id, messages))
        return len(requests) / (time.perf_counter() - started)


def redaction_rate(calls: list[GoldenCall], seconds: float = 3.0) -> float:
    redactor = Redactor()
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
    args = parser.parse_args()
    base = parse_golden_lines(GOLDEN.read_text("utf-8").splitlines())
    calls = [base[i % len(base)].model_copy(update={"call_id": f"b-{i:05d}"})
             for i in range(args.calls)]
    redactor = Redactor()
    requests = [(c.call_id, build_messages("Score it.", redactor.redact(c.transcript).text))
                for c in calls]
    port = free_port()
    server = start_server(port, args.latency_ms)
    url = f"http://127.0.0.1:{port}/v1"
    print(f"{len(calls)} golden-set calls, server latency {args.latency_ms:g} ms, "
          f"best of {args.rounds} rounds")
    try:
        for concurrency in (1, 8, 32):
            runner_best = bare_best = 0.0
            for index in range(args.rounds):
                if index % 2:
                    runner_best = max(runner_best,
                                      asyncio.run(runner_rate(url, calls, concurrency)))
                    bare_best = max(bare_best, asyncio.run(bare_rate(url, requests, concurrency)))
                else:
                    bare_best = max(bare_best, asyncio.run(bare_rate(url, requests, concurrency)))
                    runner_best = max(runner_best,
                                      asyncio.run(runner_rate(url, calls, concurrency)))
            print(f"concurrency {concurrency:2d}: gate runner {runner_best:7.1f} calls/s, "
                  f"bare openai loop {bare_best:7.1f} calls/s, "
                  f"ratio {runner_best / bare_best * 100:5.1f} %")
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"redaction: {redaction_rate(base):.0f} transcripts/s "
          f"(mean {sum(len(c.transcript) for c in base) / len(base):.0f} characters)")


if __name__ == "__main__":
    main()
