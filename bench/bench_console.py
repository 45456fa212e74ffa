"""The operator console: from a guard decision to the page showing it, next to the same
decision seen by polling `/v1/resolve`; and the page's first load.

Run: .venv/bin/python -m bench.bench_console [--trials 20] [--poll-ms 20] [--loads 10]

Runs `relctl up` (embedded PostgreSQL and broker, one guard worker) and a headless Chromium
with the console open, signed in as admin. Each trial plans and starts a rollout with every
tenant on the candidate (steps [100]) and a RollbackTrigger rule, then posts 600 evaluations
(20 % LLM errors on the candidate); the worker rolls the rollout back on its own. Measured per
trial, against the RolledBack event's own timestamp (the instant the control plane recorded the
decision, from `/v1/rollouts/{id}/history`; same machine, same clock):

- console: when the page first drew the rollout as RolledBack (`Date.now()` in the page, at
  render, after the server-sent event arrived);
- resolve polling (the baseline, same run): a thread polling `GET /v1/resolve` for a candidate
  tenant every --poll-ms, until it answers with the baseline release.

First load: a fresh browser with its cache disabled loads /console --loads times (signed out:
the HTML, CSS, JS and icon), reporting bytes transferred and the load event; then, signed in,
the time from navigation to the first live snapshot drawn.
"""

import argparse
import statistics
import threading
import time
from datetime import datetime
from typing import Any

import httpx

from bench.common import percentile
from bench.console_stack import TENANTS, Api, chrome, open_signed_in, relctl_up, wait


def decision_instant(api: Api, rollout: str) -> float:
    events = api.call("GET", f"/v1/rollouts/{rollout}/history")["events"]
    rolled = [e for e in events if e["type"].endswith("rolled_back.v1")]
    return datetime.fromisoformat(rolled[-1]["time"]).timestamp()


def poll_resolve(api: Api, task: str, every: float, seen: dict[str, float],
                 stop: threading.Event) -> None:
    http = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}"},
                        timeout=10)
    while not stop.is_set():
        answer = http.get("/v1/resolve", params={"tenant": TENANTS[1], "task": task}).json()
        if answer.get("release") == 1 and "started" in seen:
            seen["resolve"] = time.time()
            return
        if answer.get("release") == 2:
            seen["started"] = time.time()
        time.sleep(every)


def trial(api: Api, driver: Any, index: int, every: float) -> tuple[float, float]:
    task = f"bench-console-{index}-{time.time_ns() % 10**9}"
    rollout = api.rollout(task, steps=[100])
    wait(lambda: driver.execute_script(
        "return arguments[0] in window.relctlConsole.firstSeen", f"{rollout}|Running"),
        30, "the rollout in the console")
    seen: dict[str, float] = {}
    stop = threading.Event()
    poller = threading.Thread(target=poll_resolve, args=(api, task, every, seen, stop))
    poller.start()
    wait(lambda: "started" in seen, 30, "resolve to answer the candidate")
    api.evaluations(task, prefix=f"t{index}")
    key = f"{rollout}|RolledBack"
    shown = wait(lambda: driver.execute_script(
        "return window.relctlConsole.firstSeen[arguments[0]]", key), 60, "the rollback drawn")
    poller.join(60)
    stop.set()
    decided = decision_instant(api, rollout)
    return shown / 1000 - decided, seen["resolve"] - decided


def first_loads(url: str, token: str, loads: int) -> tuple[list[int], list[float], list[float]]:
    sizes, load_ms, live_ms = [], [], []
    driver = chrome()
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        for _ in range(loads):
            driver.get(url + "/console")
            wait(lambda: driver.execute_script(
                "return performance.getEntriesByType('navigation')[0].loadEventEnd > 0"),
                30, "the load event")
            nav, total = driver.execute_script(
                "const n = performance.getEntriesByType('navigation')[0];"
                "const r = performance.getEntriesByType('resource');"
                "return [n.loadEventEnd,"
                " n.transferSize + r.reduce((s, e) => s + e.transferSize, 0)]")
            load_ms.append(float(nav))
            sizes.append(int(total))
        for _ in range(loads):
            driver.execute_script(
                "sessionStorage.setItem('relctl.console.token', arguments[0])", token)
            driver.get(url + "/console")
            live = wait(lambda: driver.execute_script(
                "return window.relctlConsole && window.relctlConsole.snapshotAt"), 30,
                "the first snapshot")
            live_ms.append(float(live))
    finally:
        driver.quit()
    return sizes, load_ms, live_ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--poll-ms", type=float, default=20.0)
    parser.add_argument("--loads", type=int, default=10)
    args = parser.parse_args()
    with relctl_up() as api:
        sizes, load_ms, live_ms = first_loads(api.url, api.token, args.loads)
        driver = chrome()
        try:
            open_signed_in(driver, api.url, api.token)
            results = [trial(api, driver, i, args.poll_ms / 1000) for i in range(args.trials)]
        finally:
            driver.quit()
    console = [c for c, _ in results]
    resolve = [r for _, r in results]

    def line(name: str, values: list[float]) -> str:
        return (f"{name}: p50 {percentile(values, 50) * 1000:7.1f} ms, "
                f"p99 {percentile(values, 99) * 1000:7.1f} ms, "
                f"max {max(values) * 1000:7.1f} ms  (n={len(values)})")

    print(line("decision -> console shows RolledBack (SSE)   ", console))
    print(line(f"decision -> /v1/resolve baseline (poll {args.poll_ms:g} ms)", resolve))
    print(f"first load of /console, cache disabled: {statistics.median(sizes)} bytes "
          f"transferred, load event p50 {statistics.median(load_ms):.1f} ms "
          f"(max {max(load_ms):.1f} ms, n={len(load_ms)})")
    print(f"signed in: navigation -> first live snapshot drawn p50 "
          f"{statistics.median(live_ms):.1f} ms (max {max(live_ms):.1f} ms, n={len(live_ms)})")


if __name__ == "__main__":
    main()
