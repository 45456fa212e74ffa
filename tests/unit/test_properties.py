"""Properties: replay rebuilds the same state, resolution is deterministic, steps are monotonic."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st
from relctl.application.service import ControlPlane
from relctl.domain.errors import RelctlError
from relctl.domain.resolution import resolve
from relctl.domain.rollout import Rollout, normalize_steps, step_includes, tenant_bucket
from relctl.domain.tenant import COHORTS, FLAGS

from .support import (
    ACTOR,
    OTHER,
    REASON,
    fold,
    new_app,
    released_task,
    spec,
    stages,
    stored_events,
)

TASKS = ("alpha", "beta")
TENANTS = ("t0", "t1", "t2", "t3")
STAGE_NAMES = ("InternalTest", "Beta", "Stable", "Deprecated", "Draft")
STEP_CHOICES: tuple[Any, ...] = (None, [100], [30, 100], ["internal", "general"],
                                 ["closed_beta", "open_beta", "general"], [50, 40])
ROLLOUT_COMMANDS = ("start_rollout", "advance_rollout", "pause_rollout", "resume_rollout",
                    "freeze_rollout", "roll_back", "complete_rollout")
OPS = (
    "create_release", "breaking_release", "revise_release", "promote_release",
    "set_default_release", "plan_rollout", *ROLLOUT_COMMANDS, *ROLLOUT_COMMANDS,
    "register_tenant", "move_tenant", "flip_flag", "set_override", "clear_override", "pin",
    "unpin", "reset_tenant", "update_blueprint", "confirm_critical", "publish_blueprint",
    "bad_attribution",
)

operations = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 7), st.booleans()),
    max_size=30,
)


class Session:
    """Runs generated commands against an in-memory ControlPlane, keeping what they returned."""

    def __init__(self) -> None:
        self.app: ControlPlane = new_app()
        for task in TASKS:
            released_task(self.app, task=task, count=3, default=1)
            self.app.create_release(task, spec(prompt_template="draft"), ACTOR, REASON)
        self.app.register_tenant("t0", "T0", "internal", ACTOR, REASON)
        self.app.register_tenant("t1", "T1", "general", ACTOR, REASON)
        self.app.create_blueprint("qa", stages(critical={"s0/b0": "be kind"}), ACTOR, REASON)
        self.rollouts: dict[str, list[UUID]] = {task: [] for task in TASKS}
        running = self.app.plan_rollout(TASKS[0], 2, ACTOR, REASON, steps=[10, 50, 100])
        self.rollouts[TASKS[0]].append(UUID(running["aggregate"]["id"]))
        self.app.start_rollout(self.rollouts[TASKS[0]][0], ACTOR, REASON)
        for tenant in ("t0", "t1"):
            for task in TASKS:
                self.app.set_override(tenant, task, "prompt", "Be brief.", ACTOR, REASON)
                self.app.pin(tenant, task, 3, ACTOR, REASON)
        self.outcomes: list[tuple[UUID, int, dict[str, Any]]] = []
        self.refusals = 0

    def run(self, op: str, a: int, b: int, flag: bool) -> None:
        task = TASKS[a % len(TASKS)]
        tenant = TENANTS[b % len(TENANTS)]
        try:
            outcome = self._dispatch(op, task, tenant, a=a, b=b, flag=flag)
        except RelctlError:
            self.refusals += 1
            return
        summary = outcome["aggregate"]
        self.outcomes.append((UUID(summary["id"]), summary["aggregate_version"], summary))
        if op == "plan_rollout":
            self.rollouts[task].append(UUID(summary["id"]))

    def _dispatch(  # noqa: PLR0911, PLR0912 - one branch per command
        self, op: str, task: str, tenant: str, *, a: int, b: int, flag: bool,
    ) -> Any:
        app = self.app
        number = b % 5 + 1
        if op == "create_release":
            return app.create_release(task, spec(prompt_template=f"p{a}{b}", seed=b), ACTOR,
                                      REASON)
        if op == "breaking_release":
            schema = {"type": "object", "properties": {"score": {"type": "string"}}}
            return app.create_release(task, spec(output_schema=schema), ACTOR, REASON)
        if op == "revise_release":
            return app.revise_release(task, number, spec(prompt_template=f"r{a}"), ACTOR, REASON)
        if op == "promote_release":
            return app.promote_release(task, number, STAGE_NAMES[a % len(STAGE_NAMES)], ACTOR,
                                       REASON)
        if op == "set_default_release":
            return app.set_default_release(task, number, ACTOR, REASON)
        if op == "plan_rollout":
            return app.plan_rollout(task, 2 + b % 3, ACTOR, REASON, steps=STEP_CHOICES[b % 6],
                                    shadow=flag)
        if op in ROLLOUT_COMMANDS:
            if not self.rollouts[task]:
                raise RelctlError("no rollout yet")
            return getattr(app, op)(self.rollouts[task][-1], OTHER if flag else ACTOR, REASON)
        if op == "register_tenant":
            return app.register_tenant(tenant, tenant.upper(), COHORTS[a % 4], ACTOR, REASON)
        if op == "move_tenant":
            return app.move_tenant(tenant, COHORTS[a % 4], ACTOR, REASON)
        if op == "flip_flag":
            return app.flip_flag(tenant, FLAGS[a % 5], flag, ACTOR, REASON)
        if op == "set_override":
            return app.set_override(tenant, task, "prompt" if flag else "filter", f"v{a}",
                                    ACTOR, REASON, base_release=number if b % 2 else None)
        if op == "clear_override":
            return app.clear_override(tenant, task, "prompt" if flag else "filter", ACTOR, REASON)
        if op == "pin":
            return app.pin(tenant, task, number, ACTOR, REASON, days=[1, 30, 60, 0, 61][a % 5])
        if op == "unpin":
            return app.unpin(tenant, task, ACTOR, REASON)
        if op == "reset_tenant":
            return app.reset_tenant(tenant, task if flag else None, ACTOR, REASON)
        if op == "update_blueprint":
            rule = "be kind" if flag else f"be kind {a}"
            return app.update_blueprint("qa", stages((a * 10, 100 - a * 10),
                                                     critical={"s0/b0": rule}), ACTOR, REASON)
        if op == "confirm_critical":
            return app.confirm_critical("qa", "s0", "b0", ("ann", "ben", "cat")[a % 3], REASON)
        if op == "publish_blueprint":
            return app.publish_blueprint("qa", ACTOR, REASON)
        assert op == "bad_attribution"
        return app.flip_flag(tenant, FLAGS[0], flag, "" if flag else ACTOR, "x")


@settings(max_examples=60, deadline=None)
@given(operations)
def test_replaying_the_events_rebuilds_the_same_state(
    ops: list[tuple[str, int, int, bool]],
) -> None:
    session = Session()
    for op in ops:
        session.run(*op)
    app = session.app
    events = stored_events(app)
    view = fold(events)

    # every stored aggregate, and nothing else, is in the view, in the same state
    assert set(view.aggregates) == {e.originator_id for e in events}
    for aggregate_id, aggregate in view.aggregates.items():
        assert aggregate.summary() == app.repository.get(aggregate_id).summary()

    # what each command reported is exactly what replaying up to that version gives
    for aggregate_id, version, summary in session.outcomes:
        assert app.repository.get(aggregate_id, version=version).summary() == summary

    # events of one aggregate are stored with consecutive versions
    versions: dict[UUID, list[int]] = {}
    for e in events:
        versions.setdefault(e.originator_id, []).append(e.originator_version)
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())


AT = datetime(2030, 1, 1, tzinfo=UTC)


@settings(max_examples=40, deadline=None)
@given(operations, st.sampled_from([*TENANTS, "ghost"]), st.sampled_from(TASKS),
       st.integers(-90, 90))
def test_resolution_is_deterministic(
    ops: list[tuple[str, int, int, bool]], tenant: str, task: str, days: int,
) -> None:
    session = Session()
    for op in ops:
        session.run(*op)
    events = stored_events(session.app)
    at = datetime.now(UTC) + timedelta(days=days)
    first_view, second_view = fold(events), fold(events)

    def outcome(view: Any) -> Any:
        try:
            return resolve(view, tenant, task, at).as_dict()
        except RelctlError as exc:
            return (type(exc), str(exc))

    first = outcome(first_view)
    assert outcome(first_view) == first  # resolving does not change the view
    assert outcome(second_view) == first  # an independent fold gives the same answer
    if isinstance(first, dict):
        assert first["tenant"] == tenant
        assert first["task"] == task
        assert first["release"] in session.app.task(task).releases


keys = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
percent = st.floats(min_value=0.01, max_value=100, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(keys, keys, percent, percent)
def test_percentage_membership_is_monotonic(task: str, tenant: str, p1: float,
                                            p2: float) -> None:
    low, high = sorted((p1, p2))
    bucket = tenant_bucket(task, tenant)
    assert 0 <= bucket < 100
    assert bucket == tenant_bucket(task, tenant)
    if step_includes("percent", low, task, tenant, None):
        assert bucket < low
        assert step_includes("percent", high, task, tenant, None)
    assert step_includes("percent", 100, task, tenant, None)


@settings(max_examples=100, deadline=None)
@given(keys, st.sampled_from([*COHORTS, None]), st.integers(0, 3), st.integers(0, 3))
def test_cohort_membership_is_monotonic(tenant: str, cohort: str | None, i: int, j: int) -> None:
    early, late = COHORTS[min(i, j)], COHORTS[max(i, j)]
    if step_includes("cohort", early, "task", tenant, cohort):
        assert step_includes("cohort", late, "task", tenant, cohort)
    assert step_includes("cohort", "general", "task", tenant, cohort)
    assert step_includes("cohort", cohort or "general", "task", tenant, cohort)


step_lists = st.one_of(
    st.sets(st.integers(1, 99), max_size=6).map(lambda s: [*sorted(s), 100]),
    st.sets(st.sampled_from(COHORTS[:-1])).map(
        lambda s: [c for c in COHORTS if c in s] + ["general"]),
)


@settings(max_examples=60, deadline=None)
@given(step_lists, st.lists(st.tuples(keys, st.sampled_from([*COHORTS, None])), min_size=1,
                            max_size=20))
def test_a_tenant_on_the_candidate_stays_on_it_as_the_rollout_advances(
    steps: list[Any], tenants: list[tuple[str, str | None]],
) -> None:
    assert normalize_steps(steps)[1] == steps
    rollout = Rollout.plan("task", 1, 2, steps, None, False, ACTOR, REASON)
    rollout.start(ACTOR, REASON)
    admitted: set[tuple[str, str | None]] = set()
    for index in range(len(steps)):
        if index:
            rollout.advance(ACTOR, REASON)
        now_in = {t for t in tenants if rollout.includes(*t)}
        assert admitted <= now_in
        admitted = now_in
    assert admitted == set(tenants)  # the last step includes everyone
