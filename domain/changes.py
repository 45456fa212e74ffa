"""Classifying a new release against the previous one ("new version = new task").

A change that can shift what downstream consumers read (output schema keys or types) or how a
call is scored (blueprint weights, critical rules) is breaking. A breaking change is refused as a
new version of the same task: it must become a new task (``csat-scoring-v2``) that tenants
migrate to when ready.
"""

import re
from typing import Any

from relctl.domain.blueprint import scoring_signature
from relctl.domain.release import ReleaseSpec, schema_signature


def breaking_changes(
    previous: ReleaseSpec | None, candidate: ReleaseSpec,
    previous_blueprint: dict[str, Any] | None, candidate_blueprint: dict[str, Any] | None,
) -> list[str]:
    if previous is None:
        return []
    reasons = []
    if schema_signature(previous.output_schema) != schema_signature(candidate.output_schema):
        reasons.append("output schema keys or types changed")
    if scoring_signature(previous_blueprint) != scoring_signature(candidate_blueprint):
        reasons.append("blueprint weights or critical rules changed")
    return reasons


def next_task_key(task: str) -> str:
    """Suggest the next task version key: csat-scoring -> csat-scoring-v2 -> csat-scoring-v3."""
    match = re.match(r"^(.*)-v(\d+)$", task)
    if match:
        return f"{match.group(1)}-v{int(match.group(2)) + 1}"
    return f"{task}-v2"
