"""The operator console in a real headless Chromium against a real `relctl up`."""

import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest
from relctl.infra.embedded import free_port
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.support import (
    PHONE,
    Api,
    card_actions,
    card_state,
    card_text,
    click_action,
    sign_in,
    unique_task,
    wait,
)
from tests.e2e.support import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def audit_rows(driver: WebDriver) -> list[str]:
    """The audit timeline's rows as text, read at once (rows are redrawn live)."""
    return list(driver.execute_script(
        "return [...document.querySelectorAll('#audit-rows tr')].map(r => r.textContent)"))


def test_the_page_ships_a_strict_policy_and_no_inline_script(stack: Stack) -> None:
    page = httpx.get(stack.url + "/console")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy and "form-action 'none'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in page.text and "<script src=" in page.text
    for asset in ("console.js", "console.css"):
        assert httpx.get(f"{stack.url}/console/static/{asset}").status_code == 200
    assert httpx.get(f"{stack.url}/console/static/../app.py").status_code == 404
    # The reads behind the page need a token like every other read.
    assert httpx.get(stack.url + "/console/api/snapshot").status_code == 401
    assert httpx.get(stack.url + "/console/api/stream").status_code == 401


def test_sign_in_keeps_the_token_out_of_the_url(stack: Stack, browser: WebDriver) -> None:
    browser.get(stack.url + "/console")
    browser.find_element(By.ID, "token").send_keys("not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
    wait(browser, lambda d: d.find_element(By.ID, "signin-error").text, what="a refusal")
    assert "token" in browser.find_element(By.ID, "signin-error").text
    assert browser.find_element(By.ID, "main").get_attribute("hidden") is not None

    sign_in(browser, stack.url, stack.token)
    assert browser.find_element(By.ID, "who").text == "admin · admin"
    assert stack.token not in browser.current_url
    assert browser.execute_script(
        "return sessionStorage.getItem('relctl.console.token')") == stack.token
    assert browser.execute_script("return document.cookie") == ""
    # A reload keeps the session (same tab); signing out forgets the token.
    browser.refresh()
    wait(browser, lambda d: d.find_element(By.ID, "live").text == "live", what="live again")
    browser.find_element(By.ID, "signout").click()
    assert browser.execute_script(
        "return sessionStorage.getItem('relctl.console.token')") is None


def test_a_rollout_the_guard_rolls_back_turns_rolled_back_without_a_reload(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    sign_in(browser, stack.url, stack.token)
    browser.execute_script("window.__sameDocument = 'yes'")
    task = unique_task("guarded")
    rollout = admin.rollout(task)
    wait(browser, lambda d: card_state(d, rollout) == "Running", what="the new rollout, live")
    admin.break_the_guard(task)
    wait(browser, lambda d: card_state(d, rollout) == "RolledBack", timeout=60,
         what="the guard's rollback, live")
    assert browser.execute_script("return window.__sameDocument") == "yes", "no reload"
    assert card_text(browser, rollout, '[data-rule="llm-errors"] .badge') == "Failed"
    assert "relctl-guard" in card_text(browser, rollout, ".decision")
    assert card_actions(browser, rollout) == [], "nothing left to do"
    assert admin.state(rollout) == "RolledBack"
    # The decision is an alert too, with its evidence, found by task and actor.
    browser.find_element(By.ID, "tab-alerts").click()
    browser.find_element(By.ID, "alerts-task").send_keys(task)
    browser.find_element(By.ID, "alerts-actor").send_keys("relctl-guard")
    browser.find_element(By.CSS_SELECTOR, "#alerts-form button[type=submit]").click()
    wait(browser, lambda d: f"rollback of {task} by relctl-guard" in d.find_element(
        By.ID, "alerts-list").text, what="the decision among the alerts")
    items = browser.execute_script(
        "return [...document.querySelectorAll('#alerts-list li')].map(li => li.textContent)")
    assert len(items) == 1 and "Evidence" in items[0]


def test_a_rollback_by_hand_asks_for_a_reason_and_lands_in_the_audit_timeline(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    task = unique_task("manual")
    rollout = admin.rollout(task)
    sign_in(browser, stack.url, stack.token)
    wait(browser, lambda d: card_state(d, rollout) == "Running", what="the rollout")
    click_action(browser, rollout, "rollback")
    dialog = browser.find_element(By.ID, "act-dialog")
    assert dialog.get_attribute("open") is not None
    evidence = browser.find_element(By.ID, "act-evidence").text
    assert rollout in evidence and '"source": "relctl console"' in evidence
    browser.find_element(By.ID, "act-confirm").click()  # no reason yet: refused on the page
    assert "reason" in browser.find_element(By.ID, "act-error").text
    assert admin.state(rollout) == "Running"
    browser.find_element(By.ID, "act-reason").send_keys("candidate scores drift in QA review")
    browser.find_element(By.ID, "act-confirm").click()
    wait(browser, lambda d: d.find_element(By.ID, "act-result").text, what="the event")
    result = browser.find_element(By.ID, "act-result").text
    assert "io.relctl.rollout.rolled_back.v1" in result
    assert "candidate scores drift in QA review" in result
    browser.find_element(By.ID, "act-cancel").click()
    wait(browser, lambda d: card_state(d, rollout) == "RolledBack", what="the card, live")
    assert admin.state(rollout) == "RolledBack"

    browser.find_element(By.ID, "tab-audit").click()
    browser.find_element(By.ID, "audit-task").send_keys(task)
    browser.find_element(By.ID, "audit-actor").send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "#audit-form button[type=submit]").click()

    def rolled_back_row(d: WebDriver) -> str | None:
        return next((row for row in audit_rows(d) if "Rollout.RolledBack" in row), None)

    row = wait(browser, rolled_back_row, what="the rollback in the audit timeline")
    assert "candidate scores drift in QA review" in row and "admin" in row
    assert all(task in r for r in audit_rows(browser)), "the task filter applies"


def test_pin_freeze_and_a_break_glass_resume_from_the_cards(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    task = unique_task("pinned")
    tenant = f"t-{task}"
    admin.call("POST", "/v1/tenants", {"key": tenant, "name": "Pinned Inc", "reason": "new"})
    rollout = admin.rollout(task)
    sign_in(browser, stack.url, stack.token)
    wait(browser, lambda d: card_state(d, rollout) == "Running", what="the rollout")

    def act(action: str, reason: str, tenant: str | None = None) -> str:
        click_action(browser, rollout, action)
        if tenant is not None:
            browser.find_element(By.ID, "act-tenant").send_keys(tenant)
        browser.find_element(By.ID, "act-reason").send_keys(reason)
        browser.find_element(By.ID, "act-confirm").click()
        wait(browser, lambda d: d.find_element(By.ID, "act-result").text, what="the event")
        result = str(browser.find_element(By.ID, "act-result").text)
        browser.find_element(By.ID, "act-cancel").click()
        return result

    click_action(browser, rollout, "pin")  # an unknown tenant: refused, the error shown
    browser.find_element(By.ID, "act-tenant").send_keys("nobody-here")
    browser.find_element(By.ID, "act-reason").send_keys("keep it steady")
    browser.find_element(By.ID, "act-confirm").click()
    wait(browser, lambda d: d.find_element(By.ID, "act-error").text, what="the refusal")
    browser.find_element(By.ID, "act-cancel").click()
    assert "io.relctl.tenant.pinned.v1" in act("pin", "keep it steady", tenant=tenant)
    assert admin.call("GET", "/v1/resolve", tenant=tenant, task=task)["source"] == "pin"
    assert "io.relctl.rollout.frozen.v1" in act("freeze", "incident 4711")
    wait(browser, lambda d: card_state(d, rollout) == "Frozen", what="Frozen, live")
    assert "io.relctl.rollout.resumed.v1" in act("resume", "incident closed")  # admin only
    wait(browser, lambda d: card_state(d, rollout) == "Running", what="Running again")
    browser.find_element(By.ID, "tab-overrides").click()
    wait(browser, lambda d: task in d.find_element(By.ID, "pins-rows").text, what="the pin")
    assert "keep it steady" in browser.find_element(By.ID, "pins-rows").text


def test_an_auditor_sees_everything_and_no_action_buttons(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    task = unique_task("audited")
    rollout = admin.rollout(task)
    sign_in(browser, stack.url, admin.token(f"auditor-{task}", "auditor"))
    assert browser.find_element(By.ID, "who").text.endswith("auditor")
    wait(browser, lambda d: card_state(d, rollout) == "Running", what="the rollout")
    assert browser.find_elements(By.CSS_SELECTOR, f'[data-rollout-id="{rollout}"] .rule')
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-action]")
    browser.find_element(By.ID, "tab-audit").click()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#audit-rows tr"),
         what="the audit timeline")
    # An operator, by contrast, gets the buttons (and no break-glass on a frozen rollout).
    admin.call("POST", f"/v1/rollouts/{rollout}/freeze", {"reason": "incident review"})
    browser.execute_script("sessionStorage.clear()")
    sign_in(browser, stack.url, admin.token(f"operator-{task}", "operator"))
    wait(browser, lambda d: card_state(d, rollout) == "Frozen", what="the frozen rollout")
    actions = card_actions(browser, rollout)
    assert "rollback" in actions and "resume" not in actions


@pytest.fixture
def other_site() -> Iterator[tuple[str, dict[str, bytes]]]:
    """Another origin serving whatever page a test puts in ``pages``."""
    pages: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"not found")
            self.send_response(200 if self.path in pages else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", pages
    server.shutdown()


def test_a_forged_cross_site_form_post_is_refused(
        stack: Stack, admin: Api, browser: WebDriver,
        other_site: tuple[str, dict[str, bytes]]) -> None:
    task = unique_task("csrf")
    rollout = admin.rollout(task)
    events_before = len(admin.call("GET", f"/v1/rollouts/{rollout}/history")["events"])
    sign_in(browser, stack.url, stack.token)  # a signed-in operator visits a hostile page
    site, pages = other_site
    target = f"{stack.url}/v1/rollouts/{rollout}/rollback"
    pages["/form"] = (
        f'<form id="f" method="POST" action="{target}">'
        '<input name="reason" value="forged"></form>'
        '<script>document.getElementById("f").submit()</script>').encode()
    # The classic JSON-by-text/plain trick: the body parses as JSON, but still no credentials.
    pages["/plain"] = (
        f'<form id="f" method="POST" enctype="text/plain" action="{target}">'
        '<input name=\'{"reason": "forged", "x": "\' value=\'"}\'></form>'
        '<script>document.getElementById("f").submit()</script>').encode()
    for page in ("/form", "/plain"):
        browser.get(site + page)
        wait(browser, lambda d: d.current_url.startswith(stack.url), what="the form post")
        body = wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").text,
                    what="the answer")
        assert "unauthorized" in body or "bad_request" in body, body
    assert admin.state(rollout) == "Running"
    history = admin.call("GET", f"/v1/rollouts/{rollout}/history")["events"]
    assert len(history) == events_before, "nothing was recorded"


XSS_NAME = '<img src=x onerror="window.__xss=1">'
XSS_REASON = "<script>window.__xss=2</script> and <img src=x onerror=window.__xss=3>"


def test_script_in_names_and_reasons_is_shown_as_text(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    task = unique_task("xss")
    tenant = f"t-{task}"
    admin.call("POST", "/v1/tenants", {"key": tenant, "name": XSS_NAME, "reason": XSS_REASON})
    rollout = admin.rollout(task, reason=XSS_REASON)
    admin.call("POST", f"/v1/rollouts/{rollout}/rollback",
               {"reason": XSS_REASON, "evidence": {"note": XSS_NAME}})
    sign_in(browser, stack.url, stack.token)
    wait(browser, lambda d: card_state(d, rollout) == "RolledBack", what="the rollout")
    assert XSS_REASON in card_text(browser, rollout, ".decision")
    browser.find_element(By.ID, "tab-audit").click()
    browser.find_element(By.ID, "audit-task").send_keys(task)
    browser.find_element(By.CSS_SELECTOR, "#audit-form button[type=submit]").click()
    wait(browser, lambda d: XSS_REASON in d.find_element(By.ID, "audit-rows").text,
         what="the reason, literally, in the audit timeline")
    browser.find_element(By.ID, "tab-overrides").click()
    wait(browser, lambda d: XSS_NAME in d.find_element(By.ID, "tenants-rows").text,
         what="the name, literally, in the tenants table")
    assert browser.execute_script("return typeof window.__xss") == "undefined"
    assert not browser.find_elements(By.CSS_SELECTOR, "main img, main script")


def test_the_page_fits_a_phone_and_its_tabs_work_from_the_keyboard(
        stack: Stack, admin: Api, browser: WebDriver) -> None:
    admin.rollout(unique_task("phone"))
    browser.set_window_size(*PHONE)
    sign_in(browser, stack.url, stack.token)
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-rollout-id]"),
         what="a rollout card")
    width = browser.execute_script("return document.documentElement.clientWidth")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= width
    tab = browser.find_element(By.ID, "tab-rollouts")
    tab.send_keys("\ue014")  # ArrowRight
    assert browser.switch_to.active_element.get_attribute("id") == "tab-resolve"
    assert browser.find_element(By.ID, "view-resolve").is_displayed()
