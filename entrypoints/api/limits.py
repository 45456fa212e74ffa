"""Limits on what a request may carry, checked before any endpoint sees it.

A pure ASGI middleware: it refuses an over-long body with 413 from its Content-Length before
reading it (or as soon as a chunked body passes the limit), and refuses a JSON body that is not
UTF-8, not JSON, nested too deep, or carries numbers no consumer can read, with one clear error
in relctl's shape. Paths and query strings with control characters or invalid Unicode are
refused too. ``/v1/evaluations`` keeps its own, larger limit (see ingest.py).
"""

import json
from typing import Any
from urllib.parse import parse_qsl, unquote_to_bytes

from relctl.domain.base import INT64, json_depth_exceeds, text_problem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_COMMAND_BODY_BYTES = 512 * 1024
MAX_BODY_DEPTH = 64
MAX_INTEGER_DIGITS = 20
UNLIMITED_PATHS = ("/v1/evaluations",)
# Artifacts, not commands: a golden set of a few thousand calls, or a gate bundle with its
# metrics, is megabytes. They get their own, larger limit.
MAX_ARTIFACT_BODY_BYTES = 32 * 1024 * 1024
ARTIFACT_PATH_ENDINGS = ("/golden-sets", "/gate-evaluations")


class RefusedError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise RefusedError(422, "validation_error", f"an integer of {len(text)} digits: numbers "
                      "must fit in 64 bits")
    value = int(text)
    if not INT64[0] <= value <= INT64[1]:
        raise RefusedError(422, "validation_error", f"integer {value} does not fit in 64 bits")
    return value


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise RefusedError(422, "validation_error",
                      f"number {text[:40]} is out of range: numbers must be finite")
    return value


def _constant(text: str) -> Any:
    raise RefusedError(422, "validation_error", f"{text} is not JSON: numbers must be finite")


def check_json_body(body: bytes) -> None:
    """Refuse a body that is not UTF-8 JSON a consumer can read back; accept an empty one."""
    if not body.strip():
        return
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RefusedError(400, "bad_request",
                           f"the body is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise RefusedError(422, "validation_error",
                      f"the body is nested more than {MAX_BODY_DEPTH} levels deep") from None
    except json.JSONDecodeError as exc:
        raise RefusedError(400, "bad_request", f"the body is not valid JSON: {exc.msg} at line "
                      f"{exc.lineno} column {exc.colno}") from None
    if json_depth_exceeds(value, MAX_BODY_DEPTH):
        raise RefusedError(422, "validation_error",
                      f"the body is nested more than {MAX_BODY_DEPTH} levels deep")
    _check_strings(value)


def _check_strings(value: Any) -> None:
    stack: list[tuple[Any, str]] = [(value, "body")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = text_problem(item, multiline=True)
            if "\x00" in item or (problem and problem.startswith("is not valid")):
                raise RefusedError(422, "validation_error", f"{where}: text must be valid "
                                   "Unicode without NUL (no lone surrogate escape such as "
                                   "\\ud800)")
        elif isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, f"{where} (a key)"))
                stack.append((child, f"{where}.{key}"[:200]))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]"[:200]) for i, child in enumerate(item))


def check_target(scope: Scope) -> None:
    """Refuse control characters and invalid Unicode in the path and the query string."""
    raw = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
    try:
        path = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise RefusedError(400, "bad_request", "the path is not UTF-8") from None
    if text_problem(path):
        raise RefusedError(422, "validation_error", f"the path {text_problem(path)}")
    query = scope.get("query_string", b"")
    try:
        pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="utf-8",
                          errors="strict")
    except UnicodeDecodeError:
        raise RefusedError(400, "bad_request", "the query string is not UTF-8") from None
    for key, value in pairs:
        problem = text_problem(key) or text_problem(value)
        if problem:
            raise RefusedError(422, "validation_error", f"query parameter {key!r} {problem}")


class RequestLimits:
    def __init__(self, app: ASGIApp, max_body: int = MAX_COMMAND_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: PLR0911 - each refusal returns
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
        except RefusedError as refused:
            await _refuse(send, refused)
            return
        if scope["path"].startswith(UNLIMITED_PATHS) or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        limit = (max(self.max_body, MAX_ARTIFACT_BODY_BYTES)
                 if scope["path"].rstrip("/").endswith(ARTIFACT_PATH_ENDINGS) else self.max_body)
        if declared.isdigit() and int(declared) > limit:
            await _refuse(send, RefusedError(413, "payload_too_large", f"the body is "
                          f"{int(declared)} bytes; the limit for this request is {limit}"))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _refuse(send, RefusedError(413, "payload_too_large", f"the body exceeds the "
                              f"{limit}-byte limit for this request"))
                return
        content_type = headers.get(b"content-type", b"application/json").lower()
        if b"json" in content_type:
            try:
                check_json_body(bytes(body))
            except RefusedError as refused:
                await _refuse(send, refused)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, refused: RefusedError) -> None:
    payload = json.dumps({"error": {"code": refused.code, "message": refused.message}}).encode()
    await send({"type": "http.response.start", "status": refused.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": payload})
