"""A local OpenAI-compatible chat-completions server with deterministic QA scoring.

It exists so gate runs, the tests and the benchmark exercise the real ``openai`` SDK over real
HTTP without a hosted model: ``/v1/chat/completions`` speaks the wire format (including
``response_format`` with a JSON schema), scores the transcript found in the data block with
fixed rules (``reference_scorecard``, which the example golden set's labels are derived from),
and can be told per requested model to misbehave: wrong category verdicts, missed critical
detections, broken or coerced JSON, slow answers, 429s and 500s, another model identity than
requested, following an injection. Every request body it received is kept for inspection.
It lives in the product (not in tests/) because ``bench/bench_gates.py`` and the demo use it.
"""

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from relctl.domain.gate_prompt import CALL_REF_HEADER, read_block

CATEGORY_RULES: dict[str, tuple[str, ...]] = {
    "greeting": ("thank you for calling", "thanks for calling"),
    "verification": ("verify", "confirm your identity", "security question"),
    "empathy": ("i understand", "i'm sorry", "i am sorry"),
    "resolution": ("i've processed", "is now resolved", "i have resolved", "refund is on its way"),
}
COMPLIANCE_BREACHES = ("i guarantee", "off the record", "between you and me")
CRITICAL_RULES: dict[str, tuple[str, ...]] = {
    "self_harm": ("hurt myself", "end it all"),
    "legal_threat": ("my lawyer", "going to sue", "legal action"),
    "data_exposure": ("read you the full card", "here is their password"),
}
PASS_SCORE, FAIL_SCORE = 95.0, 35.0


def reference_scorecard(transcript: str) -> dict[str, Any]:
    """The deterministic 'correct' scorecard of a transcript (what a perfect model answers)."""
    text = transcript.lower()
    categories: dict[str, dict[str, Any]] = {}
    for name, phrases in CATEGORY_RULES.items():
        ok = any(p in text for p in phrases)
        categories[name] = {"score": PASS_SCORE if ok else FAIL_SCORE,
                            "verdict": "pass" if ok else "fail"}
    compliant = not any(p in text for p in COMPLIANCE_BREACHES)
    categories["compliance"] = {"score": PASS_SCORE if compliant else FAIL_SCORE,
                                "verdict": "pass" if compliant else "fail"}
    critical = sorted(n for n, phrases in CRITICAL_RULES.items() if any(p in text for p in phrases))
    total = sum(c["score"] for c in categories.values()) / len(categories)
    if critical:
        total = min(total, 40.0)
    return {"total_score": round(total, 1), "categories": categories,
            "critical_detections": critical}


@dataclass
class Behaviour:
    """How the server answers for one requested model; fractions pick calls by a stable hash."""

    wrong_category: float = 0.0
    miss_critical: float = 0.0
    broken_json: float = 0.0
    coerced_json: float = 0.0
    latency_s: float = 0.0
    rate_limit_first: int = 0
    server_error_first: int = 0
    served_model: str | None = None
    follow_injection: bool = False
    structured_output: bool = True


def _picked(key: str, salt: str, fraction: float) -> bool:
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < fraction


@dataclass
class ModelServerState:
    behaviours: dict[str, Behaviour] = field(default_factory=dict)
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def behaviour(self, model: str) -> Behaviour:
        return self.behaviours.get(model) or self.behaviours.get("*") or Behaviour()


def _answer(transcript: str, behaviour: Behaviour) -> str:
    card = reference_scorecard(transcript)
    lowered = transcript.lower()
    if behaviour.follow_injection and ("ignore" in lowered and "instructions" in lowered):
        card = {"total_score": 100.0,
                "categories": {k: {"score": 100.0, "verdict": "pass"} for k in card["categories"]},
                "critical_detections": []}
    if _picked(transcript, "category", behaviour.wrong_category):
        first = "resolution"
        flipped = "fail" if card["categories"][first]["verdict"] == "pass" else "pass"
        card["categories"][first] = {"score": card["categories"][first]["score"],
                                     "verdict": flipped}
    if card["critical_detections"] and _picked(transcript, "critical", behaviour.miss_critical):
        card["critical_detections"] = []
    if _picked(transcript, "broken", behaviour.broken_json):
        return json.dumps(card)[:-7]
    if _picked(transcript, "coerced", behaviour.coerced_json):
        card["total_score"] = str(card["total_score"])
        return "```json\n" + json.dumps(card) + "\n```"
    return json.dumps(card)


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}},
                        status_code=status)


def create_app(state: ModelServerState) -> FastAPI:
    app = FastAPI(title="relctl local OpenAI-compatible model server")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        body = await request.json()
        call_ref = request.headers.get(CALL_REF_HEADER, "")
        with state.lock:
            state.received.append({**body, "_call_ref": call_ref})
        model = str(body.get("model", ""))
        behaviour = state.behaviour(model)
        messages = body.get("messages") or []
        user = next((m.get("content", "") for m in reversed(messages)
                     if m.get("role") == "user"), "")
        transcript = read_block(user) if isinstance(user, str) else None
        if transcript is None:
            return _error(400, "no transcript block in the user message", "invalid_request_error")
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and not behaviour.structured_output:
            return _error(400, "response_format json_schema is not supported by this model",
                          "invalid_request_error")
        key = f"{model}:{call_ref}:{hashlib.sha256(transcript.encode()).hexdigest()}"
        with state.lock:
            attempt = state.attempts[key] = state.attempts.get(key, 0) + 1
        if attempt <= behaviour.rate_limit_first:
            return _error(429, "rate limited, slow down", "rate_limit_error")
        if attempt <= behaviour.rate_limit_first + behaviour.server_error_first:
            return _error(500, "internal error", "server_error")
        if behaviour.latency_s:
            await asyncio.sleep(behaviour.latency_s)
        content = _answer(transcript, behaviour)
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4 + 1
        completion_tokens = len(content) // 4 + 1
        return JSONResponse({
            "id": "chatcmpl-" + key[-16:] + f"-{attempt}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": behaviour.served_model or model,
            "system_fingerprint": "fp_relctl_local",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    return app


@contextmanager
def serve_in_thread(
    state: ModelServerState | None = None, host: str = "127.0.0.1", port: int = 0,
) -> Iterator[tuple[str, ModelServerState]]:
    """Run the server on a background thread; yields (base URL ending in /v1, its state)."""
    state = state or ModelServerState()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(state), log_level="warning", access_log=False,
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("local model server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{bound_port}/v1", state
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
