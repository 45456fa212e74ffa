"""What the console's benchmark and screenshot script share: a `relctl up` of their own, its
API with the admin token, the guard scenario, and a headless Chromium (Debian's chromium and
chromedriver; Selenium Manager downloads nothing)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from relctl.domain.release import prompt_hash
from relctl.entrypoints.demo import SPEC
from relctl.infra.embedded import free_port
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

from bench.common import wait_until

CHROMIUM = os.environ.get("RELCTL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RELCTL_CHROMEDRIVER", "/usr/bin/chromedriver")
CANDIDATE = {**SPEC, "prompt_template": SPEC["prompt_template"] + " Penalise unresolved issues.",
             "release_notes": {**SPEC["release_notes"], "what": "stricter resolution scoring"}}
HASHES = {1: prompt_hash(SPEC["prompt_template"]), 2: prompt_hash(CANDIDATE["prompt_template"])}
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli", "stark")


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, path, json=body, params=params or None)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json()

    def releases(self, task: str) -> None:
        """v1 (Stable, the default) and v2 (Beta) of ``task``."""
        self.call("POST", "/v1/releases", {"task": task, "spec": SPEC, "reason": "first prompt"})
        self.call("POST", f"/v1/tasks/{task}/gate-waiver", {"reason": "console, not gates"})
        self.call("POST", f"/v1/releases/{task}/1/promote",
                  {"stage": "Stable", "reason": "passed regression"})
        self.call("POST", f"/v1/tasks/{task}/default", {"release": 1, "reason": "launch"})
        self.call("POST", "/v1/releases", {"task": task, "spec": CANDIDATE,
                                           "reason": "stricter resolution scoring"})
        self.call("POST", f"/v1/releases/{task}/2/promote", {"stage": "Beta", "reason": "eval ok"})

    def rollout(self, task: str, steps: list[Any] | None = None, for_seconds: float = 0,
                reason: str = "progressive rollout of v2") -> str:
        self.releases(task)
        rule = {"name": "llm-errors", "metric": "llm_error_rate", "comparator": ">",
                "threshold": 0.05, "min_samples": 100, "window_seconds": 600,
                "for_seconds": for_seconds, "gate_class": "RollbackTrigger"}
        body: dict[str, Any] = {"task": task, "candidate": 2, "guard_rules": [rule],
                                "reason": reason}
        if steps is not None:
            body["steps"] = steps
        rollout = str(self.call("POST", "/v1/rollouts", body)["aggregate"]["id"])
        self.call("POST", f"/v1/rollouts/{rollout}/start", {"reason": "canary"})
        return rollout

    def evaluations(self, task: str, count: int = 600, error_every: int = 5,
                    prefix: str = "call") -> None:
        """Both arms; on the candidate one LLM error every ``error_every`` odd records
        (0: none)."""
        now = datetime.now(UTC).isoformat()
        records = [{
            "tenant": TENANTS[i % len(TENANTS)], "task": task, "call_id": f"{prefix}-{i}",
            "release": 2 if i % 2 else 1, "prompt_hash": HASHES[2 if i % 2 else 1],
            "model_provider": "openai", "model_version": SPEC["model_version"],
            "temperature": 0.0, "seed": 42,
            "outcome": "llm_error" if error_every and i % 2 and i % error_every == 1 else "ok",
            "latency_ms": 900.0, "tokens": 850, "cost_usd": 0.004, "score": 78.0,
            "occurred_at": now} for i in range(count)]
        self.call("POST", "/v1/evaluations", records)


@contextlib.contextmanager
def relctl_up() -> Iterator[Api]:
    """`relctl up` on a fresh data directory (embedded PostgreSQL, broker, one worker)."""
    root = Path(tempfile.mkdtemp(prefix="relctl-console-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELCTL_")}
    env["XDG_STATE_HOME"] = str(root / "state")
    process = subprocess.Popen(
        [sys.executable, "-m", "relctl.entrypoints.cli", "up", "--data-dir",
         str(root / "data"), "--api-port", str(port)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError("relctl up exited")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("relctl up did not become ready in 90 s")
            time.sleep(0.2)
        yield Api(url, (root / "data" / "admin-token").read_text().strip())
    finally:
        process.terminate()
        process.wait(60)
        shutil.rmtree(root, ignore_errors=True)


def chrome(width: int = 1280, height: int = 900, dark: bool = False) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--hide-scrollbars", f"--window-size={width},{height}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    if dark:  # prefers-color-scheme: dark, as the operating system would ask for it
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": [
            {"name": "prefers-color-scheme", "value": "dark"}]})
    return driver


def open_signed_in(driver: WebDriver, url: str, token: str) -> None:
    """Load the console with the token already in the tab's session (as after a sign-in)."""
    driver.get(url + "/console")
    driver.execute_script("sessionStorage.setItem('relctl.console.token', arguments[0])", token)
    driver.refresh()
    wait(lambda: driver.execute_script("return document.getElementById('live').textContent")
         == "live", 30, "the console's live stream")


def wait(check: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """:func:`bench.common.wait_until` with the console scripts' argument order."""
    return wait_until(check, timeout, interval, what)
