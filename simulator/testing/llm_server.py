"""A small OpenAI-compatible HTTP server for tests and benchmarks of the LLM path.

No model can be downloaded where Populace is developed and tested, so the LLM backends are
exercised against this server: a real HTTP server (``aiohttp.web``) that speaks the subset of
the OpenAI / vLLM API the backends use, answers with schema-valid decisions chosen by a seeded
rule, and can be told to misbehave (latency, limited capacity, invalid answers, 429/500, hangs).

Core objects:
    ServerBehaviour: how the server behaves (latency, capacity, fault rates, seed); may be
        changed while the server runs.
    TestServer: the server itself; run it in the current event loop (``start``/``stop``, or
        ``async with``) or in a daemon thread with its own loop (``start_in_thread``, or
        ``with``). ``stats`` counts what it saw and sent.
    main: the command line (``python -m populace.simulator.testing.llm_server --port 8011 ...``).

The answers themselves are drawn by ``populace.simulator.testing.schema_samples``.

Endpoints: ``GET /v1/models``, ``GET /health``, ``POST /v1/chat/completions``,
``POST /v1/completions`` (with vLLM's ``guided_json``), plus two helpers for out-of-process
use: ``GET /testserver/stats`` and ``POST /testserver/behaviour`` (JSON object of
``ServerBehaviour`` fields to change).

Answers: when the last user message (or the prompt) holds a line ``ANSWER: <text>``, that text is
returned verbatim (a test hook). Otherwise, with a schema, ``sample_instance`` draws an answer
from an rng seeded by (behaviour seed, sha256 of the messages / prompt), so the same request
always gets the same answer; without a schema the answer is ``{"action": "do_nothing"}``.

A request whose messages (or prompt) contain ``ServerBehaviour.garbage_if`` always gets a
non-JSON answer: a model that cannot answer one kind of request, however often it is asked.

Faults are decided per request by hashing (seed, request body, attempt), where attempt counts how
often that exact body already drew a fault, so a client's retry of a failed request gets a fresh
draw and whole runs stay reproducible. Checked in order (each with its own draw): hang, rate
limit (429, no capacity slot taken), then, after queueing for a slot and the latency, error
(500), then per answer item: invalid JSON, schema-invalid JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from aiohttp import web

from .schema_samples import check_schema, sample_instance, wrong_instance

__all__ = ["DEFAULT_ANSWER", "ServerBehaviour", "TestServer", "main"]

DEFAULT_ANSWER = '{"action": "do_nothing"}'

# Chatty non-JSON answers sent when an invalid-JSON fault is drawn.
_CHATTER = (
    "Sure! I think I will like the post.",
    "As an AI language model, I would probably share this with my friends.",
    "I'd rather do nothing today, to be honest.",
    "Let me think about it... Liking it seems reasonable.",
    "action: like_post (because it matches my interests)",
)

_ANSWER_LINE = re.compile(r"^[ \t]*ANSWER:[ \t]?(.*?)[ \t]*$", re.MULTILINE)


# --------------------------------------------------------------------------------------------
# Behaviour


@dataclass
class ServerBehaviour:
    """How a ``TestServer`` behaves; fields may be changed while it runs.

    All rates are probabilities in [0, 1], drawn per request (per answer item for the two content
    faults) from a seeded hash of (seed, request body, attempt), so runs are reproducible.

    Attributes:
        latency_s: fixed latency added to every processed request.
        latency_jitter_s: extra latency drawn uniformly from ``[0, latency_jitter_s)``.
        capacity: most requests processed at once (0 = unlimited); further requests wait in a
            queue, as on a saturated vLLM server.
        invalid_json_rate: answer content that is not JSON at all.
        wrong_action_rate: answer content that is JSON but does not validate against the schema.
        rate_limit_rate: HTTP 429 with ``Retry-After: 0``, answered at once.
        error_rate: HTTP 500 after the latency.
        hang_rate: never answer (until the client gives up or the server stops); a hung request
            takes no capacity slot, so it never blocks other requests.
        seed: seed of every draw (faults, latency jitter and answers).
        garbage_if: answer items whose messages (or prompt) contain this text get a non-JSON
            answer on every attempt, repairs included (e.g. a phrase of one kind of prompt);
            "" for none. Counted in ``stats["garbage"]``.
        max_concurrent_seen: a statistic the server writes: the peak number of requests processed
            at once (same as ``stats["max_concurrent"]``).
    """

    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    capacity: int = 0
    invalid_json_rate: float = 0.0
    wrong_action_rate: float = 0.0
    rate_limit_rate: float = 0.0
    error_rate: float = 0.0
    hang_rate: float = 0.0
    seed: int = 0
    garbage_if: str = ""
    max_concurrent_seen: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        for name in ("invalid_json_rate", "wrong_action_rate", "rate_limit_rate", "error_rate",
                     "hang_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.latency_s < 0 or self.latency_jitter_s < 0:
            raise ValueError("latency_s and latency_jitter_s must be >= 0")
        if self.capacity < 0:
            raise ValueError(f"capacity must be >= 0 (0 = unlimited), got {self.capacity}")


def _unit(*parts: Any) -> float:
    """A reproducible number in [0, 1) from the given parts."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def _seeded_rng(seed: int, payload: str) -> random.Random:
    """An rng seeded by the server seed and the sha256 of ``payload`` (messages or prompt)."""
    digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()
    return random.Random(f"{seed}:{digest}")


