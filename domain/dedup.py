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
from dataclasses import dataclass
from typing import Any

# Separator that no tenant, task or arm can contain (they are keys or literals); the free-text
# call id goes last, so the encoding is unambiguous.
_SEP = "\x1f"
OUTCOMES = ("ok", "llm_error", "timeout", "transcription_error")
_OUTCOME_CODE = {name: code for code, name in enumerate(OUTCOMES)}
FALLBACK, SCHEMA_INVALID, REPAIRED, HUMAN_REVIEW = 1, 2, 4, 8
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


@dataclass(slots=True)
class Evidence:
    """What one evaluation contributes to a window: the attributes ``WindowStats.add`` reads,
    its identity ``key``, and ``call`` (set for scored production and shadow runs only)."""

    key: int
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
    call: int | None = None

    @classmethod
    def of(cls, record: Any) -> "Evidence":
        """The row of a validated EvaluationRecord."""
        scored = record.score is not None and record.arm in PAIRED_ARMS
        return cls(
            key=evidence_key(record.tenant, record.task, record.call_id, record.arm,
                             record.release),
            arm=record.arm, outcome=record.outcome, fallback_used=record.fallback_used,
            schema_valid=record.schema_valid, repaired=record.repaired,
            human_review_requested=record.human_review_requested, tokens=record.tokens,
            cost_usd=record.cost_usd, latency_ms=record.latency_ms,
            queue_wait_ms=record.queue_wait_ms, queue_depth=record.queue_depth,
            confidence=record.confidence, score=record.score, human_score=record.human_score,
            categories=record.categories, human_categories=record.human_categories,
            critical_detections=record.critical_detections,
            human_critical=record.human_critical,
            call=call_key(record.tenant, record.task, record.call_id) if scored else None,
        )

    def encode(self) -> list[Any]:
        """A compact JSON array (positional; flags packed into one integer)."""
        flags = (FALLBACK * self.fallback_used) | (SCHEMA_INVALID * (not self.schema_valid)) \
            | (REPAIRED * self.repaired) | (HUMAN_REVIEW * self.human_review_requested)
        return [self.key, self.call, _OUTCOME_CODE[self.outcome], flags, self.tokens,
                self.cost_usd, self.latency_ms, self.queue_wait_ms, self.queue_depth,
                self.confidence, self.score, self.human_score, self.categories or None,
                self.human_categories, self.critical_detections or None, self.human_critical]

    @classmethod
    def decode(cls, arm: str, row: list[Any]) -> "Evidence":
        (key, call, outcome, flags, tokens, cost, latency, queue_wait, queue_depth, confidence,
         score, human_score, categories, human_categories, critical, human_critical) = row
        return cls(
            key=int(key), arm=arm, outcome=OUTCOMES[int(outcome)],
            fallback_used=bool(flags & FALLBACK), schema_valid=not flags & SCHEMA_INVALID,
            repaired=bool(flags & REPAIRED), human_review_requested=bool(flags & HUMAN_REVIEW),
            tokens=int(tokens), cost_usd=float(cost), latency_ms=float(latency),
            queue_wait_ms=float(queue_wait), queue_depth=queue_depth, confidence=confidence,
            score=score, human_score=human_score, categories=categories or {},
            human_categories=human_categories, critical_detections=critical or [],
            human_critical=human_critical, call=None if call is None else int(call),
        )
