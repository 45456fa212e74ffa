"""Automatic decisions from the guard workers, executed on the operators' command path.

The guard publishes ``rollback``, ``freeze`` or ``pause`` commands to ``relctl.commands`` (keyed
by rollout, CloudEvents binary mode, id = the decision id). The control plane consumes them in
its consumer group and calls the same application methods an operator's request does, so the
decision is validated, idempotent and audited alike. Only those three actions are accepted from
the topic, always attributed to the fixed actor ``relctl-guard`` (the topic cannot be used to
impersonate a person); a malformed command goes to the dead-letter topic with the reason.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import orjson
from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter
from relctl.adapters import hop_trace
from relctl.adapters.cloudevents import dead_letter, decision_record
from relctl.adapters.config import Settings
from relctl.adapters.fetch_wait import AdaptiveFetchWait, Quiet
from relctl.adapters.kafka import make_producer
from relctl.adapters.retrying import fixed, retry_forever
from relctl.application.service import ControlPlane, acting_as
from relctl.domain import errors
from relctl.domain.guards import GUARD_ACTOR, GUARD_ROLE, DecisionAction
from relctl.domain.hops import Hop

logger = logging.getLogger(__name__)

# The actions a command may carry: every decision but ``alert`` (which only alerts).
ACTIONS = (DecisionAction.ROLLBACK, DecisionAction.FREEZE, DecisionAction.PAUSE)
_ACTION_VALUES = tuple(action.value for action in ACTIONS)
# A member holding one partition waits this long per fetch once idle. A probe of the embedded
# broker answered single-partition fetches on arrival even with long waits, but breach ->
# rollback through `relctl up` said otherwise: with 1,000 ms here p50/p99 were 119/540 ms
# against 50/76 ms with 50 ms (bench_latency, 30 trials each, back to back, quiet machine).
IDLE_WAIT_MS = 50
EXECUTED = Counter("relctl_automatic_commands_total", "Automatic decisions handled",
                   ["action", "result"])


def command_record(command: dict[str, Any]) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a decision on ``relctl.commands`` (see
    :func:`relctl.adapters.cloudevents.decision_record`)."""
    return decision_record(command)


def parse_command(value: bytes) -> dict[str, Any]:
    """Validate a command; raises ValidationError with the reason."""
    try:
        command = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise errors.ValidationError(f"command is not valid JSON: {exc}") from None
    if not isinstance(command, dict):
        raise errors.ValidationError("command must be a JSON object")
    if command.get("action") not in _ACTION_VALUES:
        raise errors.ValidationError(f"action must be one of {_ACTION_VALUES}")
    try:
        UUID(str(command.get("rollout_id")))
    except ValueError:
        raise errors.ValidationError("rollout_id must be a UUID") from None
    if not isinstance(command.get("reason"), str) or not command["reason"].strip():
        raise errors.ValidationError("a command needs a reason")
    if not isinstance(command.get("decision_id"), str):
        raise errors.ValidationError("a command needs a decision_id")
    if command.get("evidence") is not None and not isinstance(command["evidence"], dict):
        raise errors.ValidationError("evidence must be an object")
    return command


def execute(app: ControlPlane, command: dict[str, Any]) -> dict[str, Any]:
    rollout_id = UUID(command["rollout_id"])
    reason = f"automatic: {command['reason']}"
    evidence = command.get("evidence")
    method = {DecisionAction.ROLLBACK: app.roll_back, DecisionAction.FREEZE: app.freeze_rollout,
              DecisionAction.PAUSE: app.pause_rollout}[DecisionAction(command["action"])]
    with acting_as(GUARD_ROLE):
        return dict(method(rollout_id, GUARD_ACTOR, reason, evidence=evidence))


