"""The guard stack for benchmarks (and the integration tests, which re-export it): a control
plane (relay + command consumer) in a thread, guard workers as subprocesses, and the releases,
rules and evaluations of a guarded rollout."""

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from relctl.adapters.commands import CommandConsumer
from relctl.adapters.kafka import ensure_topics, topic_specs
from relctl.domain.release import prompt_hash
from relctl.infra.bootstrap import Runtime
from relctl.infra.embedded import free_port, wait_or_kill

from bench.builders import waive_gates
from bench.common import wait_until

SPEC: dict[str, Any] = {
    "prompt_template": "Score the call.", "model_provider": "openai", "model_name": "gpt-4o",
    "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
    "output_schema": {"type": "object", "properties": {"score": {"type": "number"}}},
    "output_schema_version": "1",
}


class ControlPlaneThread:
    """The relay and the command consumer of `relctl up`, on their own loop in a thread."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.commands = CommandConsumer(runtime.app, runtime.settings)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.stop_event = asyncio.Event()
            assert self.runtime.relay is not None
            await asyncio.gather(self.runtime.relay.run(self.stop_event),
                                 self.commands.run(self.stop_event))
        self.loop.run_until_complete(main())
        self.loop.close()

    def start(self) -> "ControlPlaneThread":
        asyncio.run(ensure_topics(self.runtime.settings.kafka_bootstrap or "",
                                  topic_specs(self.runtime.settings)))
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(20)


def read_metric(port: int, name: str, **labels: str) -> float | None:
    """One sample (exact label set) from a Prometheus endpoint on loopback, or None."""
    try:
        # Uncompressed: gzip would be CPU the observed process spends for the observer. Only
        # the one metric (``name[]``): the whole page grows with every task and rollout the
        # worker has seen, and rendering it holds the worker's interpreter lock.
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2,
                         params={"name[]": name},
                         headers={"Accept-Encoding": "identity"}).text
    except httpx.HTTPError:
        return None
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        have = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if have == wanted:
            return float(match.group(3))
    return None


class WorkerProcess:
    """`relctl worker` as a real subprocess, with its Prometheus endpoint for observation."""

    def __init__(self, runtime: Runtime, log_dir: Path, app_id: str | None = None) -> None:
        settings = runtime.settings
        self.port = free_port()
        self.app_id = app_id or f"{settings.topic_prefix}-guard-{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ,
                    "RELCTL_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
                    "RELCTL_TOPIC_PREFIX": settings.topic_prefix,
                    "RELCTL_WORKER_APP_ID": self.app_id,
                    "RELCTL_UNKNOWN_RELEASE_GRACE_SECONDS": "2",
                    "RELCTL_WORKER_METRICS_PORT": str(self.port)}
        self.log_path = log_dir / f"worker-{self.app_id}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        self.port = free_port()
        self.env["RELCTL_WORKER_METRICS_PORT"] = str(self.port)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "relctl.entrypoints.cli", "worker"], env=self.env,
                stdout=log, stderr=log)
        wait_until(self._serving, timeout=30, interval=0.1, what="worker metrics endpoint")
        return self

    def _serving(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited: {self.log_path.read_text()[-3000:]}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=1).is_success
        except httpx.HTTPError:
            return False

    def metric(self, name: str, **labels: str) -> float | None:
        """The current value of one sample from the worker's /metrics, or None."""
        return read_metric(self.port, name, **labels)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            wait_or_kill(self.process, 20)


# The prompts of the releases rollout_with_guard creates: release 2 is the stricter one.
PROMPTS = {1: SPEC["prompt_template"], 2: "Score, strictly."}


def evaluation(task: str, release: int, call: int, *, tenant: str | None = None,
               error: bool = False, arm: str = "production", score: float = 80.0,
               **extra: Any) -> dict[str, Any]:
    """An evaluation that honours its release's trace contract (as rollout_with_guard
    creates the releases), unless ``extra`` says otherwise."""
    return {
        "tenant": tenant or f"tenant-{call % 11}", "task": task, "call_id": f"call-{call}",
        "release": release, "prompt_hash": prompt_hash(PROMPTS.get(release, PROMPTS[1])),
        "model_provider": "openai",
        "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7, "arm": arm,
        "outcome": "llm_error" if error else "ok", "latency_ms": 1200.0, "tokens": 900,
        "cost_usd": 0.01, "score": score, "confidence": 0.9,
        "occurred_at": datetime.now(UTC).isoformat(), **extra,
    }


def rollout_with_guard(runtime: Runtime, task: str, rules: list[dict[str, Any]],
                       shadow: bool = False, steps: list[Any] | None = None) -> str:
    app = runtime.app
    app.create_release(task, SPEC, "ops", "first release")
    waive_gates(app, task)  # the guard, not the release gates, is what this measures
    app.promote_release(task, 1, "Stable", "ops", "regression ok")
    app.set_default_release(task, 1, "ops", "launch it")
    app.create_release(task, {**SPEC, "prompt_template": PROMPTS[2]}, "ops", "stricter")
    app.promote_release(task, 2, "Beta", "ops", "bundle ok")
    planned = app.plan_rollout(task, 2, "ops", "progressive", steps=steps or [50, 100],
                               guard_rules=rules, shadow=shadow)
    rollout_id = planned["aggregate"]["id"]
    app.start_rollout(uuid.UUID(rollout_id), "ops", "canary now")
    return str(rollout_id)


def rule(name: str = "errors", metric: str = "llm_error_rate", comparator: str = ">",
         threshold: float = 0.05, min_samples: int = 50, window_seconds: float = 120,
         for_seconds: float = 0, gate_class: str = "RollbackTrigger") -> dict[str, Any]:
    return {"name": name, "metric": metric, "comparator": comparator, "threshold": threshold,
            "min_samples": min_samples, "window_seconds": window_seconds,
            "for_seconds": for_seconds, "gate_class": gate_class}
