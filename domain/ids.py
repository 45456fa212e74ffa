"""Deterministic aggregate identities.

Tasks, tenants, blueprints and releases are addressed by human keys (``csat-scoring``,
``acme``, ``csat-scoring`` v3). Deriving the aggregate id from the key with UUIDv5 means two
concurrent creations of the same key collide on the same id, so the event store's optimistic
concurrency rejects one of them instead of silently creating a twin.
"""

import re
from uuid import UUID, uuid5

NAMESPACE = UUID("6f1d9a52-3c1e-4a55-9f57-9a1c5b0e7d21")

KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def check_key(kind: str, key: str) -> str:
    """Return ``key`` if it is a valid identifier, else raise a ValidationError."""
    from relctl.domain.errors import ValidationError

    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ValidationError(
            f"invalid {kind} key {key!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return key


def task_id(task: str) -> UUID:
    return uuid5(NAMESPACE, f"task:{task}")


def tenant_id(tenant: str) -> UUID:
    return uuid5(NAMESPACE, f"tenant:{tenant}")


def blueprint_id(name: str) -> UUID:
    return uuid5(NAMESPACE, f"blueprint:{name}")


def release_id(task: str, version: int) -> UUID:
    return uuid5(NAMESPACE, f"release:{task}:{version}")
