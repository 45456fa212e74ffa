"""The audit trail: one hash-chained row per stored event; tampering is found and located."""

import csv
import io
import json
import random
from collections.abc import Iterator

import pytest
from relctl.domain.read_models import AuditFault, AuditFormat
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries
from relctl.projections.runner import ProjectorSet

from tests.integration.read_support import WHO, random_commands, seed_tasks, stored_events

pytestmark = pytest.mark.integration


@pytest.fixture
def trail(runtime: Runtime) -> Iterator[ProjectorSet]:
    settings = runtime.settings
    assert settings.database_url
    seed_tasks(runtime.app, ("csat",))
    runtime.app.register_tenant("acme", "Acme", "general", actor="alice", reason="onboarding")
    runtime.app.flip_flag("acme", "enable_blueprints", True, actor="bob", reason="beta access")
    random_commands(runtime.app, random.Random(3), 30, ("csat",))
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema) as instance:
        instance.catch_up()
        assert queries.verify_audit(runtime.db).ok
        yield instance


def position_of(runtime: Runtime, seq: int) -> int:
    return int(runtime.db.execute("SELECT position FROM relctl_rm_audit WHERE seq = %s",
                                  (seq,))[0]["position"])


def test_every_stored_event_has_one_row_with_who_why_before_and_after(
        runtime: Runtime, trail: ProjectorSet) -> None:
    verdict = queries.verify_audit(runtime.db)
    assert verdict.rows == len(stored_events(runtime.app))
    out = io.StringIO()
    assert queries.export_audit(runtime.db, out, AuditFormat.JSONL, actor="bob") == 1
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (row["event"], row["reason"], row["tenant"]) == (
        "Tenant.FlagFlipped", "beta access", "acme")
    assert row["before"]["flags"]["enable_blueprints"] is False
    assert row["after"]["flags"]["enable_blueprints"] is True


def test_export_filters_by_tenant_and_time_and_writes_csv(
        runtime: Runtime, trail: ProjectorSet) -> None:
    rows = runtime.db.execute("SELECT at FROM relctl_rm_audit ORDER BY seq")
    since, until = rows[3]["at"], rows[8]["at"]
    out = io.StringIO()
    count = queries.export_audit(runtime.db, out, AuditFormat.CSV, since=since, until=until)
    parsed = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(parsed) == 5
    assert [int(r["seq"]) for r in parsed] == [4, 5, 6, 7, 8]
    out = io.StringIO()
    queries.export_audit(runtime.db, out, AuditFormat.JSONL, tenant="acme")
    assert {json.loads(line)["tenant"] for line in out.getvalue().splitlines()} == {"acme"}


def test_an_edited_row_is_found_with_its_position(runtime: Runtime, trail: ProjectorSet) -> None:
    content = runtime.db.execute("SELECT content FROM relctl_rm_audit WHERE seq = 7")[0]
    edited = content["content"].replace('"reason":"', '"reason":"not ', 1)
    runtime.db.execute("UPDATE relctl_rm_audit SET content = %s WHERE seq = 7", (edited,))
    verdict = queries.verify_audit(runtime.db)
    assert not verdict.ok
    assert verdict.first_break is not None
    assert (verdict.first_break.seq, verdict.first_break.fault) == (
        7, AuditFault.CONTENT_CHANGED)
    assert verdict.first_break.position == position_of(runtime, 7)


def test_an_edited_filter_column_is_found(runtime: Runtime, trail: ProjectorSet) -> None:
    runtime.db.execute("UPDATE relctl_rm_audit SET actor = 'mallory' WHERE seq = 5")
    verdict = queries.verify_audit(runtime.db)
    assert verdict.first_break is not None
    assert (verdict.first_break.seq, verdict.first_break.fault) == (5, AuditFault.COLUMNS_DIFFER)


def test_a_deleted_row_is_found(runtime: Runtime, trail: ProjectorSet) -> None:
    runtime.db.execute("DELETE FROM relctl_rm_audit WHERE seq = 9")
    verdict = queries.verify_audit(runtime.db)
    assert verdict.first_break is not None
    assert (verdict.first_break.seq, verdict.first_break.fault) == (9, AuditFault.SEQUENCE_GAP)


def test_a_deleted_row_renumbered_to_hide_the_gap_is_found(
        runtime: Runtime, trail: ProjectorSet) -> None:
    position = position_of(runtime, 10)
    runtime.db.execute("DELETE FROM relctl_rm_audit WHERE seq = 9")
    runtime.db.execute("UPDATE relctl_rm_audit SET seq = -(seq - 1) WHERE seq > 9")
    runtime.db.execute("UPDATE relctl_rm_audit SET seq = -seq WHERE seq < 0")
    verdict = queries.verify_audit(runtime.db)
    assert verdict.first_break is not None
    assert (verdict.first_break.seq, verdict.first_break.fault) == (9, AuditFault.LINK_BROKEN)
    assert verdict.first_break.position == position


def test_two_swapped_rows_are_found(runtime: Runtime, trail: ProjectorSet) -> None:
    for old, new in ((4, -1), (6, 4), (-1, 6)):
        runtime.db.execute("UPDATE relctl_rm_audit SET seq = %s WHERE seq = %s", (new, old))
    verdict = queries.verify_audit(runtime.db)
    assert verdict.first_break is not None
    assert (verdict.first_break.seq, verdict.first_break.fault) == (4, AuditFault.LINK_BROKEN)


def test_a_deleted_last_row_is_found(runtime: Runtime, trail: ProjectorSet) -> None:
    runtime.db.execute("DELETE FROM relctl_rm_audit WHERE seq = "
                       "(SELECT max(seq) FROM relctl_rm_audit)")
    verdict = queries.verify_audit(runtime.db)
    assert verdict.first_break is not None
    assert verdict.first_break.fault is AuditFault.TAIL_MISSING


def test_the_chain_continues_across_runner_restarts(runtime: Runtime, trail: ProjectorSet) -> None:
    settings = runtime.settings
    assert settings.database_url
    runtime.app.register_tenant("newco", "Newco", "general", **WHO)
    with ProjectorSet(runtime.app, settings.database_url, settings.database_schema) as fresh:
        fresh.catch_up()
    verdict = queries.verify_audit(runtime.db)
    assert verdict.ok
    assert verdict.rows == len(stored_events(runtime.app))
