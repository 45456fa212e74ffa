"""CLI commands of the read side: ``project`` (run the projectors), ``replay`` (rebuild aside
and compare with the live read models) and the auditor's and operator's reads (audit
verify/export, changes, overrides, pins, drift, rollout status).

Mounted by the main CLI (``app.add_typer(read_app)``, merging these commands at the top).
``project`` and ``replay`` talk to PostgreSQL directly; the reads go through the HTTP API like
every other command, so roles and tokens apply.
"""

import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer
from relctl.adapters.config import Settings
from relctl.domain.read_models import AuditFormat, ProjectionName
from relctl.entrypoints.cli_base import (
    EXIT,
    EXIT_UNAVAILABLE,
    Client,
    Output,
    OutputFormat,
    err_console,
    show,
)

read_app = typer.Typer(help="Read models: projections, history, inventory, audit.")
audit_app = typer.Typer(help="The tamper-evident audit trail.")
read_app.add_typer(audit_app, name="audit", no_args_is_help=True)

Since = Annotated[str | None, typer.Option(help="from this instant (ISO 8601, with zone)")]
Until = Annotated[str | None, typer.Option(help="until this instant (ISO 8601, with zone)")]
TenantFilter = Annotated[str | None, typer.Option(help="only this tenant")]
TaskFilter = Annotated[str | None, typer.Option(help="only this task")]


def _params(**values: object) -> dict[str, object]:
    return {k: v for k, v in values.items() if v is not None}


def _get_text(path: str, params: dict[str, object]) -> str:
    """A GET whose answer is a file (JSON Lines or CSV), not a JSON document."""
    client = Client()
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        response = httpx.get(client.url + path, params=params, headers=headers,  # type: ignore[arg-type]
                             timeout=300)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]cannot reach the relctl API at {client.url}: {exc}[/red]")
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    if response.status_code >= 400:
        try:
            error = response.json().get("error", {})
        except ValueError:
            error = {"message": response.text}
        err_console.print(f"[red]{error.get('code', 'error')}[/red]: {error.get('message')}")
        raise typer.Exit(EXIT.get(response.status_code, 1))
    return response.text


@read_app.command()
def project(
    rebuild: Annotated[list[ProjectionName] | None, typer.Option(
        help="drop and rebuild this read model first (repeatable)")] = None,
    rebuild_all: Annotated[bool, typer.Option(
        "--rebuild-all", help="rebuild every read model, the alerts history included")] = False,
    rebuild_alerts: Annotated[bool, typer.Option(
        "--rebuild-alerts", help="drop the alerts history and consume relctl.alerts again from "
        "its start (alerts past the topic's retention are not in the rebuilt history)")] = False,
    once: Annotated[bool, typer.Option(help="catch up, then exit")] = False,
) -> None:
    """Run the projectors on their own (needs RELCTL_DATABASE_URL)."""
    from relctl.infra.projector import run_projectors

    chosen = [] if rebuild_all else rebuild
    position = run_projectors(Settings.from_env(), rebuild=chosen, once=once,
                              rebuild_alerts=rebuild_alerts or rebuild_all)
    err_console.print(f"read models at position {position}")


@read_app.command()
def replay(
    projection: Annotated[ProjectionName | None, typer.Argument(
        help="the read model to replay (default: all)")] = None,
    keep: Annotated[bool, typer.Option(help="keep the scratch schema it rebuilt into")] = False,
) -> None:
    """Rebuild read models from the event store (aside, the live ones keep serving), report
    events per second, and check the rebuilt rows equal the live ones; exit 1 if not."""
    from relctl.infra.projector import replay_projections
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("replaying", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as bar:
        job = bar.add_task("events", total=None)
        report = replay_projections(
            Settings.from_env(), [projection] if projection else None,
            lambda done, total: bar.update(job, completed=done, total=total), keep)
    names = ", ".join(v.value for v in report.views)
    print(f"replayed {names}: {report.events} events in {report.seconds:.1f} s = "
          f"{report.events_per_second:,.0f} events/s (live position {report.position})")
    for name, live in report.live.items():
        same = report.rebuilt[name] == live
        print(f"{name}: {'identical to the live view' if same else 'DIFFERS from the live view'}"
              f" (content hash {report.rebuilt[name]})")
    if not report.identical:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(output: Output = OutputFormat.text) -> None:
    """Walk the hash chain; exit 1 and name the first broken link if any row was altered."""
    verdict = Client().call("GET", "/v1/audit/verify")
    if output is OutputFormat.json:
        show(verdict, output)
    elif verdict["ok"]:
        print(f"audit trail intact: {verdict['rows']} rows")
    else:
        broken = verdict["first_break"]
        err_console.print(f"[red]audit trail broken at row {broken['seq']} (position "
                          f"{broken['position']}): {broken['fault']}: {broken['detail']}[/red]")
    if not verdict["ok"]:
        raise typer.Exit(1)


@audit_app.command("export")
def audit_export(
    fmt: Annotated[AuditFormat, typer.Option("--format", help="jsonl or csv")] = AuditFormat.JSONL,
    since: Since = None, until: Until = None, tenant: TenantFilter = None, task: TaskFilter = None,
    actor: Annotated[str | None, typer.Option(help="only this actor")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="file (default stdout)")] = None,
) -> None:
    """Export audit rows (with their hashes) for a time range, tenant, task or actor."""
    text = _get_text("/v1/audit/export", _params(
        format=fmt.value, since=since, until=until, tenant=tenant, task=task, actor=actor))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@read_app.command()
def changes(since: Annotated[str, typer.Option(help="ISO 8601, with zone")],
            until: Annotated[str, typer.Option(help="ISO 8601, with zone")],
            tenant: TenantFilter = None, task: TaskFilter = None,
            output: Output = OutputFormat.text) -> None:
    """Every change of a tenant x task answer between two instants, with who and why."""
    show(Client().call("GET", "/v1/read/changes", params=_params(
        since=since, until=until, tenant=tenant, task=task)), output)


@read_app.command()
def overrides(tenant: TenantFilter = None, task: TaskFilter = None,
              output: Output = OutputFormat.text) -> None:
    """Who overrides what, and since when."""
    show(Client().call("GET", "/v1/read/overrides", params=_params(tenant=tenant, task=task)),
         output)


@read_app.command()
def pins(tenant: TenantFilter = None, task: TaskFilter = None,
         output: Output = OutputFormat.text) -> None:
    """Recorded pins, their expiry, and whether each still applies."""
    show(Client().call("GET", "/v1/read/pins", params=_params(tenant=tenant, task=task)),
         output)


@read_app.command()
def drift(task: Annotated[str, typer.Argument(help="the task a change is proposed for")],
          output: Output = OutputFormat.text) -> None:
    """For a new default or rollout of TASK: who it reaches, who an override or pin shields."""
    show(Client().call("GET", "/v1/read/drift", params={"task": task}), output)


@read_app.command("rollout-status")
def rollout_status(rollout_id: Annotated[str, typer.Argument(help="the rollout id")],
                   output: Output = OutputFormat.text) -> None:
    """A rollout's state, step, tenants per arm, rules, decisions and transitions."""
    show(Client().call("GET", f"/v1/read/rollouts/{rollout_id}"), output)
