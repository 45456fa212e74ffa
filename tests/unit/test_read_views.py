"""Pure parts of the read models: the audit chain, field diffs, and interval rewriting."""

import hashlib
from datetime import datetime, timedelta

from relctl.domain.read_models import Cause, ChangeKind
from relctl.domain.release import Release, ReleaseSpec
from relctl.domain.resolution import resolve
from relctl.domain.task import Task
from relctl.domain.tenant import Tenant
from relctl.projections.views import (
    GENESIS,
    CachedView,
    Fold,
    ResolutionHistory,
    canonical,
    chain,
    changed_fields,
    fragments,
    snapshot,
)

WHO = {"actor": "ops", "reason": "unit test"}
CAUSE = Cause(ChangeKind.EVENT, 10, "Tenant.Pinned", "ops", "unit test")
SPEC = {
    "prompt_template": "Score.", "model_provider": "openai", "model_name": "gpt-4o",
    "model_version": "gpt-4o-2024-08-06", "temperature": 0.0, "seed": 1,
    "output_schema": {"type": "object"}, "output_schema_version": "1",
}


def test_the_chain_depends_on_content_and_on_the_previous_hash() -> None:
    first = chain(GENESIS, '{"a":1}')
    assert chain(GENESIS, '{"a":1}') == first
    assert chain(GENESIS, '{"a":2}') != first
    assert chain(first, '{"a":1}') != first


def test_canonical_json_ignores_key_order() -> None:
    assert canonical({"b": 1, "a": {"d": 2, "c": 3}}) == canonical({"a": {"c": 3, "d": 2}, "b": 1})


def test_changed_fields_name_only_what_changed() -> None:
    before = {"flags": {"x": False}, "cohort": "general", "aggregate_version": 1}
    after = {"flags": {"x": True}, "cohort": "general", "aggregate_version": 2}
    assert changed_fields(before, after) == ({"flags": {"x": False}}, {"flags": {"x": True}})
    assert changed_fields(None, {"key": "acme"}) == ({}, {"key": "acme"})


def _view() -> tuple[CachedView, Tenant, datetime]:
    view = CachedView()
    task = Task.open("csat", **WHO)
    for number in (1, 2):
        task.admit_release(number, **WHO)
        release = Release.draft("csat", number, ReleaseSpec.from_dict(SPEC), **WHO)
        release.promote("Stable", **WHO)
        for e in release.collect_events():
            view.apply(e)
    task.set_default(1, **WHO)
    tenant = Tenant.register("acme", "Acme", "general", **WHO)
    for e in [*task.collect_events(), *tenant.collect_events()]:
        view.apply(e)
    return view, tenant, view.last_timestamp or datetime.now()


def test_a_pin_opens_two_intervals_and_a_later_event_truncates_them() -> None:
    view, tenant, now = _view()
    tenant.pin("csat", 2, 1, now, **WHO)
    for e in tenant.collect_events():
        view.apply(e)
    history = ResolutionHistory()
    cause = Cause(ChangeKind.EVENT, 10, "Tenant.Pinned", "ops", "unit test")
    pinned_at = view.last_timestamp
    assert pinned_at is not None
    history._rewrite(view, "acme", "csat", pinned_at, cause)
    (_, intervals) = history.pending[("acme", "csat")]
    expiry = now + timedelta(days=1)
    assert [(i.valid_from, i.valid_to, i.cause.kind) for i in intervals] == [
        (pinned_at, expiry, ChangeKind.EVENT), (expiry, None, ChangeKind.PIN_EXPIRED)]
    later = pinned_at + timedelta(hours=1)
    tenant.unpin("csat", **WHO)
    for e in tenant.collect_events():
        view.apply(e)
    history._rewrite(view, "acme", "csat", later, cause)
    (earliest, intervals) = history.pending[("acme", "csat")]
    assert earliest == pinned_at
    assert [(i.valid_from, i.valid_to) for i in intervals] == [
        (pinned_at, later), (later, None)]


def _body(view: CachedView, tenant: str, task: str, at: datetime) -> bytes:
    return canonical(resolve(view, tenant, task, at).as_dict())


def test_a_pins_second_interval_is_resolved_in_the_state_before_a_later_event() -> None:
    view, tenant, now = _view()
    tenant.pin("csat", 2, 1, now, **WHO)
    for e in tenant.collect_events():
        view.apply(e)
    fold, history = Fold(view=view), ResolutionHistory()
    pinned_at = view.last_timestamp
    assert pinned_at is not None
    expiry = now + timedelta(days=1)
    history._rewrite(view, "acme", "csat", pinned_at, CAUSE)
    expected = _body(view, "acme", "csat", expiry)  # default release, every flag off
    # An event after the expiry: the runner lets the view prepare before folding it.
    later = expiry + timedelta(hours=1)
    history.prepare(later, fold)
    tenant.flip_flag("enable_blueprints", True, **WHO)
    for e in tenant.collect_events():
        view.apply(e)
    history._rewrite(view, "acme", "csat", later, CAUSE)
    _, intervals = history.pending[("acme", "csat")]
    assert [(i.valid_from, i.valid_to) for i in intervals] == [
        (pinned_at, expiry), (expiry, later), (later, None)]
    assert intervals[1].resolution == expected
    assert intervals[1].etag == hashlib.sha256(expected).hexdigest()[:20]
    assert intervals[2].resolution == _body(view, "acme", "csat", later) != expected
    assert b'"enable_blueprints":true' in intervals[2].resolution


def test_a_pins_second_interval_left_at_the_batch_end_is_resolved_when_written() -> None:
    view, tenant, now = _view()
    tenant.pin("csat", 2, 1, now, **WHO)
    for e in tenant.collect_events():
        view.apply(e)
    history = ResolutionHistory()
    pinned_at = view.last_timestamp
    assert pinned_at is not None
    history._rewrite(view, "acme", "csat", pinned_at, CAUSE)
    history._resolve_all(view)
    expiry = now + timedelta(days=1)
    _, intervals = history.pending[("acme", "csat")]
    assert intervals[1].valid_from == expiry
    assert intervals[1].resolution == _body(view, "acme", "csat", expiry)
    assert b'"source":"default"' in intervals[1].resolution


def test_snapshot_fields_diff_like_their_plain_values() -> None:
    before = {"flags": {"x": False}, "cohort": "general", "n": 1, "limits": {"a": 1},
              "aggregate_version": 1}
    after = {"flags": {"x": True}, "cohort": "general", "n": 1.0, "limits": {"a": 1.0},
             "extra": None, "aggregate_version": 2}
    plain = changed_fields(before, after)
    was, now = changed_fields(snapshot(before), snapshot(after))
    assert plain == ({"flags": {"x": False}}, {"flags": {"x": True}})
    assert was == {"flags": b'{"x":false}'} and now == {"flags": b'{"x":true}'}
    assert canonical(fragments(now)) == canonical(plain[1])
    assert snapshot(before)["cohort"] == "general"  # scalars stay as they are
