"""A real `relctl up` for the browser tests, the scenario they drive through its API, and a
headless Chromium pointed at it (Debian's chromium and chromedriver, never a download)."""

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from relctl.domain.release import prompt_hash
from relctl.entrypoints.demo import SPEC
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("RELCTL_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RELCTL_CHROMEDRIVER", "/usr/bin/chromedriver")
LAPTOP = (1280, 900)
PHONE = (390, 844)


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() or shutil.which(path)):
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    return None


def chrome(size: tuple[int, int] = LAPTOP, dark: bool = False) -> WebDriver:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", f"--window-size={size[0]},{size[1]}"):
        options.add_argument(arg)
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(*size)
    return driver


def wait(driver: WebDriver, check: Any, timeout: float = 30, what: str = "condition") -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(
        check, message=f"timed out after {timeout}s waiting for {what}")


def sign_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(url + "/console")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    wait(driver, lambda d: d.find_element(By.ID, "live").text == "live", what="the live stream")


def card(driver: WebDriver, rollout_id: str) -> Any:
    found = driver.find_elements(By.CSS_SELECTOR, f'[data-rollout-id="{rollout_id}"]')
    return found[0] if found else None


def card_state(driver: WebDriver, rollout_id: str) -> str | None:
    try:
        return str(driver.execute_script(
            "const c = document.querySelector(`[data-rollout-id=\"${arguments[0]}\"]`);"
            "return c ? c.querySelector('.badge.state').dataset.state : null;", rollout_id))
    except Exception:
        return None


class Api:
    """The relctl HTTP API with one token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        response = self.http.request(method, path, json=body, params=params or None)
        assert response.status_code < 300, (method, path, response.status_code, response.text)
        return response.json()

    def token(self, actor: str, role: str) -> str:
        return str(self.call("POST", "/v1/tokens", {"actor": actor, "role": role})["token"])

    def rollout(self, task: str, reason: str = "progressive rollout of v2",
                tenants: tuple[str, ...] = ("acme", "globex", "initech", "umbrella")) -> str:
        """Releases v1 (default) and v2 of ``task`` and a running rollout of v2 at 25 %."""
        self.call("POST", "/v1/releases", {"task": task, "spec": SPEC, "reason": "first prompt"})
        self.call("POST", f"/v1/tasks/{task}/gate-waiver", {"reason": "console, not gates"})
        self.call("POST", f"/v1/releases/{task}/1/promote",
                  {"stage": "Stable", "reason": "passed regression"})
        self.call("POST", f"/v1/tasks/{task}/default", {"release": 1, "reason": "launch"})
        self.call("POST", "/v1/releases", {"task": task, "spec": candidate_spec(),
                                           "reason": "stricter resolution scoring"})
        self.call("POST", f"/v1/releases/{task}/2/promote", {"stage": "Beta", "reason": "eval ok"})
        guard = [{"name": "llm-errors", "metric": "llm_error_rate", "comparator": ">",
                  "threshold": 0.05, "min_samples": 100, "window_seconds": 600,
                  "for_seconds": 0, "gate_class": "RollbackTrigger"}]
        plan = self.call("POST", "/v1/rollouts", {"task": task, "candidate": 2,
                                                  "guard_rules": guard, "reason": reason})
        rollout = str(plan["aggregate"]["id"])
        self.call("POST", f"/v1/rollouts/{rollout}/start", {"reason": "canary"})
        self.call("POST", f"/v1/rollouts/{rollout}/advance", {"reason": "canary healthy"})
        self.tenants = tenants
        return rollout

    def state(self, rollout: str) -> str:
        return str(self.call("GET", f"/v1/rollouts/{rollout}")["state"])

    def break_the_guard(self, task: str, tenants: tuple[str, ...] = (
            "acme", "globex", "initech", "umbrella", "hooli", "stark")) -> None:
        """Evaluations of both arms, 20 % LLM errors on the candidate (as the demo sends)."""
        hashes = {1: prompt_hash(SPEC["prompt_template"]),
                  2: prompt_hash(candidate_spec()["prompt_template"])}
        now = datetime.now(UTC).isoformat()
        records = [{
            "tenant": tenants[i % len(tenants)], "task": task, "call_id": f"call-{i}",
            "release": 2 if i % 2 else 1, "prompt_hash": hashes[2 if i % 2 else 1],
            "model_provider": "openai", "model_version": SPEC["model_version"],
            "temperature": 0.0, "seed": 42,
            "outcome": "llm_error" if i % 2 and i % 5 == 1 else "ok", "latency_ms": 900.0,
            "tokens": 850, "cost_usd": 0.004, "score": 78.0, "occurred_at": now,
        } for i in range(600)]
        self.call("POST", "/v1/evaluations", records)


def candidate_spec() -> dict[str, Any]:
    return {**SPEC, "prompt_template": SPEC["prompt_template"] + " Penalise unresolved issues.",
            "release_notes": {**SPEC["release_notes"], "what": "stricter resolution scoring"}}


def unique_task(prefix: str) -> str:
    return f"{prefix}-{time.time_ns() % 10**12}"


def click_action(driver: WebDriver, rollout_id: str, action: str) -> None:
    """Click an action of a rollout's card (cards are redrawn live: retry a stale one)."""
    selector = f'[data-rollout-id="{rollout_id}"] [data-action="{action}"]'

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    wait(driver, clicked, what=f"the {action} button")


def card_actions(driver: WebDriver, rollout_id: str) -> list[str]:
    return list(driver.execute_script(
        "return [...document.querySelectorAll(`[data-rollout-id=\"${arguments[0]}\"] "
        "[data-action]`)].map(b => b.dataset.action)", rollout_id))


def card_text(driver: WebDriver, rollout_id: str, selector: str) -> str:
    return str(driver.execute_script(
        "const c = document.querySelector(`[data-rollout-id=\"${arguments[0]}\"]`);"
        "const n = c && c.querySelector(arguments[1]); return n ? n.textContent : '';",
        rollout_id, selector))
