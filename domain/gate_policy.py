"""A task's gate policy: whether its gated steps need evidence, and who said otherwise.

Evidence is the price of production: a task's releases pass InternalTest or start a rollout only
on a gate bundle, so a task *without* a golden set is not let through by default — it is
``Required`` and refused until one is registered. The single way out is explicit and recorded:
an admin declares the task ungated with a reason (``Task.GatesWaived``), and every passage it
then allows names that waiver, so the audit trail says who decided that no evidence was needed.
An admin may withdraw the waiver (``Task.GateWaiverWithdrawn``, with a reason): the task is
``Required`` again, and the passages the waiver already allowed stay as they were recorded.
"""

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from relctl.domain.errors import ForbiddenError

WAIVER_ROLE = "admin"


class GatePolicy(StrEnum):
    """How a task's gated steps are decided."""

    REQUIRED = "required"  # no golden set yet: every gated step is refused (break-glass aside)
    GOLDEN_SET = "golden_set"  # the newest bundle on the current golden set decides
    WAIVED = "waived"  # an admin declared the task ungated (GatesWaived), with a reason


class GateWaiver(BaseModel):
    """An admin's recorded choice that a task's releases need no gate evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: str = Field(min_length=1)
    role: str
    reason: str = Field(min_length=3)


def check_waiver_role(role: str, what: str = "declaring a task ungated") -> None:
    """Only an admin may take a task out of the gates (or put it back by withdrawing the
    waiver), like only an admin may break glass."""
    if role != WAIVER_ROLE:
        raise ForbiddenError(f"{what} needs the {WAIVER_ROLE} role, not {role}")


def how_to_gate(task: str, number: int | str) -> str:
    """What a person refused for lack of a golden set can do about it."""
    return (f"task {task} has no golden set registered, so there is no evidence for it. "
            f"Register one (relctl gate golden register FILE --name NAME --task {task} -r "
            f"REASON), then record a passing bundle (relctl gate run --task {task} --release "
            f"{number} --endpoint FILE); or an admin may declare the task ungated (relctl gate "
            f"waive --task {task} -r REASON) or break glass for this step")
