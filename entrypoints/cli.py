"""The ``relctl`` CLI: every command and read over the HTTP API, plus ``up``.

Text output is for people (tables and short summaries); ``-o json`` is for machines, errors
included (a JSON object on stderr). The exit code says what went wrong, see ``ExitCode``.
"""

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from relctl.entrypoints.cli_base import (
    ActorArg,
    BlueprintArg,
    Client,
    ExitCode,
    Expected,
    NumberArg,
    Output,
    OutputFormat,
    Quiet,
    Reason,
    RolloutArg,
    SpecFile,
    StagesFile,
    TaskArg,
    TenantArg,
    chosen_output,
    console,
    fail,
    load_json,
    show,
)
from relctl.entrypoints.cli_gate import AckOption, BreakGlassOption, gate_app, gate_fields
from relctl.entrypoints.cli_more import more_app, release_notes, reset_plan_text
from relctl.entrypoints.cli_read import read_app

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

app.add_typer(gate_app, name="gate", no_args_is_help=True)
# The read side's commands (project, audit, changes, ...) join the top level.
app.add_typer(read_app)
app.add_typer(more_app)
release_app.command("notes")(release_notes)


@app.command()
def up(
    data_dir: Annotated[Path | None, typer.Option(
        help="where data and the admin token live (default ./.relctl, or RELCTL_DATA_DIR)")
    ] = None,
    api_port: Annotated[int | None, typer.Option(help="API port (default 8750)")] = None,
    api_host: Annotated[str | None, typer.Option(
        help="API bind address (default 127.0.0.1)")] = None,
    workers: Annotated[int, typer.Option(help="guard workers to run (0: none)")] = 1,
    relay: Annotated[bool, typer.Option(
        help="run the store -> Kafka relay here (--no-relay when `relctl relay` runs it)")] = True,
) -> None:
    """Run the whole control plane in the foreground (embedded services when unconfigured)."""
    from relctl.adapters.config import Settings
    from relctl.entrypoints.api.app import create_api
    from relctl.infra.stack import run_up

    _logging()
    run_up(Settings.from_env(data_dir=data_dir, api_port=api_port, api_host=api_host),
           lambda runtime, wake: create_api(runtime, on_change=wake), workers, relay)


def _logging() -> None:
    from relctl.infra.stack import configure_logging

    configure_logging()


@app.command()
def worker() -> None:
    """Run one guard worker (Faust): attribute, window, guard, alert. Scale out by running more."""
    from relctl.adapters.config import Settings
    from relctl.infra.stack import run_worker

    _logging()
    run_worker(Settings.from_env())


@app.command()
def relay() -> None:
    """Run only the store -> Kafka relay (needs RELCTL_DATABASE_URL and RELCTL_KAFKA_BOOTSTRAP)."""
    from relctl.adapters.config import Settings
    from relctl.infra.stack import run_relay

    _logging()
    run_relay(Settings.from_env())


@app.command()
def resolve(tenant: TenantArg, task: TaskArg,
            at: Annotated[str | None, typer.Option(
                help="conversation start, ISO 8601 (default: now)")] = None,
            output: Output = OutputFormat.text) -> None:
    """Which release does TENANT run for TASK (now, or for a conversation started AT), and why."""
    params = {"tenant": tenant, "task": task, **({"at": at} if at else {})}
    show(Client().call("GET", "/v1/resolve", params=params), output)


@app.command()
def whoami(output: Output = OutputFormat.text) -> None:
    """Show the actor and role of the current token."""
    show(Client().call("GET", "/v1/whoami"), output)


# ---- tokens ----------------------------------------------------------------------------

@token_app.command("revoke")
def token_revoke(actor: ActorArg, output: Output = OutputFormat.text) -> None:
    """Revoke every token of ACTOR."""
    show(Client().call("POST", f"/v1/tokens/{actor}/revoke"), output)


@token_app.command("create")
def token_create(
    actor: ActorArg,
    role: Annotated[str, typer.Option(help="admin, operator, producer or auditor")],
    tenant: Annotated[list[str] | None, typer.Option(
        help="a tenant a producer may report for (repeat it; '*' for all)")] = None,
    quiet: Quiet = False, output: Output = OutputFormat.text,
) -> None:
    """Create a token for ACTOR; it is shown once."""
    result = Client().call("POST", "/v1/tokens",
                           {"actor": actor, "role": role, "tenants": tenant or []})
    if quiet:
        sys.stdout.write(f"{result['token']}\n")
        return
    show(result, output)


# ---- releases --------------------------------------------------------------------------

