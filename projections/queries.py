"""Reads over the read models, answering with the typed models of ``domain.read_models``.

Every function takes the ``Database`` of the schema the projector writes; none folds events.
"""

import csv
import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, TextIO

from relctl.adapters.postgres import Database
from relctl.application.service import ControlPlane
from relctl.domain.errors import NotFoundError, UnavailableError, ValidationError
from relctl.domain.ids import release_id, task_id
from relctl.domain.read_models import (
    AuditBreak,
    AuditFault,
    AuditFormat,
    AuditVerdict,
    Change,
    DriftReport,
    OverrideEntry,
    PinEntry,
    ProjectionName,
    Reach,
    ResolutionAnswer,
    RolloutStatus,
    TenantReach,
    Transition,
)
from relctl.domain.resolution import ControlView, resolve
from relctl.domain.rollout import GUARDED_STATES
from relctl.projections.runner import TRACKING
from relctl.projections.views import AUDIT_COLUMNS, GENESIS, canonical, chain


def _now(at: datetime | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    if at.tzinfo is None:
        raise ValidationError("instants need a timezone, e.g. 2026-11-21T10:00:00Z")
    return at


def projected_position(db: Database) -> int:
    """The position every read model has reached (the slowest one)."""
    rows = db.execute(f"SELECT min(position) AS p FROM {TRACKING}")  # noqa: S608
    return int(rows[0]["p"] or 0) if rows else 0


def wait_for_head(db: Database, app: ControlPlane, timeout: float = 5.0) -> int:
    """Read-your-writes: wait until the read models include every event committed before this
    call (so a caller sees the command it just issued); raise UnavailableError after
    ``timeout``. Returns the position waited for."""
    head = int(app.recorder.max_notification_id() or 0)
    deadline = time.monotonic() + timeout
    while (reached := projected_position(db)) < head:
        if time.monotonic() > deadline:
            raise UnavailableError(
                f"the read models are behind the event store (at {reached}, need {head}); "
                "is the projector running (relctl project)?")
        time.sleep(0.005)
    return head


def _task_fold(app: ControlPlane, db: Database, tenant: str, task: str, when: datetime
               ) -> ResolutionAnswer:
    """An unregistered tenant has no history rows (any key may be asked about): fold only the
    task's own aggregates (its index, releases and rollouts) up to ``when``."""
    view = ControlView()
    ids = [task_id(task)]
    index = [e for e in app.history(task_id(task)) if e.timestamp <= when]
    for event in index:
        view.apply(event)
    found = view.task(task)
    if found is not None:
        ids = [release_id(task, n) for n in found.releases] + list(found.rollouts)
        for aggregate_id in ids:
            for event in app.history(aggregate_id):
                if event.timestamp <= when:
                    view.apply(event)
    answer = resolve(view, tenant, task, when).as_dict()
    body = canonical(answer)
    return ResolutionAnswer(tenant=tenant, task=task, resolution=answer,
                            etag=hashlib.sha256(body).hexdigest()[:20], valid_from=when,
                            valid_to=None, cause={"kind": "unregistered-tenant"})


def resolve_at(db: Database, tenant: str, task: str, at: datetime | None = None,
               app: ControlPlane | None = None) -> ResolutionAnswer:
    """The answer for (tenant, task) at ``at`` (now by default), from the history table.

    Registered tenants are answered from their validity intervals. A tenant not registered at
    ``at`` is answered (when ``app`` is given) by folding only the task's aggregates."""
    when = _now(at)
    registered = db.execute("SELECT 1 FROM relctl_rm_tenants WHERE tenant = %s "
                            "AND registered_at <= %s", (tenant, when))
    if not registered and app is not None:
        return _task_fold(app, db, tenant, task, when)
    rows = db.execute(
        "SELECT resolution, etag, valid_from, valid_to, cause FROM relctl_rm_resolution "
        "WHERE tenant = %s AND task = %s AND valid_from <= %s "
        "AND (valid_to IS NULL OR valid_to > %s) ORDER BY valid_from LIMIT 2",
        (tenant, task, when, when))
    if len(rows) > 1:
        raise RuntimeError(f"overlapping history intervals for {tenant} x {task} at "
                           f"{when.isoformat()}: the resolution read model is corrupt; "
                           "rebuild it (relctl project --rebuild resolution)")
    if not rows:
        raise NotFoundError(f"no release in force for tenant {tenant!r} and task {task!r} at "
                            f"{when.isoformat()} (unknown tenant or task, or no default yet)")
    row = rows[0]
    return ResolutionAnswer(tenant=tenant, task=task, resolution=row["resolution"],
                            etag=row["etag"], valid_from=row["valid_from"],
                            valid_to=row["valid_to"], cause=row["cause"])


def changes(db: Database, since: datetime, until: datetime, tenant: str | None = None,
            task: str | None = None) -> list[Change]:
    """Every change of an answer in (since, until], with who and why, oldest first."""
    start, end = _now(since), _now(until)
    if end < start:
        raise ValidationError("'until' is before 'since'")
    rows = db.execute(
        "SELECT * FROM (SELECT tenant, task, valid_from, cause,"
        " (resolution->>'release')::int AS release, resolution->>'source' AS source,"
        " lag((resolution->>'release')::int) OVER w AS previous_release,"
        " lag(valid_to) OVER w AS previous_end"
        " FROM relctl_rm_resolution WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)"
        " AND (%(task)s::text IS NULL OR task = %(task)s)"
        " WINDOW w AS (PARTITION BY tenant, task ORDER BY valid_from)) h"
        " WHERE valid_from > %(since)s AND valid_from <= %(until)s"
        " ORDER BY valid_from, tenant, task",
        {"tenant": tenant, "task": task, "since": start, "until": end})
    return [Change(tenant=r["tenant"], task=r["task"], at=r["valid_from"], release=r["release"],
                   source=r["source"],
                   previous_release=(r["previous_release"]
                                     if r["previous_end"] == r["valid_from"] else None),
                   cause=r["cause"]) for r in rows]


def overrides(db: Database, tenant: str | None = None, task: str | None = None
              ) -> list[OverrideEntry]:
    rows = db.execute(
        "SELECT * FROM relctl_rm_overrides WHERE (%(tenant)s::text IS NULL OR tenant = "
        "%(tenant)s) AND (%(task)s::text IS NULL OR task = %(task)s) "
        "ORDER BY tenant, task, kind", {"tenant": tenant, "task": task})
    return [OverrideEntry(tenant=r["tenant"], task=r["task"], kind=r["kind"], value=r["value"],
                          base_release=r["base_release"], by=r["by_actor"], reason=r["reason"],
                          since=r["since"]) for r in rows]


def pins(db: Database, at: datetime | None = None, tenant: str | None = None,
         task: str | None = None) -> list[PinEntry]:
    """Recorded pins; ``active`` says whether each still applies at ``at`` (now)."""
    when = _now(at)
    rows = db.execute(
        "SELECT * FROM relctl_rm_pins WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s) "
        "AND (%(task)s::text IS NULL OR task = %(task)s) ORDER BY expires_at, tenant, task",
        {"tenant": tenant, "task": task})
    return [PinEntry(tenant=r["tenant"], task=r["task"], release=r["release"],
                     expires_at=r["expires_at"], by=r["by_actor"], reason=r["reason"],
                     since=r["since"], active=r["expires_at"] > when) for r in rows]


def drift(db: Database, task: str, at: datetime | None = None) -> DriftReport:
    """For a proposed global change of ``task`` (a new default or a rollout): the registered
    tenants it reaches directly, and those an active pin or an override shields."""
    when = _now(at)
    tenants = [r["tenant"] for r in db.execute(
        "SELECT tenant FROM relctl_rm_tenants ORDER BY tenant")]
    pinned = {p.tenant: p for p in pins(db, when, task=task) if p.active}
    overridden: dict[str, list[OverrideEntry]] = {}
    for entry in overrides(db, task=task):
        overridden.setdefault(entry.tenant, []).append(entry)
    report = DriftReport(task=task, at=when)
    for tenant in tenants:
        if tenant in pinned:
            pin = pinned[tenant]
            report.shielded.append(TenantReach(
                tenant, Reach.SHIELDED_BY_PIN,
                f"pinned to v{pin.release} by {pin.by} until {pin.expires_at.isoformat()}"))
        elif tenant in overridden:
            kinds = ", ".join(e.kind for e in overridden[tenant])
            report.shielded.append(TenantReach(
                tenant, Reach.SHIELDED_BY_OVERRIDE,
                f"overrides {kinds} since {overridden[tenant][0].since.isoformat()}"))
        else:
            report.reached.append(TenantReach(tenant, Reach.DIRECT, "follows the task"))
    return report


def any_guarded_rollout(db: Database) -> bool:
    """Whether some rollout is running, paused or frozen (its guard could decide)."""
    rows = db.execute("SELECT EXISTS (SELECT 1 FROM relctl_rm_rollouts "
                      "WHERE summary->>'state' = ANY(%s)) AS guarded", (list(GUARDED_STATES),))
    return bool(rows and rows[0]["guarded"])


def rollout_status(db: Database, rollout_id: str, at: datetime | None = None) -> RolloutStatus:
    """A rollout's status, its tenants per arm (as resolved at ``at``) and its transitions."""
    rows = db.execute("SELECT summary FROM relctl_rm_rollouts WHERE rollout_id = %s",
                      (rollout_id,))
    if not rows:
        raise NotFoundError(f"no rollout {rollout_id} in the read model")
    summary = rows[0]["summary"]
    when = _now(at)
    arms: dict[str, list[str]] = {}
    for row in db.execute(
            "SELECT tenant, resolution->>'source' AS source, resolution->'rollout'->>'id' AS r "
            "FROM relctl_rm_resolution WHERE task = %s AND valid_from <= %s "
            "AND (valid_to IS NULL OR valid_to > %s) ORDER BY tenant",
            (summary["task"], when, when)):
        arm = row["source"] if row["r"] == rollout_id else f"outside ({row['source']})"
        arms.setdefault(arm, []).append(row["tenant"])
    transitions = [Transition(
        rollout_id=r["rollout_id"], position=r["position"], at=r["at"], event=r["event"],
        from_state=r["from_state"], to_state=r["to_state"], step=r["step"], actor=r["actor"],
        reason=r["reason"], evidence=r["evidence"]) for r in db.execute(
            "SELECT * FROM relctl_rm_rollout_transitions WHERE rollout_id = %s "
            "ORDER BY position", (rollout_id,))]
    return RolloutStatus(
        rollout_id=rollout_id, task=summary["task"], state=summary["state"],
        current_step=summary["current_step"], step_index=summary["step_index"],
        baseline=summary["baseline"], candidate=summary["candidate"], shadow=summary["shadow"],
        guard_rules=summary["guard_rules"], decisions=summary["decisions"], arms=arms,
        transitions=transitions)


# ---- audit --------------------------------------------------------------------------------

PAGE = 10_000


def _audit_rows(db: Database, where: str = "TRUE", params: dict[str, Any] | None = None
                ) -> Iterator[dict[str, Any]]:
    last = 0
    while True:
        page = db.execute(
            f"SELECT * FROM relctl_rm_audit WHERE seq > %(after)s AND {where} "  # noqa: S608
            "ORDER BY seq LIMIT %(limit)s", {**(params or {}), "after": last, "limit": PAGE})
        yield from page
        if len(page) < PAGE:
            return
        last = page[-1]["seq"]


def _columns_match(row: dict[str, Any], content: dict[str, Any]) -> bool:
    for column in AUDIT_COLUMNS:
        value = row[column]
        if column == "at":
            if datetime.fromisoformat(content["at"]) != value:
                return False
        elif content.get(column) != value:
            return False
    return True


def verify_audit(db: Database) -> AuditVerdict:
    """Walk the chain from the first row; report the first row whose link does not hold."""
    previous, expected, count, last_position = GENESIS, 1, 0, 0
    for row in _audit_rows(db):
        count += 1
        seq, position = row["seq"], row["position"]
        fault: tuple[AuditFault, str] | None = None
        try:
            content = json.loads(row["content"])
        except ValueError:
            content = None
        if seq != expected:
            fault = (AuditFault.SEQUENCE_GAP, f"expected row {expected}, found row {seq}: "
                                              "rows are missing")
        elif row["prev_hash"] != previous:
            fault = (AuditFault.LINK_BROKEN, "its previous-hash does not match the row before it "
                                             "(a row was deleted, inserted or reordered)")
        elif content is None or chain(previous, row["content"]) != row["hash"]:
            fault = (AuditFault.CONTENT_CHANGED, "its content does not match its hash")
        elif not _columns_match(row, content) or content.get("seq") != seq:
            fault = (AuditFault.COLUMNS_DIFFER, "its columns differ from its hashed content")
        if fault is not None:
            return AuditVerdict(rows=count, ok=False, first_break=AuditBreak(
                seq=expected if fault[0] is AuditFault.SEQUENCE_GAP else seq,
                position=position, fault=fault[0], detail=fault[1]))
        previous, expected, last_position = row["hash"], expected + 1, position
    tracked = db.execute(f"SELECT position FROM {TRACKING} WHERE name = %s",  # noqa: S608
                         (ProjectionName.AUDIT.value,))
    projected = int(tracked[0]["position"]) if tracked else 0
    if last_position < projected:
        return AuditVerdict(rows=count, ok=False, first_break=AuditBreak(
            seq=expected, position=None, fault=AuditFault.TAIL_MISSING,
            detail=f"the trail ends at position {last_position} but was projected up to "
                   f"{projected}: its last rows were deleted"))
    return AuditVerdict(rows=count, ok=True)


EXPORT_FIELDS = ("seq", "position", "at", "event", "actor", "role", "reason", "tenant", "task",
                 "aggregate_kind", "aggregate_id", "before", "after", "evidence", "prev_hash",
                 "hash")


def export_audit(db: Database, out: TextIO, fmt: AuditFormat, since: datetime | None = None,
                 until: datetime | None = None, tenant: str | None = None,
                 task: str | None = None, actor: str | None = None) -> int:
    """Write the matching audit rows (with their hashes) as JSON Lines or CSV; return count."""
    where = ("(%(since)s::timestamptz IS NULL OR at >= %(since)s) AND "
             "(%(until)s::timestamptz IS NULL OR at < %(until)s) AND "
             "(%(tenant)s::text IS NULL OR tenant = %(tenant)s) AND "
             "(%(task)s::text IS NULL OR task = %(task)s) AND "
             "(%(actor)s::text IS NULL OR actor = %(actor)s)")
    params = {"since": since, "until": until, "tenant": tenant, "task": task, "actor": actor}
    writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS) if fmt is AuditFormat.CSV else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for row in _audit_rows(db, where, params):
        record = {**json.loads(row["content"]), "prev_hash": row["prev_hash"],
                  "hash": row["hash"]}
        record = {name: record.get(name) for name in EXPORT_FIELDS}
        if writer is not None:
            writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list)
                             else v for k, v in record.items()})
        else:
            out.write(json.dumps(record, sort_keys=True) + "\n")
        count += 1
    return count
