"""The trace contract: what an evaluation says ran must be what its release is.

A record is stamped with a release number, and the guard counts it as evidence for that release.
If the prompt, the concrete model, the sampling parameters or the blueprint version it reports
differ from the numbered release, the evidence is about something else: typically a model that
changed under a stable alias, or a producer running a stale prompt. Such a record is a
trace-contract violation: it is counted per release and alerted on, and it is not evidence for
the release it claims. Optional fields the record leaves out (``blueprint_version_id``) are not
compared: the record schema does not require them, so their absence is not a contradiction.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class TraceField(StrEnum):
    PROMPT_HASH = "prompt_hash"
    MODEL_PROVIDER = "model_provider"
    MODEL_VERSION = "model_version"
    TEMPERATURE = "temperature"
    SEED = "seed"
    BLUEPRINT_VERSION = "blueprint_version_id"


@dataclass(frozen=True)
class ReleaseTrace:
    """What a numbered release runs, as its Drafted or Revised event recorded it."""

    prompt_hash: str
    model_provider: str
    model_version: str
    temperature: float
    seed: int
    blueprint_version_id: str | None = None

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> "ReleaseTrace":
        content = data["content"]
        return cls(prompt_hash=str(data["prompt_hash"]),
                   model_provider=str(content["model_provider"]),
                   model_version=str(content["model_version"]),
                   temperature=float(content["temperature"]), seed=int(content["seed"]),
                   blueprint_version_id=content.get("blueprint_version_id"))


def violations(record: Any, trace: ReleaseTrace) -> tuple[TraceField, ...]:
    """The fields in which ``record`` contradicts its release (empty when it honours it)."""
    found = []
    if record.prompt_hash != trace.prompt_hash:
        found.append(TraceField.PROMPT_HASH)
    if record.model_provider != trace.model_provider:
        found.append(TraceField.MODEL_PROVIDER)
    if record.model_version != trace.model_version:
        found.append(TraceField.MODEL_VERSION)
    if not math.isclose(record.temperature, trace.temperature, rel_tol=0, abs_tol=1e-9):
        found.append(TraceField.TEMPERATURE)
    if record.seed != trace.seed:
        found.append(TraceField.SEED)
    if record.blueprint_version_id is not None \
            and record.blueprint_version_id != trace.blueprint_version_id:
        found.append(TraceField.BLUEPRINT_VERSION)
    return tuple(found)


def describe(record: Any, trace: ReleaseTrace, fields: tuple[TraceField, ...]) -> str:
    """A reason a producer can act on: each contradicting field, reported and expected."""
    parts = [f"{name} {getattr(record, name)!r} (release has {getattr(trace, name)!r})"
             for name in fields]
    return (f"trace contract: the record claims {record.task} v{record.release} but ran "
            + "; ".join(parts))
