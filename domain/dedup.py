"""Evaluation identity and the compact evidence rows the guard de-duplicates on.

An evaluation's identity is (tenant, task, call id, arm, release): a producer that retries a
record, a broker that redelivers it and a worker that re-processes it after a crash all present
the same identity again, and the guard must count it once. Identities are kept as 64-bit
BLAKE2b hashes (8 bytes each instead of the ~60 characters of the key). Two different
evaluations of one scope collide with probability about n² / 2⁶⁵ for n identities held
(n = 1 million: 2.7e-8); a collision makes the guard treat the second one as a duplicate.

Stage 1 turns each validated record into an :class:`Evidence` row: exactly the fields the
window statistics read, plus the identity hash (and, for scored production or shadow runs,
the hash of the call, so stage 2 can pair the two arms). Stage 2 folds only rows whose identity
it has not seen. Shipping rows instead of pre-folded statistics is what makes that exact: a
folded aggregate cannot have one duplicate taken out of it again.
"""

import hashlib
from typing import Any, NamedTuple

# Separator that no tenant, task or arm can contain (they are keys or literals); the free-text
# call id goes last, so the encoding is unambiguous.
_SEP = "\x1f"
PAIRED_ARMS = ("production", "shadow")


def _hash64(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def evidence_key(tenant: str, task: str, call_id: str, arm: str, release: int) -> int:
    """The 64-bit identity of one evaluation (signed, so it packs as an int64)."""
    return _hash64(f"{tenant}{_SEP}{task}{_SEP}{arm}{_SEP}{release}{_SEP}{call_id}")


def call_key(tenant: str, task: str, call_id: str) -> int:
    """The 64-bit identity of one call, shared by its production and shadow runs."""
    return _hash64(f"{tenant}{_SEP}{task}{_SEP}{call_id}")


def pair_key(call: int, shadow_release: int) -> int:
    """The identity of one shadow pair (a call's shadow run compared with its production run)."""
    return _hash64(f"pair{_SEP}{call}{_SEP}{shadow_release}")


class Evidence(NamedTuple):
    """What one evaluation contributes to a window: the attributes ``WindowStats.add`` reads,
    its identity ``key``, and ``call`` (set for scored production and shadow runs only).

    A named tuple, because stage 2 builds one per evaluation from the wire: its fields are
    the wire's array in order, minus ``arm``, which the partial's cell already names."""

    key: int
    call: int | None
    arm: str
    outcome: str
    fallback_used: bool
    schema_valid: bool
    repaired: bool
    human_review_requested: bool
    tokens: int
    cost_usd: float
    latency_ms: float
    queue_wait_ms: float
    queue_depth: int | None
    confidence: float | None
    score: float | None
    human_score: float | None
    categories: dict[str, str]
    human_categories: dict[str, str] | None
    critical_detections: list[str]
    human_critical: list[str] | None

    @classmethod
    def of(cls, record: Any) -> "Evidence":
        """The row of a validated EvaluationRecord."""
        scored = record.score is not None and record.arm in PAIRED_ARMS
        return tuple.__new__(cls, (  # what cls(...) does, without its Python-level __new__
            evidence_key(record.tenant, record.task, record.call_id, record.arm,
                         record.release),
            call_key(record.tenant, record.task, record.call_id) if scored else None,
            record.arm, record.outcome, record.fallback_used, record.schema_valid,
            record.repaired, record.human_review_requested, record.tokens, record.cost_usd,
            record.latency_ms, record.queue_wait_ms, record.queue_depth, record.confidence,
            record.score, record.human_score, record.categories, record.human_categories,
            record.critical_detections, record.human_critical,
        ))

    def encode(self) -> list[Any]:
        """The wire form: a JSON array of the fields in order, without ``arm``."""
        row = list(self)
        del row[2]
        return row

    @classmethod
    def decode(cls, arm: str, row: list[Any]) -> "Evidence":
        if len(row) != len(cls._fields) - 1:
            raise ValueError(f"an evidence row has {len(cls._fields) - 1} fields, not {len(row)}")
        return cls(row[0], row[1], arm, *row[2:])
