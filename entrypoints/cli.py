"""The ``relctl`` CLI: every command and read over the HTTP API, plus ``up``.

Text output is for people (tables and short summaries); ``-o json`` is for machines, errors
included (a JSON object on stderr). The exit code says what went wrong, see ``ExitCode``.
"""

import json
import os
import sys
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from relctl.infra.stackfile import current_stack_pointer, find_stack
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table


class ExitCode(IntEnum):
    """What a script can tell from ``$?``; listed in the README."""

    OK = 0  # done, or nothing to change (an idempotent repeat)
    ERROR = 1  # anything else: an internal error of the API, a bug
    USAGE = 2  # unknown command or option, missing argument, unknown -o value
    INVALID = 3  # invalid input: rejected by the API (400/422) or an unreadable JSON file
    CONFLICT = 4  # the state does not allow it, or --expected-version is stale (409)
    NOT_FOUND = 5  # no such release, task, rollout, tenant or blueprint (404)
    UNAUTHORIZED = 6  # no token, an unknown or revoked token, or a role that may not (401/403)
    UNAVAILABLE = 7  # the API cannot be reached, or it or a dependency is down (503)


EXIT = {400: ExitCode.INVALID, 422: ExitCode.INVALID, 409: ExitCode.CONFLICT,
        404: ExitCode.NOT_FOUND, 401: ExitCode.UNAUTHORIZED, 403: ExitCode.UNAUTHORIZED,
        503: ExitCode.UNAVAILABLE}
EXIT_UNAVAILABLE = ExitCode.UNAVAILABLE


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


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


_chosen_output: list[OutputFormat] = [OutputFormat.text]  # of this invocation, for errors


def _remember_output(value: OutputFormat) -> OutputFormat:
    _chosen_output[0] = OutputFormat(value)
    return value


Output = Annotated[OutputFormat, typer.Option(
    "--output", "-o", callback=_remember_output,
    help="text for people; json for machines (errors then are JSON on stderr too)")]
Reason = Annotated[str, typer.Option("--reason", "-r", help="why; recorded in the event")]
Expected = Annotated[int | None, typer.Option(
    "--expected-version", help="refuse (exit 4) unless the aggregate is still at this version")]
Quiet = Annotated[bool, typer.Option(
    "--quiet", "-q", help="print only the identifier of what was created (for scripts)")]
SpecFile = Annotated[Path, typer.Option("--file", "-f", help="JSON file with the release spec")]
StagesFile = Annotated[Path, typer.Option(
    "--file", "-f", help="JSON file with the list of stages")]
TaskArg = Annotated[str, typer.Argument(help="task key, e.g. csat")]
NumberArg = Annotated[int, typer.Argument(help="release number within the task (1, 2, ...)")]
RolloutArg = Annotated[str, typer.Argument(help="rollout id (printed by `rollout plan`)")]
TenantArg = Annotated[str, typer.Argument(help="tenant key, e.g. acme")]
BlueprintArg = Annotated[str, typer.Argument(help="blueprint name")]
ActorArg = Annotated[str, typer.Argument(help="who the token belongs to")]


def fail(exit_code: ExitCode, code: str, message: str, status: int | None = None) -> NoReturn:
    """Report an error the way the chosen output asks for, then exit with ``exit_code``."""
    if _chosen_output[0] is OutputFormat.json:
        sys.stderr.write(json.dumps({"error": {
            "code": code, "message": message, "status": status,
            "exit_code": int(exit_code)}}) + "\n")
    else:
        err_console.print(f"[red]error ({code})[/red]: {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(int(exit_code))


class Client:
    """A thin HTTP client: the API owns every rule, the CLI only shows its answers.

    It reaches ``RELCTL_API_URL`` with ``RELCTL_TOKEN`` when set; otherwise the URL and the
    admin token of a running ``relctl up``: the one of ``RELCTL_DATA_DIR``, else of ``./.relctl``,
    else the one started last by this user (see ``infra.stackfile``)."""

    def __init__(self) -> None:
        explicit = os.environ.get("RELCTL_DATA_DIR")
        self.data_dir, stack = find_stack(Path(explicit) if explicit else None)
        stack = stack or {}
        env_url = os.environ.get("RELCTL_API_URL")
        self.url = (env_url or stack.get("api_url") or "http://127.0.0.1:8750").rstrip("/")
        self.token = os.environ.get("RELCTL_TOKEN") or self._read_token(stack)
        self.stack_running = bool(stack)

    @staticmethod
    def _read_token(stack: dict[str, Any]) -> str | None:
        path = stack.get("admin_token_file")
        if not path:
            return None
        try:
            return Path(path).read_text().strip() or None
        except OSError:
            return None

    def _no_token(self) -> NoReturn:
        if self.data_dir is not None and not self.stack_running:
            fail(ExitCode.UNAVAILABLE, "unavailable",
                 f"the relctl up of {self.data_dir} is not running: start it with "
                 f"`relctl up --data-dir {self.data_dir}`, or set RELCTL_API_URL and "
                 "RELCTL_TOKEN to use another relctl API")
        fail(ExitCode.UNAUTHORIZED, "no_token",
             "no API token: set RELCTL_TOKEN (for a local stack: export RELCTL_TOKEN=$(cat "
             "<data-dir>/admin-token)), or RELCTL_DATA_DIR=<data-dir> of a running relctl up; "
             f"a running relctl up is found by itself in ./.relctl or via "
             f"{current_stack_pointer()}")

    def call(self, method: str, path: str, body: Any = None,
             params: dict[str, Any] | None = None) -> Any:
        if not self.token:
            self._no_token()
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            response = httpx.request(method, self.url + path, json=body, params=params,
                                     headers=headers, timeout=30)
        except httpx.HTTPError as exc:
            fail(ExitCode.UNAVAILABLE, "unavailable",
                 f"cannot reach the relctl API at {self.url} ({exc}); is `relctl up` running? "
                 "Set RELCTL_API_URL to point elsewhere.")
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"code": "http", "message": response.text}}
        if response.status_code >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            if not isinstance(error, dict):
                error = {"message": str(error)}
            fail(EXIT.get(response.status_code, ExitCode.ERROR),
                 str(error.get("code", "error")), str(error.get("message", response.text)),
                 response.status_code)
        return payload


