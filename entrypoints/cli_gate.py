"""``relctl gate``: golden sets, gate runs, reports and the promotion decision.

Through the control plane (the authority): ``golden register --task`` records
``Task.GoldenSetRegistered`` via the API (its bundles decide from then on); ``run --task T
--release N`` reads the release and the task's current golden set from the API, runs both arms
against an OpenAI-compatible endpoint (``RELCTL_LLM_*`` or ``--endpoint FILE``), writes the
reports under the local data directory and records ``Release.GateEvaluated`` via the API;
``show`` and ``report`` read it back. The API's token says who did it (operators, admins).

Local (offline, binds nothing): ``golden register`` without ``--task`` (``index.json`` under
``RELCTL_DATA_DIR``), ``run`` with spec files (``--candidate FILE --candidate-id ...``) and
``decide`` (a what-if of the promotion decision over bundle files). Exit codes follow
``relctl``: 3 invalid input, 4 refused (conflict), 5 not found, 6 forbidden.
"""

import asyncio
import hashlib
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticError
from relctl.adapters.config import Settings
from relctl.adapters.gate_report import write_reports
from relctl.adapters.gate_runner import EndpointConfig, GateRunner, ReleaseUnderTest
from relctl.adapters.golden_store import GoldenStore
from relctl.domain.errors import (
    ConflictError,
    ForbiddenError,
    NotFoundError,
    RelctlError,
    ValidationError,
)
from relctl.domain.gate_policy import GatePolicy, how_to_gate
from relctl.domain.gates import (
    Acknowledgement,
    Arm,
    BreakGlass,
    GateBundle,
    GateEvaluated,
    GateOutcome,
    GateThreshold,
    PromotionStep,
    build_bundle,
    decide_gate_passage,
    default_thresholds,
)
from relctl.domain.golden import GoldenSetRef, content_hash, parse_golden_lines
from relctl.domain.release import ReleaseSpec, prompt_hash
from relctl.entrypoints.cli_base import Client
from rich.console import Console
from rich.table import Table

gate_app = typer.Typer(help="Release gates: golden sets, evaluation bundles, promotion checks.",
                       no_args_is_help=True, pretty_exceptions_enable=False)
golden_app = typer.Typer(help="Golden sets: versioned, immutable, content-addressed.")
gate_app.add_typer(golden_app, name="golden", no_args_is_help=True)

console = Console()
err_console = Console(stderr=True)
EXIT_CODES: dict[type[RelctlError], int] = {
    ValidationError: 3, ConflictError: 4, NotFoundError: 5, ForbiddenError: 6}
EXIT_REFUSED = 4
F = TypeVar("F", bound=Callable[..., Any])

Output = Annotated[str, typer.Option("--output", "-o", help="text or json")]