@release_app.command("create")
def release_create(task: TaskArg, file: SpecFile, reason: Reason, quiet: Quiet = False,
                   output: Output = OutputFormat.text) -> None:
    """Create the next version of TASK from a JSON spec file."""
    result = Client().call("POST", "/v1/releases",
                           {"task": task, "spec": load_json(file), "reason": reason})
    if quiet:
        sys.stdout.write(f"{result['aggregate']['number']}\n")
        return
    show(result, output)


@release_app.command("revise")
def release_revise(task: TaskArg, number: NumberArg, file: SpecFile, reason: Reason,
                   expected_version: Expected = None,
                   output: Output = OutputFormat.text) -> None:
    """Replace the content of a Draft release."""
    show(Client().call("POST", f"/v1/releases/{task}/{number}/revise",
                       {"spec": load_json(file), "reason": reason,
                        "expected_version": expected_version}), output)


@release_app.command("promote")
def release_promote(task: TaskArg, number: NumberArg,
                    stage: Annotated[str, typer.Argument(
                        help="InternalTest, Beta, Stable or Deprecated")],
                    reason: Reason, expected_version: Expected = None,
                    ack: AckOption = None, break_glass: BreakGlassOption = None,
                    output: Output = OutputFormat.text) -> None:
    """Move a release forward: InternalTest, Beta, Stable, or Deprecated.

    Passing InternalTest of a gated task (one with a golden set) needs its gates."""
    show(Client().call("POST", f"/v1/releases/{task}/{number}/promote",
                       {"stage": stage, "reason": reason, "expected_version": expected_version,
                        **gate_fields(ack, break_glass)}), output)


@release_app.command("set-default")
def release_set_default(task: TaskArg, number: NumberArg, reason: Reason,
                        output: Output = OutputFormat.text) -> None:
    """Make NUMBER the default release of TASK (no rollout)."""
    show(Client().call("POST", f"/v1/tasks/{task}/default",
                       {"release": number, "reason": reason}), output)


@release_app.command("show")
def release_show(task: TaskArg, number: NumberArg, output: Output = OutputFormat.text) -> None:
    """Show one release: stage, spec, prompt hash."""
    show(Client().call("GET", f"/v1/releases/{task}/{number}"), output)


@release_app.command("history")
def release_history(task: TaskArg, number: NumberArg,
                    output: Output = OutputFormat.text) -> None:
    """Every event of one release: when, what, who and why."""
    show(Client().call("GET", f"/v1/releases/{task}/{number}/history"), output)


@task_app.command("show")
def task_show(task: TaskArg, output: Output = OutputFormat.text) -> None:
    """Show a task: its releases, default release and rollouts."""
    show(Client().call("GET", f"/v1/tasks/{task}"), output)


@task_app.command("history")
def task_history(task: TaskArg, output: Output = OutputFormat.text) -> None:
    """Every event of a task's index: releases added, defaults set, rollouts opened."""
    show(Client().call("GET", f"/v1/tasks/{task}/history"), output)


# ---- blueprints ------------------------------------------------------------------------

@blueprint_app.command("create")
def blueprint_create(name: BlueprintArg, file: StagesFile, reason: Reason,
                     output: Output = OutputFormat.text) -> None:
    """Create a blueprint draft from a JSON file holding its list of stages."""
    show(Client().call("POST", "/v1/blueprints",
                       {"name": name, "stages": load_json(file), "reason": reason}), output)


@blueprint_app.command("update")
def blueprint_update(name: BlueprintArg, file: StagesFile, reason: Reason,
                     expected_version: Expected = None,
                     output: Output = OutputFormat.text) -> None:
    """Replace the stages of the blueprint's draft."""
    show(Client().call("POST", f"/v1/blueprints/{name}/draft",
                       {"stages": load_json(file), "reason": reason,
                        "expected_version": expected_version}), output)


@blueprint_app.command("confirm")
def blueprint_confirm(name: BlueprintArg,
                      stage: Annotated[str, typer.Argument(help="stage of the rule")],
                      behaviour: Annotated[str, typer.Argument(help="behaviour of the rule")],
                      reason: Reason, output: Output = OutputFormat.text) -> None:
    """Confirm a critical rule (two distinct people must confirm before publish)."""
    show(Client().call("POST", f"/v1/blueprints/{name}/confirm",
                       {"stage": stage, "behaviour": behaviour, "reason": reason}), output)


@blueprint_app.command("publish")
def blueprint_publish(name: BlueprintArg, reason: Reason, expected_version: Expected = None,
                      output: Output = OutputFormat.text) -> None:
    """Compile the draft into the next immutable version (NAME@vN)."""
    show(Client().call("POST", f"/v1/blueprints/{name}/publish",
                       {"reason": reason, "expected_version": expected_version}), output)


@blueprint_app.command("show")
def blueprint_show(name: BlueprintArg, output: Output = OutputFormat.text) -> None:
    """Show a blueprint: its draft and published versions."""
    show(Client().call("GET", f"/v1/blueprints/{name}"), output)


