"""Idle CPU of `relctl up`: every process of an idle embedded stack, sampled over a quiet minute.

Baseline in the same run: the same sampling over the bare embedded services alone (PostgreSQL
and the broker started without relctl), so the figure says what relctl's own processes add.
Also prints each consumer's empty fetches per second over the same span (the broker's main idle
cost). With ``--guarded`` a rollout is running (guarded, no traffic) while it samples: idle
consumers then keep their short idle waits, since a decision could come.

    python -m bench.bench_idle [--seconds 30] [--settle 15] [--guarded]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from relctl.infra.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port

FETCHES = "relctl_kafka_fetches_total"


def tree(root: psutil.Process, pg_data: Path) -> list[psutil.Process]:
    """The process and its children, plus the PostgreSQL of ``pg_data`` and its backends
    (pg_ctl daemonizes the server, so it is nobody's child)."""
    found = {p.pid: p for p in [root, *root.children(recursive=True)]}
    for p in postgres_of(pg_data):
        found.setdefault(p.pid, p)
    return list(found.values())


def postgres_of(pg_data: Path) -> list[psutil.Process]:
    for p in psutil.process_iter():
        if str(pg_data) in " ".join(_cmd(p)) and "postgres" in p.name():
            return [p, *p.children(recursive=True)]
    return []


def label(process: psutil.Process) -> str:
    try:
        cmd = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    for needle, name in (("cli worker", "guard worker"), ("cli up", "relctl up (API, relay, "
                         "commands, projectors)"), ("tansu", "broker"), ("postgres", "PostgreSQL"),
                         ("guardian", "PostgreSQL guardian")):
        if needle in cmd:
            return name
    return process.name()


def sample(processes: list[psutil.Process], seconds: float) -> dict[str, float]:
    """Per label: percent of one core used over ``seconds`` (user + system time)."""
    def times() -> dict[int, float]:
        out = {}
        for p in processes:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except psutil.Error:
                pass
        return out

    before = times()
    time.sleep(seconds)
    after = times()
    shares: dict[str, float] = {}
    for p in processes:
        if p.pid in before and p.pid in after:
            name = label(p)
            shares[name] = shares.get(name, 0.0) + 100 * (after[p.pid] - before[p.pid]) / seconds
    return shares


def bare_services(seconds: float, scratch: Path) -> float:
    postgres = EmbeddedPostgres(scratch / "bare-pg")
    postgres.start()
    broker = EmbeddedBroker(log_path=scratch / "bare-broker.log")
    broker.start()
    try:
        time.sleep(5)
        procs = postgres_of(scratch / "bare-pg")
        if broker.process is not None:
            procs.append(psutil.Process(broker.process.pid))
        return sum(sample(procs, seconds).values())
    finally:
        broker.stop()
        postgres.stop()


def empty_fetches(ports: list[int]) -> dict[str, float]:
    """Empty fetches so far per consumer, summed over the processes' Prometheus endpoints."""
    found: dict[str, float] = {}
    for port in ports:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith(FETCHES + "{") and 'records="no"' in line:
                consumer = line.split('consumer="', 1)[1].split('"', 1)[0]
                found[consumer] = found.get(consumer, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def start_guarded_rollout(port: int, data_dir: Path) -> None:
    """A task with a running rollout (a guard rule, no traffic): something the guard watches."""
    token = (data_dir / "admin-token").read_text().strip()
    spec = {"prompt_template": "Score the call.", "model_provider": "openai",
            "model_name": "gpt-4o", "model_version": "gpt-4o-2024-08-06", "temperature": 0.0,
            "seed": 7, "output_schema": {"type": "object"}, "output_schema_version": "1"}
    rule = {"name": "errors", "metric": "llm_error_rate", "comparator": ">", "threshold": 0.5,
            "min_samples": 20, "window_seconds": 60, "for_seconds": 0,
            "gate_class": "RollbackTrigger"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as api:
        def ok(response: httpx.Response) -> dict[str, object]:
            assert response.status_code < 300, response.text
            return dict(response.json())
        ok(api.post("/v1/releases", json={"task": "idle", "spec": spec, "reason": "v1 ok"}))
        ok(api.post("/v1/tasks/idle/gate-waiver", json={"reason": "idle CPU, not gates"}))
        ok(api.post("/v1/releases/idle/1/promote", json={"stage": "Stable", "reason": "ok go"}))
        ok(api.post("/v1/tasks/idle/default", json={"release": 1, "reason": "launch"}))
        ok(api.post("/v1/releases", json={"task": "idle", "reason": "v2 ok",
                                          "spec": {**spec, "prompt_template": "v2"}}))
        ok(api.post("/v1/releases/idle/2/promote", json={"stage": "Beta", "reason": "ok go"}))
        rollout = ok(api.post("/v1/rollouts", json={
            "task": "idle", "candidate": 2, "steps": [50, 100], "guard_rules": [rule],
            "reason": "idle trial"}))["aggregate"]
        ok(api.post(f"/v1/rollouts/{rollout['id']}/start",  # type: ignore[index]
                    json={"reason": "go now"}))


def _cmd(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--guarded", action="store_true",
                        help="sample with a running, guarded rollout (no traffic)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="relctl-bench-idle-"))
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RELCTL_DATABASE_URL", "RELCTL_KAFKA_BOOTSTRAP")}
    env["RELCTL_WORKER_METRICS_PORT"] = str(metrics_port)
    process = subprocess.Popen(
        [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir",
         str(scratch / "data"), "--api-port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=90)
        if args.guarded:
            start_guarded_rollout(port, scratch / "data")
        time.sleep(args.settle)
        before = empty_fetches([port, metrics_port])
        shares = sample(tree(psutil.Process(process.pid), scratch / "data" / "postgres"),
                        args.seconds)
        after = empty_fetches([port, metrics_port])
    finally:
        process.terminate()
        process.wait(60)
    baseline = bare_services(args.seconds, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"idle relctl up{' with a guarded rollout' if args.guarded else ''}, sampled "
          f"{args.seconds:.0f} s after {args.settle:.0f} s settling (percent of one core):")
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {name:50s} {share:6.1f} %")
    print(f"  {'total':50s} {sum(shares.values()):6.1f} %")
    print(f"baseline: embedded PostgreSQL + broker alone, idle: {baseline:.1f} %")
    print("empty fetches per second, per consumer: " + ", ".join(
        f"{name} {(after[name] - before.get(name, 0.0)) / args.seconds:.1f}"
        for name in sorted(after)))


if __name__ == "__main__":
    main()