def _errors(func: F) -> F:
    """Domain errors and bad input become a message and relctl's exit code, never a trace."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except RelctlError as exc:
            err_console.print(f"[red]{exc.code}[/red]: {exc}")
            raise typer.Exit(EXIT_CODES.get(type(exc), 1)) from None
        except PydanticError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            err_console.print(f"[red]validation_error[/red]: {where}: {first.get('msg')}")
            raise typer.Exit(3) from None
        except (OSError, json.JSONDecodeError) as exc:
            err_console.print(f"[red]validation_error[/red]: {exc}")
            raise typer.Exit(3) from None
    return wrapper  # type: ignore[return-value]


def _settings() -> Settings:
    return Settings.from_env()


def _print_json(payload: Any) -> None:
    console.print_json(json.dumps(payload, default=str))


@golden_app.command("register")
@_errors
def golden_register(
    path: Annotated[Path, typer.Argument(help="JSON Lines file of golden calls")],
    name: Annotated[str, typer.Option("--name", "-n", help="golden set name, e.g. csat-golden")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why; recorded with the version")],
    actor: Annotated[str, typer.Option(
        "--actor", help="local mode only: who is recorded (the API uses the token)")] = "cli",
    task: Annotated[str | None, typer.Option(
        "--task", help="register for TASK through the API: the task is gated from then on")]
        = None,
    thresholds: Annotated[Path | None, typer.Option(
        "--thresholds", help="with --task: JSON list of gates bundles must use (default: the "
                             "standard gates)")] = None,
) -> None:
    """Register a JSON Lines golden set; same content is the same version, new content the next.

    With --task: through the API (the control plane decides which version is current). Without:
    only in the local content store (a dry run that gates nothing)."""
    text = path.read_text("utf-8")
    if task is None:
        event = GoldenStore(_settings().data_dir).register(name, text, actor=actor, reason=reason)
        _print_json(event.model_dump(mode="json"))
        return
    rows = [call.model_dump(mode="json") for call in parse_golden_lines(text.splitlines())]
    body: dict[str, Any] = {"name": name, "rows": rows, "reason": reason}
    if thresholds is not None:
        body["thresholds"] = [g.model_dump(mode="json") for g in _thresholds(thresholds)]
    result = Client().call("POST", f"/v1/tasks/{task}/golden-sets", body)
    _print_json({"golden_set": result["aggregate"]["golden_set"], "rows": len(rows),
                 "changed": result["changed"], "note": result.get("note")})


@golden_app.command("show")
@_errors
def golden_show(name: Annotated[str, typer.Argument(help="golden set name")],
                version: Annotated[int | None, typer.Option(
                    "--version", help="version (default: the current one)")] = None,
                ) -> None:
    """The named golden set version (the current one by default)."""
    store = GoldenStore(_settings().data_dir)
    ref = store.resolve(name, version)
    calls = store.load(ref)
    _print_json({**ref.model_dump(mode="json"), "rows": len(calls)})


def _release(path: Path, release_id: str, arm: Arm) -> ReleaseUnderTest:
    spec = ReleaseSpec.from_dict(json.loads(path.read_text("utf-8")))
    return ReleaseUnderTest.from_spec(release_id, arm, spec)


def _thresholds(path: Path | None) -> list[GateThreshold]:
    if path is None:
        return default_thresholds()
    return TypeAdapter(list[GateThreshold]).validate_json(path.read_text("utf-8"))


def _show_bundle(bundle: GateBundle) -> None:
    table = Table(title=f"gates of {bundle.release_id} on {bundle.golden_set.name} "
                        f"v{bundle.golden_set.version}")
    for column in ("gate", "class", "outcome", "detail"):
        table.add_column(column)
    colours = {GateOutcome.PASSED: "green", GateOutcome.FAILED: "red",
               GateOutcome.INCONCLUSIVE: "yellow"}
    for result in bundle.results:
        table.add_row(result.gate.name, str(result.gate.gate_class),
                      f"[{colours[result.outcome]}]{result.outcome}[/]", result.message)
    console.print(table)


@gate_app.command("run")
@_errors
def run(
    task: Annotated[str, typer.Option("--task", help="task the releases belong to")],
    release: Annotated[int | None, typer.Option(
        "--release", help="recorded mode: the candidate release number (spec from the API)")]
        = None,
    baseline_release: Annotated[int | None, typer.Option(
        "--baseline-release", help="recorded mode: baseline number (default: task default)")]
        = None,
    reason: Annotated[str, typer.Option(
        "--reason", help="recorded mode: why, recorded with GateEvaluated")] = "gate run",
    golden: Annotated[str | None, typer.Option(
        "--golden", help="local mode: golden set name in the local store")] = None,
    candidate: Annotated[Path | None, typer.Option(
        "--candidate", help="local mode: candidate release spec JSON")] = None,
    candidate_id: Annotated[str | None, typer.Option(
        "--candidate-id", help="local mode: candidate release id, e.g. csat@2")] = None,
    baseline: Annotated[Path | None, typer.Option(
        "--baseline", help="local mode: baseline release spec JSON")] = None,
    baseline_id: Annotated[str | None, typer.Option(
        "--baseline-id", help="local mode: baseline release id, e.g. csat@1")] = None,
    golden_version: Annotated[int | None, typer.Option(
        "--golden-version", help="golden set version (default: current)")] = None,
    thresholds: Annotated[Path | None, typer.Option("--thresholds",
                                                    help="JSON list of gates")] = None,
    endpoint: Annotated[Path | None, typer.Option("--endpoint",
                                                  help="endpoint config JSON")] = None,
    concurrency: Annotated[int | None, typer.Option(
        "--concurrency", help="calls in flight at once (default: from the endpoint file)")] = None,
    bundle_id: Annotated[str | None, typer.Option(
        "--bundle-id", help="reuse this id to resume an interrupted run")] = None,
    actor: Annotated[str, typer.Option("--actor", help="who is recorded as doing this")] = "cli",
    progress: Annotated[bool, typer.Option(
        "--progress/--no-progress", help="show a progress bar")] = True,
    output: Output = "text",
) -> None:
    """Run candidate and baseline over the golden set, build the bundle, write the reports.

    Re-running the same command resumes: finished calls are read from the checkpoint files
    under <data_dir>/gates/runs/ and not sent again.
    """
    settings = _settings()
    client: Client | None = None
    if release is not None:
        if thresholds is not None:
            raise ValidationError(
                "a recorded run uses the task's gate policy (registered with its golden set: "
                "relctl gate golden register --task ... --thresholds FILE); drop --thresholds")
        client = Client()
        ref, calls, arms, policy = _recorded_inputs(client, task, release, baseline_release)
        gates = [GateThreshold.model_validate(g) for g in policy]
    else:
        if not (golden and candidate and candidate_id and baseline and baseline_id):
            raise ValidationError(
                "give --release N (recorded through the API), or, for a local dry run, "
                "--golden, --candidate, --candidate-id, --baseline and --baseline-id")
        store = GoldenStore(settings.data_dir)
        ref = store.resolve(golden, golden_version)
        calls = store.load(ref)
        arms = [_release(candidate, candidate_id, Arm.CANDIDATE),
                _release(baseline, baseline_id, Arm.BASELINE)]
        gates = _thresholds(thresholds)
    config = EndpointConfig.from_file(endpoint) if endpoint else EndpointConfig.from_env()
    if concurrency:
        config = config.model_copy(update={"concurrency": concurrency})
    bundle, event, report = evaluate(task, ref, calls, arms, gates, config, settings.data_dir,
                                     bundle_id=bundle_id, actor=actor, progress=progress)
    if client is not None and release is not None:
        client.call("POST", f"/v1/releases/{task}/{release}/gate-evaluations",
                    {"reason": reason, "evaluation": event.model_dump(mode="json")})
        err_console.print(f"recorded: GateEvaluated {bundle.bundle_id} on {task}@{release}")
    if output == "json":
        _print_json(event.model_dump(mode="json"))
        return
    _show_bundle(bundle)
    console.print(f"reports: {report.parent}/report.md, report.html, bundle.json")
    console.print(f"event payload: {report.parent}/gate-evaluated.json")


def evaluate(task: str, ref: GoldenSetRef, calls: list[Any], arms: list[ReleaseUnderTest],
             gates: list[GateThreshold], config: EndpointConfig, data_dir: Path, *,
             bundle_id: str | None = None, actor: str = "cli", progress: bool = False,
             ) -> tuple[GateBundle, GateEvaluated, Path]:
    """Run both arms (candidate first) over the golden set, build the bundle, write the
    reports under ``data_dir``: (bundle, the ``GateEvaluated`` payload, report path)."""
    runs = data_dir / "gates" / "runs" / f"{arms[0].release_id}-vs-" \
        f"{arms[1].release_id}-{ref.content_hash.removeprefix('sha256:')[:12]}"
    runner = GateRunner(config)
    redacted = runner.redact_all(calls)  # once for both arms, before anything is sent
    traces = [asyncio.run(runner.run(arm, calls, runs / f"{arm.arm}.jsonl", progress=progress,
                                     redacted=redacted))
              for arm in arms]
    bundle = build_bundle(
        bundle_id=bundle_id or f"gb-{uuid.uuid4().hex[:12]}", task_id=task, golden_set=ref,
        calls=calls, candidate=traces[0], baseline=traces[1], thresholds=gates,
        evaluated_at=datetime.now(UTC))
    report, digest = write_reports(bundle, data_dir)
    event = GateEvaluated.from_bundle(
        bundle, report_path=str(report.relative_to(data_dir)), report_hash=digest,
        evaluated_by=actor, runner=runner_configuration(config, arms))
    (report.parent / "gate-evaluated.json").write_text(event.model_dump_json(indent=2), "utf-8")
    return bundle, event, report


def record_gate_run(client: Any, task: str, release: int, config: EndpointConfig,
                    data_dir: Path, *, baseline_release: int | None = None,
                    reason: str = "gate run") -> GateEvaluated:
    """``relctl gate run --task T --release N`` as a function (the demo uses it): inputs from
    the API, both arms run against ``config``'s endpoint, the bundle recorded on the release."""
    ref, calls, arms, policy = _recorded_inputs(client, task, release, baseline_release)
    gates = [GateThreshold.model_validate(g) for g in policy]
    _, event, _ = evaluate(task, ref, calls, arms, gates, config, data_dir)
    client.call("POST", f"/v1/releases/{task}/{release}/gate-evaluations",
                {"reason": reason, "evaluation": event.model_dump(mode="json")})
    return event


