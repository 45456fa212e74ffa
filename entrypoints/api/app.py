"""The HTTP API: the app factory, its routers, and errors in one shape.

Endpoints are thin: parse the body, check the caller's role, call the application layer, and
return the aggregate after the command. Domain errors become JSON errors with an HTTP status
that means what it says (422 invalid input, 409 conflict, 404 missing, 401/403 auth, 413 too
large, 503 down), and so does every error the framework raises (unknown path, wrong method,
unparsable body): ``{"error": {"code", "message"}}``, always.
"""

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from relctl.domain import errors
from relctl.entrypoints.api.alerts import alerts_router
from relctl.entrypoints.api.auth import Authenticator
from relctl.entrypoints.api.blueprints import blueprints_router
from relctl.entrypoints.api.common import STATUS
from relctl.entrypoints.api.gates import gates_router
from relctl.entrypoints.api.health import health_router
from relctl.entrypoints.api.ingest import error_response, ingest_router
from relctl.entrypoints.api.limits import RequestLimits
from relctl.entrypoints.api.read import read_router
from relctl.entrypoints.api.release_notes import release_notes_router
from relctl.entrypoints.api.releases import releases_router
from relctl.entrypoints.api.resolve import resolve_router
from relctl.entrypoints.api.rollouts import rollouts_router
from relctl.entrypoints.api.tenants import tenants_router
from relctl.entrypoints.api.tokens import tokens_router
from relctl.entrypoints.console.router import console_router
from relctl.infra.bootstrap import Runtime
from starlette.exceptions import HTTPException

logger = logging.getLogger(__name__)

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def _location(loc: tuple[object, ...]) -> str:
    return ".".join(str(x) for x in loc if x != "body") or "body"


def create_api(runtime: Runtime, on_change: Callable[[], None] = lambda: None) -> FastAPI:
    """Build the FastAPI app over a bootstrapped runtime; ``on_change`` wakes the relay."""
    api = FastAPI(title="relctl", version="0.1.0",
                  description="Release authority for AI evaluation pipelines. Every error is "
                              '`{"error": {"code", "message"}}`.')

    @api.exception_handler(errors.RelctlError)
    async def domain_error(_: Request, exc: errors.RelctlError) -> JSONResponse:
        return error_response(STATUS.get(type(exc), 400), exc.code, str(exc))

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "error")
        if exc.status_code == 404:
            message = f"no endpoint {request.url.path}; the API is described at /docs"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        elif exc.status_code == 400:
            message = "the request body could not be parsed as JSON"
        else:
            message = str(exc.detail)
        response = error_response(exc.status_code, code, message)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @api.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error",
                              "relctl failed to handle this request; the error is in its log")

    @api.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(400, "bad_request", "request body is not valid JSON")
        detail = "; ".join(f"{_location(tuple(p.get('loc', ())))}: {p.get('msg')}"
                           for p in problems[:10])
        return error_response(422, "validation_error", f"invalid request: {detail}")

    auth = Authenticator(runtime.tokens)
    api.include_router(health_router(runtime))
    api.include_router(tokens_router(runtime, auth))
    api.include_router(releases_router(runtime, auth, on_change))
    api.include_router(blueprints_router(runtime, auth, on_change))
    api.include_router(tenants_router(runtime, auth, on_change))
    api.include_router(rollouts_router(runtime, auth, on_change))
    api.include_router(gates_router(runtime, auth, on_change))
    api.include_router(resolve_router(runtime, auth))
    api.include_router(ingest_router(runtime, auth))
    api.include_router(read_router(runtime, auth))
    api.include_router(alerts_router(runtime, auth))
    api.include_router(release_notes_router(runtime, auth))
    api.include_router(console_router(runtime, auth))
    api.add_middleware(RequestLimits)
    return api
