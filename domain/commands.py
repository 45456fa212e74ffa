"""The commands' inputs: what a person (or a client) sends to change the control plane.

Frozen pydantic models, one per command, owned by the domain so the HTTP API's request bodies
and the published JSON Schemas (``command.<name>.json``) are the same contract. Field types
state what can be stated in a schema (patterns, lengths, ranges, enums, strict booleans and
integers); rules across fields (weights summing to 100, increasing steps, no model alias) stay
in the aggregates and answer 422 with a message that names the field.
"""

from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
)
from relctl.domain.base import MAX_NAME_LENGTH, JsonObject, Key, Name, Reason, _name_ok
from relctl.domain.blueprint import Stages
from relctl.domain.gates import GateEvaluated, GateThreshold, StepAcknowledgement
from relctl.domain.golden import MAX_GOLDEN_ROWS, GoldenCall
from relctl.domain.golden import Name as GoldenName
from relctl.domain.guards import GuardRule
from relctl.domain.release import ReleaseSpec, Stage
from relctl.domain.rollout import MAX_EVIDENCE_BYTES, MAX_STEPS
from relctl.domain.tenant import (
    DEFAULT_PIN_DAYS,
    MAX_OVERRIDE_LENGTH,
    MAX_PIN_DAYS,
    Cohort,
    OverrideKind,
)

MAX_NUMBER = 2**31


def _integral(value: Any) -> Any:
    """JSON Schema's integers include 1.0; text and booleans are not numbers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[StrictInt, BeforeValidator(_integral)]
Number = Annotated[Integer, Field(ge=1, le=MAX_NUMBER)]


# A display name may be empty (the CLI sends "" for "use the key").
DisplayName = Annotated[str, Field(max_length=MAX_NAME_LENGTH,
                                   pattern=r"^[^\x00-\x1f\x7f-\x9f]*$"),
                        AfterValidator(_name_ok)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    reason: Reason


class Versioned(Body):
    expected_version: Integer | None = Field(
        None, ge=0, le=MAX_NUMBER,
        description="refuse with 409 unless the aggregate is still at this version")


# ---- releases ------------------------------------------------------------------------------

class CreateRelease(Body):
    task: Key
    spec: ReleaseSpec


class ReviseRelease(Versioned):
    spec: ReleaseSpec


class Promote(Versioned):
    stage: Stage


class SetDefault(Body):
    release: Number


# ---- blueprints ----------------------------------------------------------------------------

class CreateBlueprint(Body):
    name: Key
    stages: Stages


class UpdateBlueprint(Versioned):
    stages: Stages


class Confirm(Body):
    stage: Name
    behaviour: Name


class Publish(Versioned):
    pass


# ---- tenants -------------------------------------------------------------------------------

class RegisterTenant(Body):
    key: Key
    name: DisplayName | None = Field(None, description="display name (default: the key)")
    cohort: Cohort = Cohort.GENERAL


class MoveTenant(Body):
    cohort: Cohort


class FlipFlag(Body):
    enabled: StrictBool = Field(description="true or false (JSON booleans only)")


class SetOverride(Body):
    task: Key
    kind: OverrideKind
    value: str = Field(min_length=1, max_length=MAX_OVERRIDE_LENGTH)
    base_release: Number | None = None


class ClearOverride(Body):
    task: Key
    kind: OverrideKind


class Pin(Body):
    task: Key
    release: Number
    days: Integer = Field(DEFAULT_PIN_DAYS, ge=1, le=MAX_PIN_DAYS)


class Unpin(Body):
    task: Key


class Reset(Body):
    task: Key | None = Field(None, description="one task, or every task when absent")


# ---- rollouts ------------------------------------------------------------------------------

Percent = Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)]


def _typed_rules(rules: Any) -> Any:
    """Refuse a rule whose metric is not text before GuardRule's membership test sees it."""
    if isinstance(rules, list):
        for rule in rules:
            if isinstance(rule, dict) and not isinstance(rule.get("metric", ""), str):
                raise ValueError("a guard rule's metric is the name of a metric (text)")
    return rules