# ---- text output -----------------------------------------------------------------------

def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str | int | float):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)


def _fields(data: dict[str, Any], skip: tuple[str, ...] = ()) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key not in skip:
            table.add_row(key, _plain(value))
    return table


def _print_table(table: Table) -> None:
    """On a terminal rows fold to its width; into a pipe or a file each row is one line,
    however long, so the columns stay aligned for grep and for people."""
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    Console(width=width).print(table)


def _say(line: str) -> None:
    console.print(line, soft_wrap=True, highlight=False)


def _steps_text(rollout: dict[str, Any]) -> str:
    return " -> ".join(
        f"[{step}]" if index == rollout.get("step_index") else str(step)
        for index, step in enumerate(rollout.get("steps") or []))


def _summary(aggregate: dict[str, Any]) -> str:
    """One line that says what an aggregate is now."""
    kind = str(aggregate.get("kind", "")).lower()
    if "number" in aggregate:
        content = aggregate.get("content") or {}
        return (f"release {aggregate.get('task')} {aggregate['number']}: "
                f"{aggregate.get('stage')}, {content.get('model_provider')} "
                f"{content.get('model_version')}, temperature {content.get('temperature')}, "
                f"seed {content.get('seed')}")
    if kind == "rollout":
        return (f"rollout {aggregate.get('id')}: {aggregate.get('task')} release "
                f"{aggregate.get('baseline')} -> {aggregate.get('candidate')}, "
                f"{aggregate.get('state')}, steps {_steps_text(aggregate)}"
                + (" (shadow)" if aggregate.get("shadow") else ""))
    if kind == "task":
        releases = ", ".join(str(r) for r in aggregate.get("releases") or []) or "none"
        return (f"task {aggregate.get('key')}: default release "
                f"{_plain(aggregate.get('default_release'))}, releases {releases}, "
                f"active rollout {_plain(aggregate.get('active_rollout'))}")
    for key in ("key", "name"):
        if key in aggregate:
            extra = f", cohort {aggregate['cohort']}" if "cohort" in aggregate else ""
            return f"{kind} {aggregate[key]}{extra}"
    return f"{kind} {aggregate.get('id')}"


def _show_aggregate(aggregate: dict[str, Any]) -> None:
    """A read: the summary line, then the fields (a release's spec only in -o json)."""
    _say(_summary(aggregate))
    if str(aggregate.get("kind", "")).lower() == "rollout":
        for rule in aggregate.get("guard_rules") or []:
            _say(f"  guard {rule.get('name')}: {rule.get('metric')} {rule.get('comparator')} "
                 f"{rule.get('threshold')} over {rule.get('window_seconds')} s, at least "
                 f"{rule.get('min_samples')} samples -> {rule.get('gate_class')}")
        for decision in aggregate.get("decisions") or []:
            _say(f"  {decision.get('action')} by {decision.get('actor')}: "
                 f"{decision.get('reason')}")
        for verdict in aggregate.get("verdicts") or []:
            _say(_verdict_line(verdict))
        return
    _print_table(_fields(aggregate, ("kind", "content")))