class CommandConsumer:
    def __init__(self, app: ControlPlane, settings: Settings,
                 on_change: Callable[[], None] = lambda: None, quiet: Quiet | None = None
                 ) -> None:
        assert settings.kafka_bootstrap
        self.app = app
        self.settings = settings
        self.on_change = on_change
        # Told whether any rollout is guarded; while none is, idle members fetch rarely.
        self.quiet = quiet

    async def _dead_letter(self, producer: Any, value: bytes, reason: str) -> None:
        key, value, headers = dead_letter(value, reason, self.settings.topic("commands"))
        await producer.send_and_wait(self.settings.topic("dlq"), key=key, value=value,
                                     headers=headers)

    async def handle(self, producer: Any, value: bytes, fetched: float | None = None) -> None:
        try:
            command = parse_command(value)
        except errors.ValidationError as exc:
            EXECUTED.labels("invalid", "dead_letter").inc()
            await self._dead_letter(producer, value, str(exc))
            return
        hop_trace.mark(Hop.COMMAND_CONSUMED, str(command["rollout_id"]), fetched)
        try:
            result = await asyncio.to_thread(execute, self.app, command)
        except (errors.ConflictError, errors.NotFoundError) as exc:
            EXECUTED.labels(command["action"], "refused").inc()
            logger.info("automatic %s of %s refused: %s", command["action"],
                        command["rollout_id"], exc)
            return
        hop_trace.mark(Hop.COMMAND_EXECUTED, str(command["rollout_id"]))
        outcome = "recorded" if result.get("changed") else "no_op"
        EXECUTED.labels(command["action"], outcome).inc()
        logger.warning("automatic %s of rollout %s: %s (%s)", command["action"],
                       command["rollout_id"], outcome, command["reason"])
        self.on_change()

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``; offsets are committed only after a command was handled.

        One group member per partition of the topic (``command_partitions``), so that each
        member's fetches name one partition: the embedded broker holds a fetch naming several
        partitions. The topic has one partition by default: decisions are rare, and on the
        embedded broker four members (one per partition, the earlier default) delivered a
        decision later than one (``bench_latency``, isolated: decision acked -> consumed
        p90 17-22 ms with four, 5.6-5.9 ms with one; README, "Breach to rollback"), and each
        idle member costs its own empty fetches. A second control plane joins the same group
        as a standby (or shares the partitions, if there are several). Commands of one rollout
        share a partition (the key), so they are executed in order.

        Nothing may stop the control plane: a failed session is restarted after 1 s (offsets
        are not committed for an unhandled command, so it is consumed again)."""

        def restarting(exc: BaseException, _: float) -> None:
            logger.warning("command consumer restarting after: %r", exc)

        members = max(1, self.settings.command_partitions)
        await asyncio.gather(*(
            retry_forever(lambda: self._session(stop), fixed(1.0), stop, restarting)
            for _ in range(members)))

    async def _session(self, stop: asyncio.Event) -> None:
        """One member's session, until ``stop`` or an error. Its fetch wait is short while
        commands flow; once idle, :data:`IDLE_WAIT_MS` while it holds one partition, else
        ``fetch_idle_wait_ms`` (a decision is the last hop of breach -> rollback, and on a
        broker that holds multi-partition fetches it pays up to that wait)."""
        consumer = AIOKafkaConsumer(
            self.settings.topic("commands"), bootstrap_servers=self.settings.kafka_bootstrap,
            group_id=f"{self.settings.topic_prefix}-control-commands",
            enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=self.settings.fetch_max_wait_ms,
            session_timeout_ms=6000, heartbeat_interval_ms=1000)
        producer = make_producer(self.settings.kafka_bootstrap or "")
        try:
            await consumer.start()
            AdaptiveFetchWait(self.settings.fetch_max_wait_ms, self.settings.fetch_idle_wait_ms,
                              single_idle_ms=IDLE_WAIT_MS, name="commands",
                              quiet=self.quiet, quiet_ms=self.settings.fetch_quiet_wait_ms
                              ).install(consumer)
            await producer.start()
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=500)
                fetched = time.time()
                for records in batch.values():
                    for record in records:
                        await self.handle(producer, record.value, fetched)
                if batch:
                    await consumer.commit()
        finally:
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await producer.stop()