def runner_configuration(config: EndpointConfig, arms: list[ReleaseUnderTest]) -> dict[str, Any]:
    """What ``GateEvaluated`` records about how the run was made (never the API key)."""
    return {
        "endpoint": config.model_dump(mode="json", exclude={"api_key"}),
        **{str(arm.arm): {"release_id": arm.release_id, "model": arm.model,
                          "prompt_hash": prompt_hash(arm.prompt_template),
                          "prompt_version": arm.prompt_version, "temperature": arm.temperature,
                          "seed": arm.seed, "blueprint_version_id": arm.blueprint_version_id}
           for arm in arms},
    }


def _recorded_inputs(client: Client, task: str, number: int, baseline: int | None,
                     ) -> tuple[GoldenSetRef, list[Any], list[ReleaseUnderTest],
                                list[dict[str, Any]]]:
    """The task's current golden set (rows checked against the registered hash), both
    releases as the control plane stores them, and the task's gates."""
    policy = client.call("GET", f"/v1/tasks/{task}/golden-sets/current")
    golden = policy["current"]
    if golden is None:
        raise NotFoundError(f"task {task} has no golden set: register one with "
                            f"`relctl gate golden register FILE --task {task} ...`")
    ref = GoldenSetRef.model_validate(golden)
    lines = client.call("GET", f"/v1/tasks/{task}/golden-sets/rows",
                        params={"content_hash": ref.content_hash})["jsonl"].splitlines()
    if content_hash(lines) != ref.content_hash:
        raise ValidationError(f"golden set rows from the API do not match {ref.content_hash}")
    if baseline is None:
        baseline = client.call("GET", f"/v1/tasks/{task}")["default_release"]
        if baseline is None:
            raise ValidationError(f"task {task} has no default release: give "
                                  "--baseline-release")
    arms = []
    for arm, n in ((Arm.CANDIDATE, number), (Arm.BASELINE, baseline)):
        content = client.call("GET", f"/v1/releases/{task}/{n}")["content"]
        spec = ReleaseSpec.model_construct(**content)
        arms.append(ReleaseUnderTest.from_spec(f"{task}@{n}", arm, spec))
    return ref, parse_golden_lines(lines), arms, list(policy["thresholds"])


