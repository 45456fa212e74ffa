"""GET /v1/resolve served from the resolution read model, as ``relctl up`` runs it: a projector
in the API process keeps an in-memory copy of the current intervals.

The resolve tests of test_api run again here against that server (same assertions, same
bodies), and the tests below check what only the projection path has: ETag revalidation,
read-your-writes without any wait in the caller, and that the fold is no longer consulted.
"""

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from relctl.infra.bootstrap import Runtime
from relctl.infra.projector import start_projectors
from relctl.projections.control_state import ControlState

from tests.integration.conftest import Server
from tests.integration.test_api import (
    ok,
    release,
    test_a_producer_resolves_both_arms_of_a_shadow_rollout,
    test_complete_makes_the_candidate_the_default,
    test_resolve_as_of_an_earlier_instant,
    test_roles_limit_what_each_actor_may_do,
    test_rollout_rollback_and_resolve_through_the_api,
    test_tenant_flags_overrides_pins_and_reset,
)

pytestmark = pytest.mark.integration

__all__ = [  # collected again in this module, against the projected server below
    "test_a_producer_resolves_both_arms_of_a_shadow_rollout",
    "test_complete_makes_the_candidate_the_default", "test_resolve_as_of_an_earlier_instant",
    "test_roles_limit_what_each_actor_may_do", "test_rollout_rollback_and_resolve_through_the_api",
    "test_tenant_flags_overrides_pins_and_reset",
]


@pytest.fixture
def server(runtime: Runtime) -> Iterator[Server]:
    projectors = start_projectors(runtime.app, runtime.settings, idle_wait=0.2,
                                  listener=runtime.state.projected())
    instance = Server(runtime)
    instance.start()
    yield instance
    instance.stop()
    projectors.stop()
    # Every answer above came from the read model: the fold never read a single event.
    assert runtime.state.position == 0


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _setup(api: httpx.Client, task: str = "rp") -> None:
    release(api, task)
    ok(api.post(f"/v1/tasks/{task}/default", json={"release": 1, "reason": "launch"}))
    ok(api.post("/v1/tenants", json={"key": "acme", "reason": "onboard"}), 201)


def test_the_answer_equals_the_fold_and_carries_an_etag(runtime: Runtime,
                                                        api: httpx.Client) -> None:
    _setup(api)
    response = api.get("/v1/resolve", params={"tenant": "acme", "task": "rp"})
    assert response.status_code == 200 and response.headers["etag"].startswith('"')
    fold = ControlState(runtime.app)  # a separate fold, to compare with
    assert response.json() == fold.resolve("acme", "rp").as_dict()
    assert response.headers["etag"] == f'"{fold.resolve_body("acme", "rp")[1]}"'


def test_if_none_match_gets_304_until_the_answer_changes(api: httpx.Client) -> None:
    _setup(api)
    first = api.get("/v1/resolve", params={"tenant": "acme", "task": "rp"})
    etag = first.headers["etag"]
    again = api.get("/v1/resolve", params={"tenant": "acme", "task": "rp"},
                    headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
    ok(api.post("/v1/tenants/acme/flags/enable_blueprints",
                json={"enabled": True, "reason": "beta"}))
    changed = api.get("/v1/resolve", params={"tenant": "acme", "task": "rp"},
                      headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert changed.json()["flags"]["enable_blueprints"] is True


def test_a_caller_reads_its_own_write_at_once(api: httpx.Client) -> None:
    _setup(api)
    for n in range(2, 6):
        release(api, "rp")
        ok(api.post("/v1/tasks/rp/default", json={"release": n, "reason": f"move to v{n}"}))
        # No waiting in the caller: the read waits until the copy has the command.
        assert ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "rp"}))[
            "release"] == n


def test_at_an_earlier_instant_and_an_unregistered_tenant(api: httpx.Client) -> None:
    _setup(api)
    before = datetime.now(UTC)
    release(api, "rp")
    ok(api.post("/v1/tasks/rp/default", json={"release": 2, "reason": "move to v2"}))
    then = ok(api.get("/v1/resolve", params={"tenant": "acme", "task": "rp",
                                             "at": before.isoformat()}))
    assert then["release"] == 1
    stranger = ok(api.get("/v1/resolve", params={"tenant": "stranger", "task": "rp"}))
    assert (stranger["release"], stranger["flags"]["enable_blueprints"]) == (2, False)
    missing = api.get("/v1/resolve", params={"tenant": "acme", "task": "nothing"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
