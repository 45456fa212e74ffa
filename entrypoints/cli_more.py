"""CLI pieces of the read-side features: the reset plan's text, ``alerts`` and
``release notes``. Everything goes through the HTTP API, so roles and tokens apply."""

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer
from relctl.domain.alerts import AlertKind
from relctl.entrypoints.cli_base import (
    Client,
    NumberArg,
    Output,
    OutputFormat,
    TaskArg,
    console,
    show,
)
from relctl.entrypoints.cli_read import Since, TaskFilter, TenantFilter, Until
from relctl.entrypoints.cli_read import _get_text as get_text
from rich import box
from rich.table import Table

more_app = typer.Typer(help="Alerts history and release notes.")


def _answer(answer: dict[str, Any] | None) -> str:
    if answer is None:
        return "no release in force"
    return f"v{answer['release']} ({answer['source']})"


def reset_plan_text(plan: dict[str, Any]) -> str:
    """A reset plan (``GET /v1/tenants/{key}/reset-plan``) for people."""
    scope = f" for {plan['task']}" if plan.get("task") else ""
    lines = [f"dry run: reset {plan['tenant']} to defaults{scope}; nothing was recorded"]
    if not plan["tasks"]:
        lines.append(f"  nothing to change: {plan.get('note') or 'it follows the defaults'}")
    for entry in plan["tasks"]:
        cleared = [f"{o['kind']} override (by {o['by']}: {o['reason']})"
                   for o in entry["overrides"]]
        pin = entry.get("pin")
        if pin:
            state = "active" if pin["active"] else "expired"
            cleared.append(f"pin to v{pin['release']} until {pin['expires_at']}, {state} "
                           f"(by {pin['by']}: {pin['reason']})")
        lines.append(f"  {entry['task']}: clears {'; '.join(cleared)}")
        change = "changes" if entry["release_changes"] else "stays"
        lines.append(f"    resolves {_answer(entry['before'])} -> {_answer(entry['after'])} "
                     f"({change})")
    return "\n".join(lines)


def _decision_text(decision: dict[str, Any] | None) -> str:
    if not decision:
        return "-"
    return (f"{decision['event'].removeprefix('Rollout.')} -> {decision['to_state']} at "
            f"{decision['at']} by {decision['actor']} (position {decision['position']})")


def alerts_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(entries)} alerts", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False)
    for column in ("at", "kind", "rule", "about", "decision"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        about = entry.get("task") or "-"
        if entry.get("release") is not None:
            about += f" v{entry['release']}"
        if entry.get("rollout_id"):
            about += f" rollout {entry['rollout_id']}"
        kind = entry["kind"] + (f" ({entry['action']})" if entry.get("action") else "")
        table.add_row(str(entry["at"]), kind, entry.get("rule") or "-", about,
                      _decision_text(entry.get("decision")))
    return table


@more_app.command("alerts")
def alerts(task: TaskFilter = None, tenant: TenantFilter = None,
           rollout: Annotated[str | None, typer.Option(help="only this rollout")] = None,
           kind: Annotated[AlertKind | None, typer.Option(help="fired, resolved or decision")
                           ] = None,
           since: Since = None, until: Until = None,
           limit: Annotated[int, typer.Option(help="at most this many")] = 1000,
           output: Output = OutputFormat.text) -> None:
    """The alert history from relctl.alerts, each with the decision it caused."""
    params = {k: v for k, v in {
        "task": task, "tenant": tenant, "rollout": rollout, "since": since, "until": until,
        "kind": kind.value if kind else None, "limit": limit}.items() if v is not None}
    entries = Client().call("GET", "/v1/read/alerts", params=params)
    if output is OutputFormat.json:
        show(entries, output)
    else:
        console.print(alerts_table(entries))


class NotesOutput(StrEnum):
    markdown = "markdown"
    json = "json"


def release_notes(
        task: TaskArg, number: NumberArg,
        tenant: Annotated[str | None, typer.Option(
            help="notes for this tenant (says whether the release reaches it)")] = None,
        output: Annotated[NotesOutput, typer.Option(
            "--output", "-o", help="markdown for people, json for machines")
                          ] = NotesOutput.markdown) -> None:
    """Release notes for tenant admins: what changed, why, expected effect, what to do."""
    params: dict[str, Any] = {"task": task, "release": number, "format": output.value}
    if tenant:
        params["tenant"] = tenant
    if output is NotesOutput.json:
        show(Client().call("GET", "/v1/read/release-notes", params=params), OutputFormat.json)
    else:
        sys.stdout.write(get_text("/v1/read/release-notes", params))