@blueprint_app.command("history")
def blueprint_history(name: BlueprintArg, output: Output = OutputFormat.text) -> None:
    """Every event of a blueprint: edits, confirmations, publications."""
    show(Client().call("GET", f"/v1/blueprints/{name}/history"), output)


# ---- tenants ---------------------------------------------------------------------------

CohortOption = Annotated[str, typer.Option(help="internal, closed_beta, open_beta or general")]
KindArg = Annotated[str, typer.Argument(help="what is overridden: prompt or filter")]


@tenant_app.command("create")
def tenant_create(key: TenantArg, reason: Reason,
                  name: Annotated[str, typer.Option(help="display name")] = "",
                  cohort: CohortOption = "general",
                  output: Output = OutputFormat.text) -> None:
    """Register a tenant in a cohort (rollouts by cohort follow it)."""
    show(Client().call("POST", "/v1/tenants",
                       {"key": key, "name": name, "cohort": cohort, "reason": reason}), output)


@tenant_app.command("show")
def tenant_show(key: TenantArg, output: Output = OutputFormat.text) -> None:
    """Show a tenant: cohort, flags, overrides and pins."""
    show(Client().call("GET", f"/v1/tenants/{key}"), output)


@tenant_app.command("history")
def tenant_history(key: TenantArg, output: Output = OutputFormat.text) -> None:
    """Every event of a tenant: flags, cohorts, overrides, pins."""
    show(Client().call("GET", f"/v1/tenants/{key}/history"), output)


@tenant_app.command("cohort")
def tenant_cohort(key: TenantArg,
                  cohort: Annotated[str, typer.Argument(
                      help="internal, closed_beta, open_beta or general")],
                  reason: Reason, output: Output = OutputFormat.text) -> None:
    """Move a tenant to another cohort."""
    show(Client().call("POST", f"/v1/tenants/{key}/cohort",
                       {"cohort": cohort, "reason": reason}), output)


@tenant_app.command("flag")
def tenant_flag(key: TenantArg, flag: Annotated[str, typer.Argument(help="flag name")],
                state: Annotated[str, typer.Argument(help="on or off")],
                reason: Reason, output: Output = OutputFormat.text) -> None:
    """Switch one of the five per-tenant flags on or off."""
    if state not in ("on", "off"):
        fail(ExitCode.INVALID, "invalid_state", "state must be 'on' or 'off'")
    show(Client().call("POST", f"/v1/tenants/{key}/flags/{flag}",
                       {"enabled": state == "on", "reason": reason}), output)


@tenant_app.command("override")
def tenant_override(key: TenantArg, task: TaskArg, kind: KindArg,
                    value: Annotated[str, typer.Argument(help="the tenant's prompt or filter")],
                    reason: Reason,
                    base_release: Annotated[int | None, typer.Option(
                        help="release the override was written against")] = None,
                    output: Output = OutputFormat.text) -> None:
    """Override the prompt or filter of TASK for this tenant (recorded with who and why)."""
    show(Client().call("POST", f"/v1/tenants/{key}/overrides",
                       {"task": task, "kind": kind, "value": value, "reason": reason,
                        "base_release": base_release}), output)


@tenant_app.command("clear-override")
def tenant_clear_override(key: TenantArg, task: TaskArg, kind: KindArg, reason: Reason,
                          output: Output = OutputFormat.text) -> None:
    """Remove one override of TASK for this tenant."""
    show(Client().call("POST", f"/v1/tenants/{key}/overrides/clear",
                       {"task": task, "kind": kind, "reason": reason}), output)


@tenant_app.command("pin")
def tenant_pin(key: TenantArg, task: TaskArg,
               release: Annotated[int, typer.Argument(help="release number to stay on")],
               reason: Reason,
               days: Annotated[int, typer.Option(help="how long the pin holds: 1-60 days")] = 30,
               output: Output = OutputFormat.text) -> None:
    """Keep this tenant on RELEASE of TASK for some days, whatever rollouts do."""
    show(Client().call("POST", f"/v1/tenants/{key}/pins",
                       {"task": task, "release": release, "days": days, "reason": reason}),
         output)


@tenant_app.command("unpin")
def tenant_unpin(key: TenantArg, task: TaskArg, reason: Reason,
                 output: Output = OutputFormat.text) -> None:
    """Remove the pin of TASK for this tenant."""
    show(Client().call("POST", f"/v1/tenants/{key}/unpin", {"task": task, "reason": reason}),
         output)


