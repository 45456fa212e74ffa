"""Screenshots of the operator console's main views, laptop and phone sized, light and dark.

Run: .venv/bin/python -m bench.console_screenshots [--out docs/console]

Starts its own `relctl up`, records a small scenario through the API (a healthy rollout whose
guard charts fill as evaluations arrive, one the guard rolls back on its own, one frozen by an
operator, a pin and an override), then opens the console in a headless Chromium and saves PNGs.
"""

import argparse
import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from bench.console_stack import TENANTS, Api, chrome, open_signed_in, relctl_up, wait

LAPTOP = (1280, 900)
PHONE = (390, 844)
SHOTS: list[tuple[str, str, tuple[int, int], bool]] = [
    # (file, view, size, dark)
    ("rollouts-laptop-light", "rollouts", LAPTOP, False),
    ("rollouts-laptop-dark", "rollouts", LAPTOP, True),
    ("rollouts-phone-light", "rollouts", PHONE, False),
    ("rollouts-phone-dark", "rollouts", PHONE, True),
    ("rollback-dialog-laptop-light", "act", LAPTOP, False),
    ("audit-laptop-light", "audit", LAPTOP, False),
    ("audit-phone-dark", "audit", PHONE, True),
    ("resolve-laptop-dark", "resolve", LAPTOP, True),
    ("alerts-laptop-light", "alerts", LAPTOP, False),
    ("overrides-laptop-dark", "overrides", LAPTOP, True),
]


def scenario(api: Api) -> dict[str, str]:
    for key, name in zip(TENANTS, ("Acme Corp", "Globex", "Initech", "Umbrella", "Hooli",
                                   "Stark Industries"), strict=True):
        api.call("POST", "/v1/tenants", {"key": key, "name": name, "reason": "onboarding"})
    healthy = api.rollout("csat", steps=[50, 100], reason="stricter resolution scoring")
    for batch in range(6):  # a moving error rate below the threshold: a chart with a history
        api.evaluations("csat", count=200, error_every=[0, 49, 33, 41, 29, 37][batch],
                        prefix=f"b{batch}")
        time.sleep(1.2)
    broken = api.rollout("qa-score", steps=[100], reason="new model version")
    api.evaluations("qa-score", prefix="broken")
    wait(lambda: api.call("GET", f"/v1/rollouts/{broken}")["state"] == "RolledBack", 60,
         "the guard's rollback")
    frozen = api.rollout("summaries", steps=[25, 100], reason="shorter summaries")
    api.call("POST", f"/v1/rollouts/{frozen}/freeze",
             {"reason": "customer escalation: summaries truncated",
              "evidence": {"ticket": "INC-2041"}})
    api.call("POST", "/v1/tenants/initech/pins",
             {"task": "csat", "release": 1, "days": 14, "reason": "audit in progress"})
    api.call("POST", "/v1/tenants/hooli/overrides",
             {"task": "csat", "kind": "prompt", "value": "Score empathy twice as high.",
              "base_release": 1, "reason": "contractual scoring rule"})
    return {"healthy": healthy, "broken": broken, "frozen": frozen}


def show(driver: Any, view: str, ids: dict[str, str]) -> None:
    if view == "act":
        driver.find_element(
            By.CSS_SELECTOR, f'[data-rollout-id="{ids["healthy"]}"] [data-action="rollback"]'
        ).click()
        driver.find_element(By.ID, "act-reason").send_keys("scores drift against QA review")
        return
    driver.find_element(By.ID, f"tab-{view}").click()
    if view == "audit":
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#audit-rows tr"), 30, "audit rows")
    elif view == "resolve":
        driver.find_element(By.ID, "resolve-tenant").send_keys("initech")
        driver.find_element(By.ID, "resolve-task").send_keys("csat")
        driver.find_element(By.CSS_SELECTOR, "#resolve-form button").click()
        wait(lambda: driver.find_element(By.ID, "resolve-result").is_displayed(), 30, "answer")
    elif view == "alerts":
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#alerts-list li"), 30, "alerts")
    elif view == "overrides":
        wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#pins-rows tr"), 30, "pins")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/console")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with relctl_up() as api:
        ids = scenario(api)
        for name, view, (width, height), dark in SHOTS:
            driver = chrome(width, height, dark)
            try:
                open_signed_in(driver, api.url, api.token)
                wait(lambda d=driver: d.find_elements(  # type: ignore[misc]
                    By.CSS_SELECTOR, f'[data-rollout-id="{ids["frozen"]}"]'), 30, "the cards")
                show(driver, view, ids)
                time.sleep(0.3)  # let the last frame paint
                driver.save_screenshot(str(out / f"{name}.png"))
                print(out / f"{name}.png")
            finally:
                driver.quit()


if __name__ == "__main__":
    main()
