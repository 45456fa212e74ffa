"""Shared helpers for the read-side tests: a command history and the fold to compare with."""

import random
from datetime import datetime
from typing import Any

from relctl.application.service import ControlPlane
from relctl.domain.errors import NotFoundError, RelctlError
from relctl.domain.resolution import ControlView, resolve

from bench.builders import waive_gates

SPEC: dict[str, Any] = {
    "prompt_template": "Score the call.", "model_provider": "openai", "model_name": "gpt-4o",
    "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 7,
    "output_schema": {"type": "object", "properties": {"score": {"type": "number"}}},
    "output_schema_version": "1",
}
TENANTS = ("acme", "globex", "initech", "umbrella", "hooli")
WHO = {"actor": "ops@example.com", "reason": "test history"}


def seed_tasks(app: ControlPlane, tasks: tuple[str, ...] = ("csat", "qa")) -> None:
    for task in tasks:
        for n in (1, 2, 3):
            app.create_release(task, {**SPEC, "seed": n}, **WHO)
            if n == 1:
                waive_gates(app, task)  # read models, not gates, are what these exercise
            app.promote_release(task, n, "Stable", **WHO)
        app.set_default_release(task, 1, **WHO)


def random_commands(  # noqa: PLR0912 - one flat menu of commands to draw from
        app: ControlPlane, rng: random.Random, count: int,
        tasks: tuple[str, ...] = ("csat", "qa")) -> int:
    """Issue ``count`` random commands (refused ones included); return how many were stored."""
    stored = 0
    for key in TENANTS:
        try:
            app.register_tenant(key, key.title(), rng.choice(["internal", "general"]), **WHO)
            stored += 1
        except RelctlError:
            pass
    for _ in range(count):
        tenant, task = rng.choice(TENANTS), rng.choice(tasks)
        choice = rng.randrange(10)
        try:
            if choice == 0:
                app.flip_flag(tenant, "enable_blueprint_production_eval", rng.random() < 0.5,
                              **WHO)
            elif choice == 1:
                app.set_override(tenant, task, "prompt", f"text {rng.random()}", **WHO)
            elif choice == 2:
                app.clear_override(tenant, task, "prompt", **WHO)
            elif choice == 3:
                app.pin(tenant, task, rng.choice([1, 2, 3]), **WHO, days=rng.choice([1, 2]))
            elif choice == 4:
                app.unpin(tenant, task, **WHO)
            elif choice == 5:
                app.reset_tenant(tenant, rng.choice([task, None]), **WHO)
            elif choice == 6:
                app.move_tenant(tenant, rng.choice(["internal", "open_beta", "general"]), **WHO)
            elif choice == 7:
                index = app.task(task)
                if index.active_rollout is None:
                    app.plan_rollout(task, rng.choice([2, 3]), **WHO, baseline=1,
                                     steps=[10, 50, 100])
                else:
                    app.start_rollout(index.active_rollout, **WHO)
            elif choice == 8:
                index = app.task(task)
                if index.active_rollout is not None:
                    action = rng.choice(["advance_rollout", "pause_rollout", "resume_rollout",
                                         "roll_back", "complete_rollout"])
                    getattr(app, action)(index.active_rollout, **WHO)
            else:
                app.set_default_release(task, rng.choice([1, 2, 3]), **WHO)
            stored += 1
        except RelctlError:
            pass
    return stored


def stored_events(app: ControlPlane) -> list[Any]:
    notifications = app.recorder.select_notifications(start=1, limit=10**6)
    return [app.mapper.to_domain_event(n) for n in notifications]


def fold_answer(events: list[Any], tenant: str, task: str, at: datetime) -> dict[str, Any] | None:
    """The reference: replay the store cut at ``at`` with the pure fold, then resolve."""
    view = ControlView()
    for event in events:
        if event.timestamp <= at:
            view.apply(event)
    try:
        return resolve(view, tenant, task, at).as_dict()
    except NotFoundError:
        return None
