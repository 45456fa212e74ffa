"""Bearer-token authentication and role checks, as FastAPI dependencies."""

import asyncio
import time
from typing import Any

from fastapi import Depends, Header
from relctl.adapters.postgres import Principal, TokenStore
from relctl.application.service import ACTING_ROLE
from relctl.domain import errors

TOKEN_CACHE_SECONDS = 2.0
WRITERS = ("admin", "operator")
READERS = ("admin", "operator", "auditor")
RESOLVERS = ("admin", "operator", "auditor", "producer")
PRODUCERS = ("admin", "producer")


class Authenticator:
    """Resolves the bearer token to a Principal. A positive answer is cached for
    TOKEN_CACHE_SECONDS, which is therefore the longest a revoked token keeps working."""

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens
        self._cache: dict[str, tuple[Principal, float]] = {}

    async def principal(self, authorization: str | None = Header(None)) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise errors.UnauthorizedError(
                "missing bearer token: send 'Authorization: Bearer <token>' (relctl reads "
                "RELCTL_TOKEN)")
        token = authorization[7:].strip()
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = await asyncio.to_thread(self.tokens.authenticate, token)
        if found is None:
            self._cache.pop(token, None)
            raise errors.UnauthorizedError("unknown or revoked token")
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (found, now + TOKEN_CACHE_SECONDS)
        return found

    def role(self, *allowed: str) -> Any:
        """A dependency that admits only the given roles, and records the caller's role for
        the events of the command it then issues (``ACTING_ROLE``: the endpoint runs in a copy
        of this request's context)."""

        async def check(who: Principal = Depends(self.principal)) -> Principal:
            if who.role not in allowed:
                raise errors.ForbiddenError(
                    f"role {who.role} may not do this; it needs one of {', '.join(allowed)}")
            ACTING_ROLE.set(who.role)
            return who

        return Depends(check)