class PlanRollout(Body):
    task: Key
    candidate: Number
    baseline: Number | None = Field(None, description="default: the task's default release")
    steps: Annotated[list[Percent] | list[Cohort], Field(min_length=1, max_length=MAX_STEPS)] \
        | None = Field(None, description="strictly increasing percentages ending at 100, or "
                                         "cohorts in order ending at 'general'")
    guard_rules: Annotated[list[GuardRule] | None, BeforeValidator(_typed_rules)] = Field(
        None, max_length=50)
    shadow: StrictBool = False


class RolloutCommand(Versioned):
    """Start, advance, resume or complete a rollout: a reason, optionally the version."""


class WithEvidence(Versioned):
    """Pause, freeze or roll back a rollout, with the evidence the decision is based on."""

    evidence: JsonObject | None = Field(
        None, description=f"what the decision is based on; at most {MAX_EVIDENCE_BYTES} bytes")


# Every command's input, by command name (the published schemas are command.<name>.json).
COMMAND_BODIES: dict[str, type[BaseModel]] = {
    "create_release": CreateRelease, "revise_release": ReviseRelease,
    "promote_release": Promote, "set_default_release": SetDefault,
    "create_blueprint": CreateBlueprint, "update_blueprint": UpdateBlueprint,
    "confirm_critical": Confirm, "publish_blueprint": Publish,
    "register_tenant": RegisterTenant, "move_tenant": MoveTenant, "flip_flag": FlipFlag,
    "set_override": SetOverride, "clear_override": ClearOverride, "pin": Pin, "unpin": Unpin,
    "reset_tenant": Reset, "plan_rollout": PlanRollout, "start_rollout": RolloutCommand,
    "advance_rollout": RolloutCommand, "resume_rollout": RolloutCommand,
    "complete_rollout": RolloutCommand, "pause_rollout": WithEvidence,
    "freeze_rollout": WithEvidence, "roll_back": WithEvidence,
}


# ---- release gates (new command bodies; the gated steps' fields) --------------------------

class GateFields(BaseModel):
    """What a gated step (passing InternalTest, starting a rollout) may carry."""

    acknowledgements: list[StepAcknowledgement] = Field(
        default_factory=list, max_length=50,
        description="accept failing Conditional gates of the deciding bundle, each with a reason")
    break_glass: Reason | None = Field(
        None, description="admins only: pass every gate anyway, for this reason (recorded in "
                          "the release's GatePassed event and the audit trail)")


class PromoteRelease(Promote, GateFields):
    """Move a release forward; passing InternalTest (to Beta or Stable) consults its gates."""


class StartRollout(RolloutCommand, GateFields):
    """Start a planned rollout; its candidate must pass its gates."""


class RegisterGoldenSet(Body):
    """A golden set content for a task: its rows (JSON Lines rows as objects, file order)."""

    name: GoldenName
    rows: list[GoldenCall] = Field(min_length=1, max_length=MAX_GOLDEN_ROWS)
    thresholds: list[GateThreshold] | None = Field(
        None, min_length=1, max_length=100,
        description="the gates bundles on this golden set must be decided with (the task's "
                    "gate policy); default: the standard gates")


class RecordGateEvaluation(Body):
    """A gate bundle computed by ``relctl gate run`` for the release in the path."""

    evaluation: GateEvaluated


class WaiveGates(Body):
    """Declare a task ungated (admins only): its releases need no gate evidence, and every
    passage they make names this waiver and its reason. A golden set registered later ends it."""


class WithdrawGateWaiver(Body):
    """Withdraw a task's gate waiver (admins only), with why: the task is gated again, so its
    gated steps are refused until a golden set is registered (or it is waived again). The
    passages the waiver already allowed stay recorded as they were."""


COMMAND_BODIES.update({
    "promote_release": PromoteRelease, "start_rollout": StartRollout,
    "register_golden_set": RegisterGoldenSet, "record_gate_evaluation": RecordGateEvaluation,
    "waive_gates": WaiveGates, "withdraw_gate_waiver": WithdrawGateWaiver,
})