AckOption = Annotated[list[str] | None, typer.Option(
    "--ack", help="GATE=REASON: accept a failing Conditional gate (repeatable)")]
BreakGlassOption = Annotated[str | None, typer.Option(
    "--break-glass", help="admins only: pass every gate anyway, for this reason (audited)")]


def gate_fields(acks: list[str] | None, break_glass: str | None) -> dict[str, Any]:
    """The gate fields of a promote / rollout-start body from ``--ack`` and ``--break-glass``."""
    fields: dict[str, Any] = {}
    if acks:
        parsed = []
        for value in acks:
            gate, sep, why = value.partition("=")
            if not sep:
                raise typer.BadParameter(f"--ack {value!r}: give GATE=REASON")
            parsed.append({"gate": gate.strip(), "reason": why.strip()})
        fields["acknowledgements"] = parsed
    if break_glass is not None:
        fields["break_glass"] = break_glass
    return fields


def _recorded(task: str, release: int) -> dict[str, Any]:
    result: dict[str, Any] = Client().call("GET", f"/v1/releases/{task}/{release}/gates")
    return result


@gate_app.command("show")
@_errors
def show_gates(
    task: Annotated[str, typer.Option("--task", help="task")],
    release: Annotated[int, typer.Option("--release", help="release number")],
    output: Output = "text",
) -> None:
    """The release's recorded gate bundles and what promotion past InternalTest would decide."""
    result = _recorded(task, release)
    if output == "json":
        _print_json(result)
        return
    golden = result["golden_set"]
    console.print(f"{result['release']} ({result['stage']}): {_policy_line(result)}")
    for bundle in result["bundles"]:
        event = GateEvaluated.model_validate(bundle)
        stale = golden is None or event.golden_set.content_hash != golden["content_hash"]
        table = Table(title=f"bundle {event.bundle_id} on {event.golden_set.name} "
                            f"v{event.golden_set.version}{' (stale)' if stale else ''}, "
                            f"by {event.evaluated_by} at {event.evaluated_at:%Y-%m-%d %H:%M}")
        for column in ("gate", "class", "outcome", "detail"):
            table.add_column(column)
        for r in event.results:
            table.add_row(r.gate.name, str(r.gate.gate_class), str(r.outcome), r.message)
        console.print(table)
    decision = result["decision"]
    if decision is not None:
        verdict = "allowed" if decision["allowed"] else "refused"
        console.print(f"promotion past InternalTest now: {verdict}: {decision['message']}")
    elif result.get("gate_policy") == GatePolicy.REQUIRED:
        console.print("promotion past InternalTest now: refused: "
                      + how_to_gate(task, release))


