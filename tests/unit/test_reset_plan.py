"""Reset to defaults, dry run: what it would clear and what the tenant resolves to, before
and after; the plan records nothing and agrees with what the real reset then does."""

from datetime import UTC, datetime

import pytest
from relctl.domain.errors import NotFoundError
from relctl.domain.resolution import resolve

from .support import (
    ACTOR,
    OTHER,
    REASON,
    TASK,
    fold,
    new_app,
    notification_count,
    released_task,
    stored_events,
)


def _tenant_with_divergence() -> object:
    app = new_app()
    released_task(app)
    released_task(app, "qa", count=2, default=2)
    app.register_tenant("acme", "Acme", "general", ACTOR, REASON)
    app.set_override("acme", TASK, "prompt", "our own wording", ACTOR, "legal asked for it")
    app.pin("acme", "qa", 1, OTHER, "keep v1 during audit", days=5)
    return app


def test_the_plan_lists_what_would_be_cleared_and_records_nothing() -> None:
    app = _tenant_with_divergence()
    app.set_default_release(TASK, 2, ACTOR, REASON)  # the override keeps acme on v1
    before = notification_count(app)
    plan = app.reset_plan("acme", None)
    assert notification_count(app) == before
    assert [t.task for t in plan.tasks] == [TASK, "qa"]
    csat, qa = plan.tasks
    assert qa.pin is not None and (qa.pin.release, qa.pin.active, qa.pin.by) == (1, True, OTHER)
    assert qa.overrides == []
    assert (qa.before.release, qa.before.source) == (1, "pin")  # type: ignore[union-attr]
    assert (qa.after.release, qa.after.source) == (2, "default")  # type: ignore[union-attr]
    assert [(o.kind, o.by, o.reason) for o in csat.overrides] == [
        ("prompt", ACTOR, "legal asked for it")]
    assert (csat.before.source, csat.after.source) == ("override", "default")  # type: ignore[union-attr]
    assert (csat.before.release, csat.after.release) == (1, 2)  # type: ignore[union-attr]
    assert csat.release_changes and qa.release_changes


def test_the_plan_agrees_with_the_real_reset() -> None:
    app = _tenant_with_divergence()
    now = datetime.now(UTC)
    plan = app.reset_plan("acme", "qa", at=now)
    assert [t.task for t in plan.tasks] == ["qa"]
    app.reset_tenant("acme", "qa", ACTOR, REASON)
    view = fold(stored_events(app))
    for entry in plan.tasks:
        after = resolve(view, "acme", entry.task, now)
        assert entry.after is not None
        assert (after.release, after.source, after.explanation) == (
            entry.after.release, entry.after.source, entry.after.explanation)
    # The override of the other task is untouched by a one-task reset.
    assert app.tenant("acme").overrides[TASK]["values"]["prompt"]["by"] == ACTOR


def test_nothing_to_reset_is_an_empty_plan_with_the_reason() -> None:
    app = _tenant_with_divergence()
    app.reset_tenant("acme", None, ACTOR, REASON)
    plan = app.reset_plan("acme", None)
    assert plan.tasks == [] and plan.note and "already follows the defaults" in plan.note


def test_an_unknown_tenant_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        new_app().reset_plan("nobody", None)
