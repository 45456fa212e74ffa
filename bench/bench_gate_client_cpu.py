"""Client CPU per golden-set call: the gate runner against a bare openai loop, HTTP in-process.

Run: .venv/bin/python -m bench.bench_gate_client_cpu [--calls 640] [--rounds 8]
[--concurrency 32]

``bench_gates`` times both against the local model server over sockets; on a shared machine its
throughput and even its CPU figures swing by tens of percent, because the server and the event
loop's waits share the cores. Here the SDK's HTTP transport is ``httpx2.MockTransport``
answering with the local server's reference scorecard, so the CPU time measured is the client's
own work per call: the runner (data block, tenacity on failure only, validation, repairs,
trace, batched checkpoint) against a bare loop sending the same pre-built requests with
``messages`` and ``response_format`` in ``extra_body`` as the runner does. Rounds alternate;
least of each.
"""

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from openai import AsyncOpenAI
from relctl.adapters.gate_runner import (
    EndpointConfig,
    GateRunner,
    ReleaseUnderTest,
    structured_format,
)
from relctl.adapters.openai_compatible_server import reference_scorecard
from relctl.domain.gate_prompt import CALL_REF_HEADER, build_messages
from relctl.domain.gates import SCORECARD_SCHEMA, Arm, ModelPricing
from relctl.domain.golden import GoldenCall, parse_golden_lines

from bench.bench_gates import GOLDEN, MODEL

RELEASE = ReleaseUnderTest(release_id="bench", arm=Arm.CANDIDATE, prompt_template="Score it.",
                           model=MODEL, temperature=0, seed=1, output_schema=SCORECARD_SCHEMA)


class Rig:
    def __init__(self, calls: list[GoldenCall], concurrency: int) -> None:
        self.calls = calls
        self.concurrency = concurrency
        self.redacted = GateRunner(EndpointConfig(base_url="-", pricing={})).redact_all(calls)
        self.answers = {c.call_id: json.dumps(reference_scorecard(self.redacted[c.call_id].text))
                        for c in calls}
        self.requests = [(c.call_id, build_messages("Score it.", self.redacted[c.call_id].text))
                         for c in calls]

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": self.answers[request.headers[CALL_REF_HEADER]]}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}})

    def client(self) -> AsyncOpenAI:
        transport = httpx2.MockTransport(self._handle)
        return AsyncOpenAI(base_url="http://mock/v1", api_key="bench", max_retries=0,
                           http_client=httpx2.AsyncClient(transport=transport))

    async def runner(self) -> float:
        config = EndpointConfig(base_url="http://mock/v1", api_key="bench",
                                concurrency=self.concurrency, pricing={
                                    MODEL: ModelPricing(input_per_million=1,
                                                        output_per_million=1)})
        async with self.client() as client:
            with tempfile.TemporaryDirectory() as scratch:
                cpu = time.process_time()
                traces = await GateRunner(config, client=client).run(
                    RELEASE, self.calls, Path(scratch) / "c.jsonl", redacted=self.redacted)
                used = time.process_time() - cpu
        assert all(t.error is None and t.schema_valid for t in traces)
        return used / len(self.calls)

    async def bare(self) -> float:
        semaphore = asyncio.Semaphore(self.concurrency)
        fmt: Any = structured_format(RELEASE)
        async with self.client() as client:
            async def one(call_id: str, messages: Any) -> None:
                async with semaphore:
                    await client.chat.completions.create(
                        model=MODEL, messages=[], temperature=0, seed=1,
                        extra_headers={CALL_REF_HEADER: call_id},
                        extra_body={"messages": messages, "response_format": fmt})

            cpu = time.process_time()
            async with asyncio.TaskGroup() as group:
                for call_id, messages in self.requests:
                    group.create_task(one(call_id, messages))
            return (time.process_time() - cpu) / len(self.requests)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    base = parse_golden_lines(GOLDEN.read_text("utf-8").splitlines())
    calls = [base[i % len(base)].model_copy(update={"call_id": f"b-{i:05d}"})
             for i in range(args.calls)]
    rig = Rig(calls, args.concurrency)
    least = {"runner": float("inf"), "bare": float("inf")}
    for index in range(args.rounds):
        order = ("runner", "bare") if index % 2 else ("bare", "runner")
        for name in order:
            least[name] = min(least[name], asyncio.run(getattr(rig, name)()) * 1000)
    runner, bare = least["runner"], least["bare"]
    print(f"{args.calls} golden-set calls, concurrency {args.concurrency}, HTTP in-process, "
          f"least of {args.rounds} alternating rounds")
    print(f"    gate runner        client CPU {runner:.3f} ms/call")
    print(f"    bare openai loop   client CPU {bare:.3f} ms/call (as the runner: extra_body)")
    print(f"    runner extra       {runner - bare:+.3f} ms/call; bare / runner CPU "
          f"{bare / runner * 100:.1f} % (the rate ratio if the client is the bottleneck)")


if __name__ == "__main__":
    main()
