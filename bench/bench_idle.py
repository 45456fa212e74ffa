"""Idle CPU of `relctl up`: every process of an idle embedded stack, sampled over a quiet minute.

Baseline in the same run: the same sampling over the bare embedded services alone (PostgreSQL
and the broker started without relctl), so the figure says what relctl's own processes add.

    python -m bench.bench_idle [--seconds 30] [--settle 15]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from relctl.infra.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port


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


def _cmd(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=15.0)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="relctl-bench-idle-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RELCTL_DATABASE_URL", "RELCTL_KAFKA_BOOTSTRAP")}
    process = subprocess.Popen(
        [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir",
         str(scratch / "data"), "--api-port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=90)
        time.sleep(args.settle)
        shares = sample(tree(psutil.Process(process.pid), scratch / "data" / "postgres"),
                        args.seconds)
    finally:
        process.terminate()
        process.wait(60)
    baseline = bare_services(args.seconds, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"idle relctl up, sampled {args.seconds:.0f} s after {args.settle:.0f} s settling "
          "(percent of one core):")
    for name, share in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {name:50s} {share:6.1f} %")
    print(f"  {'total':50s} {sum(shares.values()):6.1f} %")
    print(f"baseline: embedded PostgreSQL + broker alone, idle: {baseline:.1f} %")


if __name__ == "__main__":
    main()
