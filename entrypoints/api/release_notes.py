"""Release notes for tenant admins, generated from the read models (Markdown or JSON)."""

from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from relctl.adapters.postgres import Principal
from relctl.adapters.verdicts import VerdictBoard
from relctl.domain.release_notes import ReleaseNotes, to_markdown
from relctl.entrypoints.api.auth import READERS, Authenticator
from relctl.entrypoints.api.common import READ_ERRORS
from relctl.entrypoints.api.read import READ_WAIT_SECONDS
from relctl.infra.bootstrap import Runtime
from relctl.projections import queries
from relctl.projections.release_notes import release_notes

KEY = r"^[a-z0-9][a-z0-9._-]{0,62}$"


class NotesFormat(StrEnum):
    JSON = "json"
    MARKDOWN = "markdown"


def release_notes_router(runtime: Runtime, auth: Authenticator,
                         wait_seconds: float = READ_WAIT_SECONDS) -> APIRouter:
    router = APIRouter(tags=["read models"])
    db, app = runtime.db, runtime.app
    verdicts = VerdictBoard(db)

    @router.get("/v1/read/release-notes", response_model=ReleaseNotes, responses={
        **READ_ERRORS, 200: {"description": "the notes (JSON, or Markdown with "
                                            "format=markdown)",
                             "content": {"application/json": {}, "text/markdown": {}}}})
    def notes(task: Annotated[str, Query(pattern=KEY, max_length=63)],
              release: Annotated[int, Query(ge=1, le=2**31)],
              tenant: Annotated[str | None, Query(pattern=KEY, max_length=63)] = None,
              fmt: Annotated[NotesFormat, Query(alias="format")] = NotesFormat.JSON,
              _: Principal = auth.role(*READERS)) -> Any:
        """What changed in the release, why, its expected and measured effect on scores, what
        a tenant should do and how to opt out; with ``tenant``, whether it reaches them."""
        queries.wait_for_head(db, app, wait_seconds)
        found = release_notes(db, task, release, tenant, verdicts)
        if fmt is NotesFormat.MARKDOWN:
            response: Response = PlainTextResponse(to_markdown(found),
                                                   media_type="text/markdown")
            return response
        return found

    return router
