"""What every relctl command shares: the API client, exit codes, output for people and
machines. The command modules (cli, cli_read) build on it, so neither imports the other."""

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
    INVALID = 3  # invalid input: rejected by the API (400/413/422) or an unreadable JSON file
    CONFLICT = 4  # the state does not allow it, or --expected-version is stale (409)
    NOT_FOUND = 5  # no such release, task, rollout, tenant or blueprint (404)
    UNAUTHORIZED = 6  # no token, an unknown or revoked token, or a role that may not (401/403)
    UNAVAILABLE = 7  # the API cannot be reached, or it or a dependency is down (503)


EXIT = {400: ExitCode.INVALID, 413: ExitCode.INVALID, 422: ExitCode.INVALID,
        409: ExitCode.CONFLICT,
        404: ExitCode.NOT_FOUND, 401: ExitCode.UNAUTHORIZED, 403: ExitCode.UNAUTHORIZED,
        503: ExitCode.UNAVAILABLE}
EXIT_UNAVAILABLE = ExitCode.UNAVAILABLE


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


console = Console()
err_console = Console(stderr=True)


chosen_output: list[OutputFormat] = [OutputFormat.text]  # of this invocation, for errors


def _remember_output(value: OutputFormat) -> OutputFormat:
    chosen_output[0] = OutputFormat(value)
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
    if chosen_output[0] is OutputFormat.json:
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


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(ExitCode.INVALID, "invalid_file", f"cannot read JSON from {path}: {exc}")


# ---- stack -----------------------------------------------------------------------------
