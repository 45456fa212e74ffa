"""``relctl gate``: golden sets, gate runs, reports and the promotion decision, run locally.

A Typer sub-app for the lead to mount (``app.add_typer(gate_app, name="gate")``). It works on
the data directory (``RELCTL_DATA_DIR``) and an OpenAI-compatible endpoint (``RELCTL_LLM_*`` or
``--endpoint FILE``); recording ``GoldenSetRegistered`` / ``GateEvaluated`` as events and
refusing promotion in the control plane is wired at merge. Exit codes follow ``relctl``:
3 invalid input, 4 refused (conflict), 5 not found, 6 forbidden.
"""

import asyncio
import json
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
from relctl.domain.release import ReleaseSpec
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
    actor: Annotated[str, typer.Option("--actor", help="who is recorded as doing this")] = "cli",
) -> None:
    """Register a JSON Lines golden set; same content is the same version, new content the next."""
    event = GoldenStore(_settings().data_dir).register(
        name, path.read_text("utf-8"), actor=actor, reason=reason)
    _print_json(event.model_dump(mode="json"))


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
    golden: Annotated[str, typer.Option("--golden", help="golden set name")],
    candidate: Annotated[Path, typer.Option("--candidate", help="candidate release spec JSON")],
    candidate_id: Annotated[str, typer.Option(
        "--candidate-id", help="candidate release id, e.g. csat@2")],
    baseline: Annotated[Path, typer.Option("--baseline", help="baseline release spec JSON")],
    baseline_id: Annotated[str, typer.Option(
        "--baseline-id", help="baseline release id, e.g. csat@1")],
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
    store = GoldenStore(settings.data_dir)
    ref = store.resolve(golden, golden_version)
    calls = store.load(ref)
    gates = _thresholds(thresholds)
    config = EndpointConfig.from_file(endpoint) if endpoint else EndpointConfig.from_env()
    if concurrency:
        config = config.model_copy(update={"concurrency": concurrency})
    arms = [_release(candidate, candidate_id, Arm.CANDIDATE),
            _release(baseline, baseline_id, Arm.BASELINE)]
    runs = settings.data_dir / "gates" / "runs" / f"{candidate_id}-vs-{baseline_id}-" \
        f"{ref.content_hash.removeprefix('sha256:')[:12]}"
    runner = GateRunner(config)
    traces = [asyncio.run(runner.run(arm, calls, runs / f"{arm.arm}.jsonl", progress=progress))
              for arm in arms]
    bundle = build_bundle(
        bundle_id=bundle_id or f"gb-{uuid.uuid4().hex[:12]}", task_id=task, golden_set=ref,
        calls=calls, candidate=traces[0], baseline=traces[1], thresholds=gates,
        evaluated_at=datetime.now(UTC))
    report, digest = write_reports(bundle, settings.data_dir)
    event = GateEvaluated.from_bundle(
        bundle, report_path=str(report.relative_to(settings.data_dir)), report_hash=digest,
        evaluated_by=actor)
    (report.parent / "gate-evaluated.json").write_text(event.model_dump_json(indent=2), "utf-8")
    if output == "json":
        _print_json(event.model_dump(mode="json"))
        return
    _show_bundle(bundle)
    console.print(f"reports: {report.parent}/report.md, report.html, bundle.json")
    console.print(f"event payload: {report.parent}/gate-evaluated.json")


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