def _figure(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else "-"


def _verdict_line(verdict: dict[str, Any]) -> str:
    """A guard rule's latest verdict (the API's ``verdicts``), e.g. ``verdict errors: Pending,
    llm_error_rate 0.2 > 0.05, 60 of 50 samples over 120 s, candidate 0.2 (60), baseline 0.01
    (80), breached since ..., 12 s left``."""
    candidate, baseline = verdict.get("candidate") or {}, verdict.get("baseline") or {}
    line = (f"  verdict {verdict.get('rule')}: {verdict.get('outcome')}, "
            f"{verdict.get('metric')} {_figure(verdict.get('value'))} "
            f"{verdict.get('comparator')} {_figure(verdict.get('threshold'))}, "
            f"{verdict.get('samples')} of {verdict.get('min_samples')} samples over "
            f"{_figure(verdict.get('window_seconds'))} s, candidate "
            f"{_figure(candidate.get('value'))} ({candidate.get('samples', 0)}), baseline "
            f"{_figure(baseline.get('value'))} ({baseline.get('samples', 0)})")
    if verdict.get("breach_since"):
        line += f", breached since {verdict['breach_since']}"
    if verdict.get("time_left_seconds") is not None:
        line += f", {verdict['time_left_seconds']:.0f} s left"
    return line + f" (as of {verdict.get('at')})"


def _show_history(result: dict[str, Any]) -> None:
    table = Table(title=f"history of {result.get('aggregate_id')}", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("time", no_wrap=True)
    table.add_column("event", no_wrap=True)
    table.add_column("actor", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for event in result["events"]:
        data = event.get("data") or {}
        table.add_row(str(event.get("time")), str(event.get("type")).removeprefix("io.relctl."),
                      _plain(data.get("actor")), _plain(data.get("reason")))
    _print_table(table)


def _show_resolution(result: dict[str, Any]) -> None:
    _say(f"{result.get('tenant')} runs {result.get('task')} release {result.get('release')} "
         f"(source: {result.get('source')})")
    if result.get("shadow_release") is not None:
        _say(f"shadow: release {result['shadow_release']} also scores, its scores not shown")
    _say("why:")
    for line in result.get("explanation") or ["-"]:
        _say(f"  - {line}")
    _say(f"pipeline: {result.get('pipeline')}")
    flags = result.get("flags") or {}
    _say("flags: " + (", ".join(
        f"{name} {'on' if on else 'off'}" for name, on in sorted(flags.items())) or "-"))
    if result.get("overrides"):
        _say("overrides: " + _plain(result["overrides"]))


def show(result: Any, output: OutputFormat) -> None:
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return
    if isinstance(result, dict) and "aggregate" in result:  # a command: one line
        headline = "recorded" if result.get("changed", True) else "no change"
        _say(f"{headline}: {_summary(result['aggregate'])}"
             + (f" ({result['note']})" if result.get("note") else ""))
    elif isinstance(result, dict) and "events" in result:
        _show_history(result)
    elif isinstance(result, dict) and "explanation" in result and "release" in result:
        _show_resolution(result)
    elif isinstance(result, dict) and "kind" in result:
        _show_aggregate(result)
    elif isinstance(result, dict):
        _print_table(_fields(result))
    else:
        _say(_plain(result))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(ExitCode.INVALID, "invalid_file", f"cannot read JSON from {path}: {exc}")


# ---- stack -----------------------------------------------------------------------------

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
                           {"task": task, "spec": _load_json(file), "reason": reason})
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
                       {"spec": _load_json(file), "reason": reason,
                        "expected_version": expected_version}), output)


@release_app.command("promote")
def release_promote(task: TaskArg, number: NumberArg,
                    stage: Annotated[str, typer.Argument(
                        help="InternalTest, Beta, Stable or Deprecated")],
                    reason: Reason, expected_version: Expected = None,
                    output: Output = OutputFormat.text) -> None:
    """Move a release forward: InternalTest, Beta, Stable, or Deprecated."""
    show(Client().call("POST", f"/v1/releases/{task}/{number}/promote",
                       {"stage": stage, "reason": reason,
                        "expected_version": expected_version}), output)


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
                       {"name": name, "stages": _load_json(file), "reason": reason}), output)


@blueprint_app.command("update")
def blueprint_update(name: BlueprintArg, file: StagesFile, reason: Reason,
                     expected_version: Expected = None,
                     output: Output = OutputFormat.text) -> None:
    """Replace the stages of the blueprint's draft."""
    show(Client().call("POST", f"/v1/blueprints/{name}/draft",
                       {"stages": _load_json(file), "reason": reason,
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
def tenant_reset(key: TenantArg, reason: Reason,
                 task: Annotated[str | None, typer.Option(
                     help="only this task (default: every task)")] = None,
                 output: Output = OutputFormat.text) -> None:
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
        "guard_rules": _load_json(guards) if guards else None, "shadow": shadow,
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
    _chosen_output[0] = OutputFormat.text
    app()


if __name__ == "__main__":
    main()