@tenant_app.command("reset")
def tenant_reset(key: TenantArg,
                 reason: Annotated[str | None, typer.Option(
                     "--reason", "-r", help="why; recorded in the event (not needed with "
                                            "--dry-run)")] = None,
                 task: Annotated[str | None, typer.Option(
                     help="only this task (default: every task)")] = None,
                 dry_run: Annotated[bool, typer.Option(
                     "--dry-run", help="show what would be cleared and what the tenant "
                                       "resolves to before and after; change nothing")] = False,
                 output: Output = OutputFormat.text) -> None:
    """Drop overrides and pins so the tenant follows global releases again."""
    if dry_run:
        plan = Client().call("GET", f"/v1/tenants/{key}/reset-plan",
                             params={"task": task} if task else None)
        if output is OutputFormat.json:
            show(plan, output)
        else:
            print(reset_plan_text(plan))
        return
    if reason is None:
        fail(ExitCode.USAGE, "missing_reason", "a reset needs --reason (or use --dry-run)")
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
    task: TaskArg,
    candidate: Annotated[int, typer.Argument(help="release number to roll out")],
    reason: Reason,
    baseline: Annotated[int | None, typer.Option(
        help="release to compare with and return to (default: the task's default)")] = None,
    steps: Annotated[str | None, typer.Option(
        help="percentages, e.g. 10,25,50,100, or cohorts internal,closed_beta,open_beta,general"
    )] = None,
    guards: Annotated[Path | None, typer.Option(help="JSON file with guard rules")] = None,
    shadow: Annotated[bool, typer.Option(
        help="run the candidate in shadow mode (scored, never shown)")] = False,
    quiet: Quiet = False,
    output: Output = OutputFormat.text,
) -> None:
    """Plan a rollout of CANDIDATE for TASK; -q prints only its id."""
    result = Client().call("POST", "/v1/rollouts", {
        "task": task, "candidate": candidate, "baseline": baseline, "steps": _steps(steps),
        "guard_rules": load_json(guards) if guards else None, "shadow": shadow,
        "reason": reason})
    if quiet:
        sys.stdout.write(f"{result['aggregate']['id']}\n")
        return
    show(result, output)


@rollout_app.command("show")
def rollout_show(rollout_id: RolloutArg, output: Output = OutputFormat.text) -> None:
    """Show a rollout: state, steps, guard rules and decisions."""
    show(Client().call("GET", f"/v1/rollouts/{rollout_id}"), output)


@rollout_app.command("history")
def rollout_history(rollout_id: RolloutArg, output: Output = OutputFormat.text) -> None:
    """Every event of a rollout: when (with time zone), what, who and why."""
    show(Client().call("GET", f"/v1/rollouts/{rollout_id}/history"), output)


Evidence = Annotated[Path | None, typer.Option(
    help="JSON file with the evidence (an object), recorded with the decision")]


def rollout_start(
    rollout_id: RolloutArg, reason: Reason, expected_version: Expected = None,
    ack: AckOption = None, break_glass: BreakGlassOption = None, output: Output = OutputFormat.text,
) -> None:
    """Start a planned rollout at its first step (a gated task's candidate needs its gates)."""
    body = {"reason": reason, "expected_version": expected_version,
            **gate_fields(ack, break_glass)}
    show(Client().call("POST", f"/v1/rollouts/{rollout_id}/start", body), output)


rollout_app.command("start")(rollout_start)


def _rollout_action(action: str, doc: str, takes_evidence: bool) -> None:
    def command(
        rollout_id: RolloutArg, reason: Reason, expected_version: Expected = None,
        output: Output = OutputFormat.text,
    ) -> None:
        body = {"reason": reason, "expected_version": expected_version}
        show(Client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", body), output)

    def with_evidence(
        rollout_id: RolloutArg, reason: Reason, expected_version: Expected = None,
        evidence: Evidence = None, output: Output = OutputFormat.text,
    ) -> None:
        body = {"reason": reason, "expected_version": expected_version,
                "evidence": load_json(evidence) if evidence else None}
        show(Client().call("POST", f"/v1/rollouts/{rollout_id}/{action}", body), output)

    chosen = with_evidence if takes_evidence else command
    chosen.__doc__ = doc
    rollout_app.command(action)(chosen)


for _action, _doc, _evidence in (
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
def schemas_export(directory: Annotated[Path, typer.Argument(
        help="where to write the .json files (created if missing)")]) -> None:
    """Write the JSON Schema of every published event to DIRECTORY."""
    from relctl.adapters.schemas import write_schemas

    for path in write_schemas(directory):
        console.print(str(path))


@app.command()
def demo(output: Output = OutputFormat.text) -> None:
    """A guided scenario against a running `relctl up`: release, rollout, advance, roll back."""
    from relctl.entrypoints.demo import run_demo

    run_demo(Client(), console, output.value)



def main() -> None:
    chosen_output[0] = OutputFormat.text
    app()


if __name__ == "__main__":
    main()