def _estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


# --------------------------------------------------------------------------------------------
# The server


class _BadRequest(Exception):
    """A request the server refuses, with its HTTP status and OpenAI error fields."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def _error_response(status: int, message: str, kind: str, code: str | int | None,
                    headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _content_text(content: Any) -> str:
    """Text of a message's content: a string or OpenAI content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text", "") for p in content if isinstance(p, dict)]
        if len(texts) == len(content) and all(isinstance(t, str) for t in texts):
            return "".join(texts)
    raise _BadRequest(400, "message content must be a string or a list of text parts")


def _schema_from_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise _BadRequest(400, "response_format must be an object")
    kind = response_format.get("type")
    if kind in ("text", "json_object"):
        return None
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _BadRequest(400, "response_format.json_schema.schema must be an object")
        return schema
    raise _BadRequest(400, f"unsupported response_format type {kind!r}")


def _check_schema(schema: dict[str, Any]) -> None:
    """Refuse, before any latency, a schema that is invalid or whose ``$ref`` cannot be followed."""
    try:
        check_schema(schema)
    except ValueError as exc:
        raise _BadRequest(400, f"cannot answer with this schema: {exc}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _answer_hook(text: str) -> str | None:
    """The text of the last ``ANSWER: ...`` line, if any (the test hook)."""
    found = _ANSWER_LINE.findall(text)
    return found[-1] if found else None


class TestServer:
    """An OpenAI-compatible test server (see the module docstring for what it answers).

    Use it in the current event loop::

        async with TestServer(ServerBehaviour(latency_s=0.1)) as server:
            url = server.url  # "http://127.0.0.1:PORT/v1"

    or in a daemon thread (for synchronous code)::

        with TestServer() as server:
            requests.post(server.url + "/chat/completions", json=...)

    Attributes:
        behaviour: the live behaviour; assign fields (or a new object) at any time.
        model: the only model name served; other names get a 404.
        url: the base URL once started (``http://HOST:PORT/v1``), else None.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, behaviour: ServerBehaviour | None = None, host: str = "127.0.0.1",
                 port: int = 0, model: str = "populace-test") -> None:
        """Prepare a server; nothing listens until ``start`` or ``start_in_thread``.

        Args:
            behaviour: latency, capacity, fault rates and seed (defaults: a well-behaved server).
            host: interface to listen on.
            port: TCP port; 0 picks a free one (read it back from the returned URL).
            model: model name served by ``/v1/models`` and accepted in requests.
        """
        self.behaviour = behaviour or ServerBehaviour()
        self.host, self.port, self.model = host, port, model
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        # Requests waiting for a processing slot, first come first served; each future is
        # resolved once a slot has been taken on its behalf.
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._active = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.reset_stats()

    # -- statistics -------------------------------------------------------------------------

    def reset_stats(self) -> None:
        """Zero every counter (and the attempt memory of the fault draws)."""
        self._stats: dict[str, Any] = {
            "requests": 0, "by_status": {}, "answered": 0, "invalid_json": 0,
            "wrong_action": 0, "hung": 0, "max_concurrent": 0, "prompts_seen": 0,
            "completion_items": 0, "chat_requests": 0, "completion_requests": 0,
            "garbage": 0,
        }
        self._fault_attempts = {}
        self.behaviour.max_concurrent_seen = 0

    @property
    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters.

        Keys: ``requests`` (HTTP requests to the completion endpoints), ``by_status``
        (status code -> count, hung requests excluded), ``answered`` (200 answers),
        ``invalid_json`` / ``wrong_action`` (answer items sent with that fault), ``hung``,
        ``max_concurrent`` (peak requests processed at once), ``in_flight`` (now being processed),
        ``prompts_seen`` (conversations and prompts received in well-formed requests),
        ``completion_items`` (choices sent in 200 answers), ``chat_requests`` and
        ``completion_requests``, ``garbage`` (answer items sent as non-JSON because they
        matched ``behaviour.garbage_if``).
        """
        snapshot = dict(self._stats)
        snapshot["by_status"] = dict(self._stats["by_status"])
        snapshot["in_flight"] = self._active
        return snapshot

    def _count_status(self, status: int) -> None:
        by_status = self._stats["by_status"]
        by_status[status] = by_status.get(status, 0) + 1

    # -- lifecycle --------------------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/testserver/stats", self._stats_endpoint)
        app.router.add_post("/testserver/behaviour", self._behaviour_endpoint)
        return app

    async def start(self) -> str:
        """Start listening in the running event loop.

        Returns:
            The base URL, ``http://HOST:PORT/v1``.
        """
        if self._runner is not None:
            raise RuntimeError("the test server is already running")
        self._stopping = asyncio.Event()
        self._waiters.clear()
        # handler_cancellation: a client that gives up cancels its handler, freeing its slot
        # (vLLM aborts such requests too); shutdown_timeout keeps stop() quick.
        runner = web.AppRunner(self._make_app(), access_log=None, handler_cancellation=True,
                               shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        self.port = runner.addresses[0][1]  # the real port when 0 was asked for
        self.url = f"http://{self.host}:{self.port}/v1"
        return self.url

    async def stop(self) -> None:
        """Stop listening; hung requests are released and open connections closed."""
        if self._runner is None:
            return
        assert self._stopping is not None
        self._stopping.set()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def __aenter__(self) -> TestServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> str:
        """Run the server in a daemon thread with its own event loop.

        Returns:
            The base URL, ``http://HOST:PORT/v1``.
        """
        if self._thread is not None:
            raise RuntimeError("the test server thread is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="populace-testserver", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]
        assert self.url is not None
        return self.url

    def stop_thread(self) -> None:
        """Stop a server started with ``start_in_thread`` and join its thread."""
        if self._thread is None or self._loop is None:
            return
        loop, thread = self._loop, self._thread
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        self._thread = self._loop = None

    def __enter__(self) -> TestServer:
        self.start_in_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

    # -- simple endpoints -------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "populace"}]})

    async def _stats_endpoint(self, request: web.Request) -> web.Response:
        stats = self.stats
        stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
        return web.json_response(stats)

    async def _behaviour_endpoint(self, request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object")
            known = {f.name for f in fields(ServerBehaviour)}
            unknown = set(changes) - known
            if unknown:
                raise ValueError(f"unknown behaviour fields: {sorted(unknown)}")
            self.behaviour = ServerBehaviour(**{**asdict(self.behaviour), **changes})
        except (ValueError, TypeError) as exc:
            return _error_response(400, str(exc), "invalid_request_error", None)
        self._wake()  # a larger capacity lets queued requests in now
        return web.json_response(asdict(self.behaviour))

    # -- completion endpoints ---------------------------------------------------------------

    async def _read_body(self, request: web.Request) -> tuple[bytes, dict[str, Any]]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadRequest(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadRequest(400, "request body must be a JSON object")
        model = body.get("model") or self.model  # vLLM also serves requests that name none
        if model != self.model:
            raise _BadRequest(404, f"The model `{model}` does not exist.",
                              "NotFoundError", "model_not_found")
        if body.get("stream"):
            raise _BadRequest(400, "streaming is not supported by the test server")
        for name in ("temperature", "top_p"):
            if name in body and body[name] is not None and not _is_number(body[name]):
                raise _BadRequest(400, f"{name} must be a number")
        if "max_tokens" in body and body["max_tokens"] is not None and (
                not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool)):
            raise _BadRequest(400, "max_tokens must be an integer")
        return raw, body

    async def _chat(self, request: web.Request) -> web.Response:
        try:
            raw, body = await self._read_body(request)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages or not all(
                    isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
                raise _BadRequest(400, "messages must be a non-empty list of {role, content}")
            texts = [_content_text(m.get("content")) for m in messages]
            schema = _schema_from_format(body.get("response_format"))
            if schema is not None:
                _check_schema(schema)
        except _BadRequest as exc:
            return self._refuse(exc)
        users = [t for m, t in zip(messages, texts, strict=True) if m["role"] == "user"]
        hook = _answer_hook(users[-1]) if users else None
        payload = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        self._stats["chat_requests"] += 1
        items = [(payload, schema, hook)]
        prompt_tokens = _estimate_tokens("".join(texts))

        def build(contents: list[str]) -> dict[str, Any]:
            completion_tokens = _estimate_tokens(contents[0])
            return {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
                "created": int(time.time()), "model": self.model,
                "choices": [{"index": 0, "logprobs": None, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": contents[0]}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }

        return await self._serve(request, raw, items, build)

    async def _completions(self, request: web.Request) -> web.Response:
        try:
            raw, body = await self._read_body(request)
            prompt = body.get("prompt")
            prompts = [prompt] if isinstance(prompt, str) else prompt
            if not isinstance(prompts, list) or not prompts or not all(
                    isinstance(p, str) for p in prompts):
                raise _BadRequest(400, "prompt must be a string or a non-empty list of strings")
            guided = body.get("guided_json")
            if isinstance(guided, str):  # vLLM also takes the schema as a JSON string
                try:
                    guided = json.loads(guided)
                except ValueError:
                    raise _BadRequest(400, "guided_json is not valid JSON") from None
            if guided is not None and not isinstance(guided, dict):
                raise _BadRequest(400, "guided_json must be a JSON schema object")
            schema = guided if guided is not None else _schema_from_format(
                body.get("response_format"))
            if schema is not None:
                _check_schema(schema)
        except _BadRequest as exc:
            return self._refuse(exc)
        self._stats["completion_requests"] += 1
        items = [(p, schema, _answer_hook(p)) for p in prompts]

        def build(contents: list[str]) -> dict[str, Any]:
            prompt_tokens = sum(_estimate_tokens(p) for p in prompts)
            completion_tokens = sum(_estimate_tokens(c) for c in contents)
            return {
                "id": f"cmpl-{uuid.uuid4().hex[:24]}", "object": "text_completion",
                "created": int(time.time()), "model": self.model,
                "choices": [{"index": i, "text": c, "logprobs": None, "finish_reason": "stop"}
                            for i, c in enumerate(contents)],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens},
            }

        return await self._serve(request, raw, items, build)

    def _refuse(self, exc: _BadRequest, counted: bool = False) -> web.Response:
        if not counted:
            self._stats["requests"] += 1
        self._count_status(exc.status)
        return _error_response(exc.status, exc.message, exc.kind, exc.code)

    async def _serve(self, request: web.Request, raw: bytes,
                     items: list[tuple[str, dict[str, Any] | None, str | None]],
                     build: Callable[[list[str]], dict[str, Any]]) -> web.Response:
        """Apply the behaviour to a well-formed request and answer its items."""
        behaviour = self.behaviour
        stats = self._stats
        stats["requests"] += 1
        stats["prompts_seen"] += len(items)
        body_key = hashlib.sha256(raw).hexdigest()
        attempt = self._fault_attempts.get(body_key, 0)

        def draw(kind: str, index: int = 0) -> float:
            return _unit(behaviour.seed, body_key, attempt, kind, index)

        def faulted() -> None:
            # Only faulted bodies are remembered: a retry draws anew, memory stays small.
            if len(self._fault_attempts) > 1_000_000:
                self._fault_attempts.clear()
            self._fault_attempts[body_key] = attempt + 1

        if draw("hang") < behaviour.hang_rate:
            faulted()
            stats["hung"] += 1
            await self._hang(request)
            raise web.HTTPServiceUnavailable()  # the client left, or the server stops
        if draw("rate_limit") < behaviour.rate_limit_rate:
            faulted()
            self._count_status(429)
            return _error_response(429, "Rate limit reached (injected by the test server).",
                                   "rate_limit_error", "rate_limit_exceeded",
                                   headers={"Retry-After": "0"})
        async with self._slot():
            delay = behaviour.latency_s + behaviour.latency_jitter_s * draw("latency")
            if delay > 0:
                await asyncio.sleep(delay)
            if draw("error") < behaviour.error_rate:
                faulted()
                self._count_status(500)
                return _error_response(500, "Internal server error (injected by the test "
                                       "server).", "server_error", 500)
            try:
                contents = self._contents(items, behaviour, draw, faulted)
            except (ValueError, KeyError, IndexError, TypeError) as exc:  # unusable schema
                return self._refuse(_BadRequest(400, f"cannot answer with this schema: {exc}"),
                                    counted=True)
            self._count_status(200)
            stats["answered"] += 1
            stats["completion_items"] += len(contents)
            return web.json_response(build(contents))

    def _contents(self, items: list[tuple[str, dict[str, Any] | None, str | None]],
                  behaviour: ServerBehaviour, draw: Callable[[str, int], float],
                  faulted: Callable[[], None]) -> list[str]:
        """The answer text of each item: the hook, a content fault or a sampled decision."""
        stats = self._stats
        contents = []
        for index, (payload, schema, hook) in enumerate(items):
            rng = _seeded_rng(behaviour.seed, payload)
            if hook is not None:
                contents.append(hook)  # the test hook wins over content faults
            elif behaviour.garbage_if and behaviour.garbage_if in payload:
                stats["garbage"] += 1
                contents.append(rng.choice(_CHATTER))
            elif draw("invalid_json", index) < behaviour.invalid_json_rate:
                faulted()
                stats["invalid_json"] += 1
                contents.append(rng.choice(_CHATTER))
            elif draw("wrong_action", index) < behaviour.wrong_action_rate:
                faulted()
                stats["wrong_action"] += 1
                contents.append(json.dumps(wrong_instance(schema, rng)))
            elif schema is None:
                contents.append(DEFAULT_ANSWER)
            else:
                contents.append(json.dumps(sample_instance(schema, rng)))
        return contents

    async def _hang(self, request: web.Request) -> None:
        """Wait until the client goes away or the server stops."""
        assert self._stopping is not None
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            # Polling backs up handler cancellation, which fires on disconnect.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=0.1)

    def _can_enter(self) -> bool:
        capacity = self.behaviour.capacity
        return capacity <= 0 or self._active < capacity

    def _enter(self) -> None:
        self._active += 1
        peak = max(self._stats["max_concurrent"], self._active)
        self._stats["max_concurrent"] = peak
        self.behaviour.max_concurrent_seen = peak

    def _wake(self) -> None:
        """Hand free slots to waiting requests, oldest first."""
        while self._waiters and self._can_enter():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._enter()
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """Hold one of ``behaviour.capacity`` processing slots (queue while none is free)."""
        if not self._waiters and self._can_enter():
            self._enter()
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:  # the client gave up while queued
                if waiter.done() and not waiter.cancelled():
                    self._active -= 1  # a slot was taken for us just before: give it back
                    self._wake()
                else:
                    with contextlib.suppress(ValueError):
                        self._waiters.remove(waiter)
                raise
        try:
            yield
        finally:
            self._active -= 1
            self._wake()


# --------------------------------------------------------------------------------------------
# Command line


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m populace.simulator.testing.llm_server",
        description="Serve the Populace OpenAI-compatible test server until killed; prints its "
                    "base URL on the first line of stdout.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8011, help="TCP port (0: any free port)")
    parser.add_argument("--model", default="populace-test")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--latency-jitter", type=float, default=0.0)
    parser.add_argument("--capacity", type=int, default=0, help="concurrent requests (0: any)")
    parser.add_argument("--invalid-json-rate", type=float, default=0.0)
    parser.add_argument("--wrong-action-rate", type=float, default=0.0)
    parser.add_argument("--rate-limit-rate", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--hang-rate", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--garbage-if", default="", help="answer requests that contain this "
                        "text with non-JSON, always")
    return parser.parse_args(argv)


async def _serve_forever(server: TestServer) -> None:
    url = await server.start()
    print(url, flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, done.set)
    try:
        await done.wait()
    finally:
        await server.stop()
        print(json.dumps(server.stats, default=str), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Run the test server from the command line until SIGINT / SIGTERM.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status (0). The final stats go to stderr as one JSON line.
    """
    args = _parse_args(argv)
    try:
        behaviour = ServerBehaviour(
            latency_s=args.latency, latency_jitter_s=args.latency_jitter,
            capacity=args.capacity, invalid_json_rate=args.invalid_json_rate,
            wrong_action_rate=args.wrong_action_rate, rate_limit_rate=args.rate_limit_rate,
            error_rate=args.error_rate, hang_rate=args.hang_rate, seed=args.seed,
            garbage_if=args.garbage_if)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve_forever(TestServer(behaviour, host=args.host, port=args.port,
                                          model=args.model)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