def _policy_line(result: dict[str, Any]) -> str:
    """How the task's gated steps are decided, in words: golden set, waiver, or neither."""
    golden, waiver = result["golden_set"], result.get("waiver")
    if golden:
        return (f"gated by golden set {golden['name']} v{golden['version']} "
                f"({golden['content_hash'][:19]})")
    if waiver:
        return (f"ungated: gates waived by {waiver['actor']} ({waiver['role']}): "
                f"{waiver['reason']}")
    return "gated, but no golden set registered: gated steps are refused"


def _waiver_command(path: str, reason: str, output: str) -> dict[str, Any] | None:
    """Send a waive or withdraw command; with ``--output json`` print the task's gate policy
    and waiver and return None, else return the API's outcome for the text line."""
    result: dict[str, Any] = Client().call("POST", path, {"reason": reason})
    if output != "json":
        return result
    summary = result["aggregate"]
    _print_json({"task": summary["key"], "gate_policy": summary["gate_policy"],
                 "waiver": summary["gate_waiver"], "changed": result["changed"],
                 "note": result.get("note")})
    return None


@gate_app.command("waive")
@_errors
def waive(
    task: Annotated[str, typer.Option("--task", help="task to declare ungated")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why it needs no evidence")],
    output: Output = "text",
) -> None:
    """Admins only: declare TASK ungated (records Task.GatesWaived with the reason). Its
    releases then pass InternalTest and start rollouts without evidence, each passage naming
    this waiver; registering a golden set later ends it."""
    result = _waiver_command(f"/v1/tasks/{task}/gate-waiver", reason, output)
    if result is None:
        return
    summary = result["aggregate"]
    waiver = summary["gate_waiver"]
    console.print(f"{'recorded' if result['changed'] else 'unchanged'}: task {summary['key']} "
                  f"is ungated: gates waived by {waiver['actor']} ({waiver['role']}): "
                  f"{waiver['reason']}")


@gate_app.command("unwaive")
@_errors
def unwaive(
    task: Annotated[str, typer.Option("--task", help="task whose waiver to withdraw")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="why it needs evidence again")],
    output: Output = "text",
) -> None:
    """Admins only: withdraw TASK's gate waiver (records Task.GateWaiverWithdrawn with the
    reason). Its gated steps are refused again until a golden set is registered; passages the
    waiver already allowed stay recorded. With no waiver in force nothing is recorded."""
    result = _waiver_command(f"/v1/tasks/{task}/gate-waiver/withdraw", reason, output)
    if result is None:
        return
    summary = result["aggregate"]
    if result["changed"]:
        console.print(f"recorded: task {summary['key']} is gated again: gate policy "
                      f"{summary['gate_policy']}, gated steps need evidence (register a "
                      "golden set)")
    else:
        console.print(f"unchanged: task {summary['key']}: {result.get('note')} (gate policy "
                      f"{summary['gate_policy']})")


