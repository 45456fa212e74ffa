"""API tokens: create (admin), revoke (admin), who am I."""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from relctl.adapters.postgres import Principal, Role
from relctl.domain.base import Key, Name
from relctl.entrypoints.api.auth import TOKEN_CACHE_SECONDS, Authenticator
from relctl.entrypoints.api.common import AUTH_ERRORS, COMMAND_ERRORS
from relctl.infra.bootstrap import Runtime

logger = logging.getLogger(__name__)

ActorName = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")]


class CreateToken(BaseModel):
    model_config = ConfigDict(extra="forbid")
    actor: Name
    role: Role
    tenants: list[Key | Annotated[str, Field(pattern=r"^\*$")]] = Field(
        default_factory=list, max_length=1000,
        description="producers: the tenant keys it may write for, or '*'")


class CreatedToken(BaseModel):
    actor: str
    role: Role
    tenants: list[str]
    token: str = Field(description="shown once; only its digest is stored")


class Revoked(BaseModel):
    actor: str
    revoked: int
    note: str


class WhoAmI(BaseModel):
    actor: str
    role: Role
    tenants: list[str]


def tokens_router(runtime: Runtime, auth: Authenticator) -> APIRouter:
    router = APIRouter(tags=["auth"])
    admin = auth.role("admin")

    @router.post("/v1/tokens", status_code=201, response_model=CreatedToken,
                 responses=COMMAND_ERRORS)
    def create_token(body: CreateToken, who: Principal = admin) -> Any:
        token = runtime.tokens.create(body.actor, body.role.value, who.actor, tuple(body.tenants))
        logger.info("token created for %s (%s) by %s", body.actor, body.role, who.actor)
        return {"actor": body.actor, "role": body.role, "tenants": body.tenants, "token": token}

    @router.post("/v1/tokens/{actor}/revoke", response_model=Revoked, responses=COMMAND_ERRORS)
    def revoke_tokens(actor: ActorName, who: Principal = admin) -> Any:
        revoked = runtime.tokens.revoke(actor)
        logger.info("%d token(s) of %s revoked by %s", revoked, actor, who.actor)
        return {"actor": actor, "revoked": revoked,
                "note": f"cached authentications expire within {TOKEN_CACHE_SECONDS:g} s"}

    @router.get("/v1/whoami", response_model=WhoAmI, responses=AUTH_ERRORS)
    def whoami(who: Principal = Depends(auth.principal)) -> Any:
        return {"actor": who.actor, "role": who.role, "tenants": list(who.tenants)}

    return router