@gate_app.command("report")
@_errors
def report_gates(
    task: Annotated[str, typer.Option("--task", help="task")],
    release: Annotated[int, typer.Option("--release", help="release number")],
    bundle: Annotated[str | None, typer.Option(
        "--bundle", help="bundle id (default: the newest recorded)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="md, html or json")] = "md",
) -> None:
    """Print a recorded bundle's report: Markdown or HTML from the local data directory (its
    bundle.json checked against the hash the event recorded), or the event's JSON."""
    bundles = _recorded(task, release)["bundles"]
    if bundle is not None:
        bundles = [b for b in bundles if b["bundle_id"] == bundle]
    if not bundles:
        raise NotFoundError(f"no recorded gate bundle {bundle or ''} on {task}@{release}")
    event = GateEvaluated.model_validate(bundles[-1])
    if fmt == "json":
        _print_json(event.model_dump(mode="json"))
        return
    if fmt not in ("md", "html"):
        raise ValidationError("--format is md, html or json")
    data_dir = _settings().data_dir
    payload = (data_dir / event.report_path).read_bytes()
    if "sha256:" + hashlib.sha256(payload).hexdigest() != event.report_hash:
        raise ValidationError(f"{event.report_path} does not match the recorded report hash "
                              f"{event.report_hash}")
    page = (data_dir / event.report_path).parent / f"report.{fmt}"
    sys.stdout.write(page.read_text("utf-8"))


def _ack(value: str, bundle_id: str, actor: str) -> Acknowledgement:
    gate, sep, reason = value.partition("=")
    if not sep:
        raise ValidationError(f"--ack {value!r}: give GATE=REASON")
    return Acknowledgement(bundle_id=bundle_id, gate=gate.strip(), actor=actor,
                           reason=reason.strip())


@gate_app.command("decide")
@_errors
def decide(
    release_id: Annotated[str, typer.Option("--release", help="release id, e.g. csat@2")],
    golden: Annotated[str, typer.Option("--golden", help="golden set name (current version)")],
    bundles: Annotated[list[Path], typer.Option("--bundle",
                                                help="gate-evaluated.json, repeatable")],
    step: Annotated[PromotionStep, typer.Option(
        "--step", help="what the release is to pass")] = PromotionStep.PASS_INTERNAL_TEST,
    ack: Annotated[list[str] | None, typer.Option("--ack", help="GATE=REASON")] = None,
    break_glass: Annotated[str | None, typer.Option("--break-glass", help="reason")] = None,
    actor: Annotated[str, typer.Option("--actor", help="who is recorded as doing this")] = "cli",
    role: Annotated[str, typer.Option(
        "--role", help="role the decision is checked for (break-glass needs admin)")] = "operator",
    output: Output = "text",
) -> None:
    """May the release pass the step? Exit 0 if allowed, 4 if refused."""
    current = GoldenStore(_settings().data_dir).resolve(golden)
    events = [GateEvaluated.model_validate_json(p.read_text("utf-8")) for p in bundles]
    deciding = max((e for e in events if e.release_id == release_id
                    and e.golden_set.content_hash == current.content_hash),
                   key=lambda e: e.evaluated_at, default=None)
    acks = [_ack(a, deciding.bundle_id if deciding else "-", actor) for a in ack or []]
    glass = BreakGlass(actor=actor, role=role, reason=break_glass) if break_glass else None
    decision = decide_gate_passage(release_id=release_id, step=step, bundles=events,
                                   current_golden=current, acknowledgements=acks,
                                   break_glass=glass)
    if output == "json":
        _print_json(decision.model_dump(mode="json"))
    else:
        colour = "green" if decision.allowed else "red"
        console.print(f"[{colour}]{'allowed' if decision.allowed else 'refused'}[/]: "
                      f"{decision.message}")
        for line in decision.signals:
            console.print(f"[yellow]signal[/]: {line}")
    if not decision.allowed:
        raise typer.Exit(EXIT_REFUSED)


@gate_app.command("serve-local-model")
def serve_local_model(
    port: Annotated[int, typer.Option("--port", help="port to listen on")] = 8760,
    host: Annotated[str, typer.Option("--host", help="address to bind")] = "127.0.0.1",
    latency_ms: Annotated[float, typer.Option("--latency-ms",
                                              help="fixed simulated latency per answer")] = 0.0,
) -> None:
    """Serve the deterministic local OpenAI-compatible model (demo, tests, benchmark)."""
    import uvicorn
    from relctl.adapters.openai_compatible_server import Behaviour, ModelServerState, create_app

    state = ModelServerState(behaviours={"*": Behaviour(latency_s=latency_ms / 1000)})
    uvicorn.run(create_app(state), host=host, port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    gate_app()
