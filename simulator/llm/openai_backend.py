"""Asyncio client for OpenAI-compatible servers (vLLM, SGLang, llama.cpp, OpenAI itself).

Core objects:
    EndpointConfig: one base URL with its in-flight limit, optional rate limit, API key variable
        and weight.
    RetryPolicy: how many attempts a request gets, the backoff between them and the per-attempt
        timeout.
    OpenAIBackend: the ``Backend`` that answers a batch by spreading it over the endpoints:
        least outstanding requests first, per-endpoint in-flight caps and token buckets,
        retries with jittered exponential backoff, and ejection of failing endpoints with
        probing to bring them back.
    probe_endpoints: one 1-token request to each endpoint (is a server there, does it let us
        in), with the same URLs, headers and configuration checks as the backend's requests.

The hot path is kept lean because client CPU per request bounds how many requests one process can
drive: one shared ``aiohttp.ClientSession``, the request body encoded once (``orjson`` when
importable), pre-built headers per endpoint, and a FIFO hand-off of endpoint slots so that a waiting
request is woken only when a slot is actually reserved for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import math
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from populace.simulator.llm.types import Backend, BackendError, ChatRequest, ChatResponse

try:  # orjson is several times faster than the stdlib; optional.
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    import json

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    _loads = json.loads

__all__ = ["EndpointConfig", "OpenAIBackend", "ProbeResult", "RetryPolicy", "probe_endpoints"]

log = logging.getLogger("populace.llm")

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_LATENCY_WINDOW = 10_000  # latencies kept per endpoint for the percentiles in stats()
_ERROR_TEXT_MAX = 300

# Outcome of one attempt for an endpoint's health: a healthy answer resets the failure streak,
# a failure extends it, and a 429 (alive but busy) leaves it as it is.
_OK, _FAIL, _NEUTRAL = 0, 1, 2


@dataclass
class EndpointConfig:
    """One OpenAI-compatible server.

    Attributes:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``; requests go to
            ``{base_url}/chat/completions`` (or ``/completions``).
        max_in_flight: requests outstanding at once on this endpoint.
        rate_limit_rps: token bucket in requests per second (burst of one), or None for no limit.
        api_key_env: NAME of an environment variable holding the API key (never the key
            itself); read when the backend is constructed and sent as ``Authorization: Bearer``.
        weight: preference among endpoints with free slots; the load compared is
            ``in_flight / (max_in_flight * weight)``.
    """

    base_url: str
    max_in_flight: int = 64
    rate_limit_rps: float | None = None
    api_key_env: str | None = None
    weight: float = 1.0


@dataclass
class RetryPolicy:
    """Retries of 429, 500, 502, 503, 504, timeouts and connection errors.

    Attributes:
        max_attempts: HTTP attempts per request, the first included.
        backoff_s: base delay; the delay before retry ``k`` (0-based) is
            ``uniform(0, min(max_backoff_s, backoff_s * 2**k))`` (full jitter), or the server's
            ``Retry-After`` when it sends one (capped at ``timeout_s``).
        max_backoff_s: cap on the exponential delay.
        timeout_s: total time allowed for one attempt; also how long a request waits for an
            endpoint while every endpoint is ejected before that counts as a failed attempt.
    """

    max_attempts: int = 4
    backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    timeout_s: float = 60.0


class _NoHealthyEndpoint(Exception):
    """Raised to a waiting request when every endpoint stayed ejected past its deadline."""


class _Endpoint:
    """Run-time state of one endpoint: slots, token bucket, health and counters."""

    __slots__ = (
        "base_url", "url", "headers", "capacity", "scale", "interval", "next_token",
        "in_flight", "streak", "ejected", "probe_at", "probing",
        "sent", "ok", "retried", "failed", "max_in_flight_seen", "ejections", "latencies",
        "ejected_at", "failed_while_out", "last_error",
    )

    def __init__(self, cfg: EndpointConfig, api_key: str | None, path: str) -> None:
        self.base_url = cfg.base_url
        self.url = cfg.base_url.rstrip("/") + path
        self.headers = {"Content-Type": "application/json"}
        if api_key is not None:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.capacity = cfg.max_in_flight
        self.scale = 1.0 / (cfg.max_in_flight * cfg.weight)
        self.interval = 1.0 / cfg.rate_limit_rps if cfg.rate_limit_rps else 0.0
        self.next_token = 0.0  # monotonic time from which the bucket allows the next request
        self.in_flight = 0
        self.streak = 0  # consecutive failures
        self.ejected = False
        self.probe_at = 0.0
        self.probing = False
        self.sent = self.ok = self.retried = self.failed = 0
        self.max_in_flight_seen = 0
        self.ejections = 0
        self.ejected_at = 0.0  # monotonic time of the last ejection
        self.failed_while_out = 0  # failed attempts (probes included) since then
        self.last_error = ""  # why its last failed attempt failed
        self.latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def reset_runtime(self) -> None:
        """Forget slots and probes held under a previous event loop (those tasks are gone)."""
        self.in_flight = 0
        self.probing = False


@dataclass(slots=True)
class _Waiter:
    """A request waiting for an endpoint slot."""

    future: asyncio.Future[tuple[_Endpoint, bool]]
    avoid: _Endpoint | None
    deadline: float  # when it gives up if every endpoint is still ejected


class OpenAIBackend(Backend):
    """A ``Backend`` over one or many OpenAI-compatible endpoints (chat or completions API).

    Every request of a batch is submitted at once as an asyncio task; each takes a slot on the
    healthy endpoint with the fewest outstanding requests relative to its capacity, so endpoints of
    different sizes all stay near full. Waiting requests are served first in, first out.

    A failed attempt (429, 5xx, timeout, connection error) is retried after a jittered backoff,
    preferably on another endpoint; other 4xx answers are final. A request never raises: when it
    fails for good its ``ChatResponse`` carries ``error`` and ``attempts``.

    Args:
        endpoints: the servers; at least one.
        retry: retry and timeout policy.
        eject_after: consecutive failures after which an endpoint is taken out of rotation.
        probe_after_s: seconds after an ejection (or a failed probe) before a single probe
            request is let through; its success puts the endpoint back.
        use_response_format: send ``response_format`` (JSON schema) when a request has a schema.
        seed: seed of the backoff jitter.
        api: ``chat`` (``/chat/completions``, one request per HTTP request) or ``completions``
            (``/completions``, prompts rendered by ``render``).
        prompts_per_request: with ``api="completions"``, up to this many prompts that share
            model, sampling parameters and schema go in one HTTP request (vLLM, SGLang and
            llama.cpp answer a list of prompts); an endpoint's ``max_in_flight`` counts HTTP
            requests, so a request's retries and failures apply to all its prompts.
        render: chat messages to prompt text (``chat_formats.make_renderer``); required with
            ``api="completions"``.

    Raises:
        BackendError: no endpoints, a URL that is not ``http(s)://host...``, invalid limits, or
            an ``api_key_env`` variable that is not set.
    """

    name = "openai"

    def __init__(
        self,
        endpoints: list[EndpointConfig],
        *,
        retry: RetryPolicy | None = None,
        eject_after: int = 5,
        probe_after_s: float = 2.0,
        use_response_format: bool = True,
        seed: int = 0,
        api: str = "chat",
        prompts_per_request: int = 1,
        render: Callable[[list[dict[str, str]]], str] | None = None,
    ) -> None:
        if api not in ("chat", "completions"):
            raise BackendError(f"api must be chat or completions, got {api!r}")
        if prompts_per_request < 1 or (prompts_per_request > 1 and api != "completions"):
            raise BackendError("prompts_per_request > 1 needs api completions (a chat request "
                               f"holds one conversation), got {prompts_per_request} with {api}")
        if api == "completions" and render is None:
            raise BackendError("api completions needs a render function for the prompts")
        self.api = api
        self.prompts_per_request = prompts_per_request
        self.render = render
        if not endpoints:
            raise BackendError("OpenAIBackend needs at least one endpoint")
        self.retry = retry if retry is not None else RetryPolicy()
        if self.retry.max_attempts < 1:
            raise BackendError(f"retry.max_attempts must be >= 1, got {self.retry.max_attempts}")
        if self.retry.timeout_s <= 0:
            raise BackendError(f"retry.timeout_s must be > 0, got {self.retry.timeout_s}")
        if eject_after < 1:
            raise BackendError(f"eject_after must be >= 1, got {eject_after}")
        self.eject_after = eject_after
        self.probe_after_s = probe_after_s
        self.use_response_format = use_response_format
        self._rng = random.Random(seed)
        path = "/chat/completions" if api == "chat" else "/completions"
        self._endpoints = [_Endpoint(cfg, _check_endpoint(cfg), path) for cfg in endpoints]

        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: deque[_Waiter] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._requests = self._requests_ok = self._requests_failed = 0
        self._attempts = self._no_endpoint = 0

    # ------------------------------------------------------------------ public API

    async def generate(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        """Answer ``requests`` in the same order; failures come back with ``error`` set.

        Args:
            requests: the batch; all of it is submitted at once.

        Returns:
            One ``ChatResponse`` per request, in order.
        """
        if not requests:
            return []
        session = await self._ensure_session()
        if self.prompts_per_request == 1:
            units = await asyncio.gather(*(self._unit(session, [r]) for r in requests))
            return [u[0] for u in units]
        groups = _units(requests, self.prompts_per_request)
        answers = await asyncio.gather(
            *(self._unit(session, [requests[i] for i in g]) for g in groups))
        out: list[ChatResponse | None] = [None] * len(requests)
        for group, resps in zip(groups, answers, strict=True):
            for i, resp in zip(group, resps, strict=True):
                out[i] = resp
        return out  # type: ignore[return-value]  (every slot is filled)

    async def close(self) -> None:
        """Close the HTTP session; a later ``generate`` opens a new one."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf
        if self._session is not None:
            session, self._session = self._session, None
            with contextlib.suppress(Exception):  # a session of a dead loop cannot close cleanly
                await session.close()

    def stats(self) -> dict[str, Any]:
        """Counters per endpoint and in total.

        Returns:
            ``{"endpoints": [...], "totals": {...}}``. Per endpoint: ``sent`` (attempts sent),
            ``ok``, ``retried`` (failed attempts followed by a retry), ``failed`` (failed
            attempts that ended their request), ``in_flight``, ``max_in_flight``,
            ``max_in_flight_seen``, ``ejected``, ``ejections``, ``latency_p50_s``,
            ``latency_p95_s``, ``latency_mean_s`` (over the last successful attempts).
            Totals: ``requests``, ``ok``, ``failed`` (requests), ``attempts``, ``retries``,
            ``no_endpoint`` (attempts that found every endpoint ejected), ``waiting``.
        """
        eps = []
        for ep in self._endpoints:
            lat = sorted(ep.latencies)
            eps.append({
                "base_url": ep.base_url,
                "sent": ep.sent,
                "ok": ep.ok,
                "retried": ep.retried,
                "failed": ep.failed,
                "in_flight": ep.in_flight,
                "max_in_flight": ep.capacity,
                "max_in_flight_seen": ep.max_in_flight_seen,
                "ejected": ep.ejected,
                "ejections": ep.ejections,
                "latency_p50_s": _percentile(lat, 0.50),
                "latency_p95_s": _percentile(lat, 0.95),
                "latency_mean_s": sum(lat) / len(lat) if lat else None,
            })
        totals = {
            "requests": self._requests,
            "ok": self._requests_ok,
            "failed": self._requests_failed,
            "attempts": self._attempts,
            "retries": sum(e["retried"] for e in eps),
            "no_endpoint": self._no_endpoint,
            "waiting": len(self._waiters),
        }
        return {"endpoints": eps, "totals": totals}

    def health(self) -> dict[str, int]:
        """Running totals: ``retries`` (as in ``stats()``: failed attempts on an endpoint that
        were tried again) and ``ejections`` (endpoints taken out of rotation)."""
        return {"retries": sum(ep.retried for ep in self._endpoints),
                "ejections": sum(ep.ejections for ep in self._endpoints)}

    # ------------------------------------------------------------------ one request

    def _encode(self, reqs: list[ChatRequest]) -> bytes:
        req = reqs[0]  # a unit shares model, sampling parameters and schema (see _units)
        body: dict[str, Any] = {"model": req.model}
        if self.api == "chat":
            body["messages"] = req.messages
        else:
            render = self.render
            body["prompt"] = [render(r.messages) for r in reqs]
        body["temperature"] = req.temperature
        body["max_tokens"] = req.max_tokens
        body["top_p"] = req.top_p
        if req.seed is not None:
            body["seed"] = req.seed
        if req.schema is not None and self.use_response_format:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "decision", "schema": req.schema, "strict": True},
            }
        return _dumps(body)

    async def _unit(self, session: aiohttp.ClientSession,
                    reqs: list[ChatRequest]) -> list[ChatResponse]:
        """Send one HTTP request (one chat request, or several prompts) with retries.

        Never raises (cancellation aside): a failure comes back as one error response per
        request of the unit.
        """
        self._requests += len(reqs)
        try:
            resps = await self._attempts_loop(session, reqs)
        except Exception as exc:  # a bug or an unexpected library error: confine it to this unit
            resps = [ChatResponse(text="", error=f"{type(exc).__name__}: {exc}", key=r.key)
                     for r in reqs]
        for resp in resps:
            if resp.error is None:
                self._requests_ok += 1
            else:
                self._requests_failed += 1
        return resps

    def _failed(self, reqs: list[ChatRequest], error: str, **fields: Any) -> list[ChatResponse]:
        return [ChatResponse(text="", error=error, key=r.key, **fields) for r in reqs]

    async def _attempts_loop(self, session: aiohttp.ClientSession,
                             reqs: list[ChatRequest]) -> list[ChatResponse]:
        payload: bytes | None = None  # encoded once a slot is free, not while thousands queue
        policy = self.retry
        avoid: _Endpoint | None = None
        error = ""
        where = ""
        for attempt in range(1, policy.max_attempts + 1):
            self._attempts += 1
            last = attempt == policy.max_attempts
            try:
                ep, probe = await self._acquire(avoid)
            except _NoHealthyEndpoint:
                self._no_endpoint += 1
                # say why they were taken out: "all ejected" alone explains nothing
                why = "; ".join(f"{e.base_url}: {e.last_error}" for e in self._endpoints
                                if e.last_error)
                error = (f"no healthy endpoint (all ejected) after {attempt} attempts"
                         + (f"; last failures: {why}" if why else ""))[:600]
                if not last:
                    await asyncio.sleep(self._backoff(attempt - 1, None))
                continue

            if payload is None:
                payload = self._encode(reqs)
            ep.sent += 1
            where = ep.base_url
            retry_after: float | None = None
            health = _FAIL
            t0 = time.perf_counter()
            try:
                async with session.post(ep.url, data=payload, headers=ep.headers) as http:
                    status = http.status
                    raw = await http.read()
                    if 200 <= status < 300:
                        latency = time.perf_counter() - t0
                        try:
                            answers = self._parse(raw, reqs)
                        except (ValueError, KeyError, IndexError, TypeError) as exc:
                            error = f"bad response after {attempt} attempts: {exc!r}"[:400]
                        else:
                            health = _OK
                            ep.ok += 1
                            ep.latencies.append(latency)
                            for answer in answers:
                                answer.latency_s = latency
                                answer.endpoint = ep.base_url
                                answer.attempts = attempt
                            return answers
                    elif status in _RETRY_STATUS:
                        if status == 429:  # alive but busy: not a strike towards ejection
                            health = _NEUTRAL
                        retry_after = _retry_after(http.headers.get("Retry-After"))
                        error = f"HTTP {status} after {attempt} attempts: {_error_text(raw)}"
                    else:  # the server answered and refused: retrying would not help
                        health = _OK
                        ep.failed += 1
                        return self._failed(reqs, f"HTTP {status}: {_error_text(raw)}",
                                            endpoint=ep.base_url, attempts=attempt,
                                            latency_s=time.perf_counter() - t0)
            except TimeoutError:
                error = f"timeout after {attempt} attempts ({policy.timeout_s:g} s per attempt)"
            except aiohttp.ClientError as exc:
                error = f"connection error after {attempt} attempts: {exc}"[:400]
            finally:
                if health == _FAIL:
                    ep.last_error = error
                self._release(ep, probe, health)

            if last:
                ep.failed += 1
            else:
                ep.retried += 1
                avoid = ep
                await asyncio.sleep(self._backoff(attempt - 1, retry_after))
        return self._failed(reqs, error, attempts=policy.max_attempts, endpoint=where)

    def _parse(self, raw: bytes, reqs: list[ChatRequest]) -> list[ChatResponse]:
        obj = _loads(raw)
        usage = obj.get("usage") or {}
        if self.api == "chat":
            req = reqs[0]
            choice = obj["choices"][0]
            texts = [choice["message"].get("content") or ""]
            finishes = [choice.get("finish_reason")]
            prompt_chars = [sum(len(m.get("content") or "") for m in req.messages)]
        else:
            choices = sorted(obj["choices"], key=lambda c: c.get("index", 0))
            if len(choices) != len(reqs):
                raise ValueError(f"{len(choices)} choices for {len(reqs)} prompts")
            texts = [c.get("text") or "" for c in choices]
            finishes = [c.get("finish_reason") for c in choices]
            prompt_chars = [sum(len(m.get("content") or "") for m in r.messages) for r in reqs]
        prompt = _shares(usage.get("prompt_tokens"), prompt_chars)
        completion = _shares(usage.get("completion_tokens"), [len(t) for t in texts])
        out = []
        for req, text, finish, p, c in zip(reqs, texts, finishes, prompt, completion,
                                           strict=True):
            resp = ChatResponse(text=text, prompt_tokens=p, completion_tokens=c, key=req.key)
            if finish is not None:
                resp.extra["finish_reason"] = finish
            out.append(resp)
        return out

    def _backoff(self, retry_index: int, retry_after: float | None) -> float:
        policy = self.retry
        if retry_after is not None:
            return min(retry_after, policy.timeout_s)
        cap = min(policy.max_backoff_s, policy.backoff_s * (2 ** retry_index))
        return self._rng.uniform(0.0, cap)

    # ------------------------------------------------------------------ endpoint slots

    def _pick(self, now: float, avoid: _Endpoint | None) -> tuple[_Endpoint | None, bool, float]:
        """The least-loaded endpoint that can take a request now.

        Returns:
            ``(endpoint, is_probe, wake)``: the endpoint (None when none can) and, when none
            can, the earliest time a rate limit or probe window opens (``inf`` when only a
            finishing request can free a slot).
        """
        best: _Endpoint | None = None
        best_load = math.inf
        best_probe = False
        wake = math.inf
        for ep in self._endpoints:
            if ep.in_flight >= ep.capacity:
                continue
            if ep.ejected:
                if ep.probing:
                    continue
                if now < ep.probe_at:
                    wake = min(wake, ep.probe_at)
                    continue
            if ep.next_token > now:
                wake = min(wake, ep.next_token)
                continue
            load = ep.in_flight * ep.scale
            if ep is avoid:  # a retry goes elsewhere when anything else is free
                load += 1e9
            if load < best_load:
                best, best_load, best_probe = ep, load, ep.ejected
        return best, best_probe, wake

    def _take(self, ep: _Endpoint, probe: bool, now: float) -> None:
        ep.in_flight += 1
        if ep.in_flight > ep.max_in_flight_seen:
            ep.max_in_flight_seen = ep.in_flight
        if ep.interval:
            ep.next_token = max(ep.next_token, now) + ep.interval
        if probe:
            ep.probing = True

    async def _acquire(self, avoid: _Endpoint | None) -> tuple[_Endpoint, bool]:
        """Reserve a slot; waits (FIFO) when no endpoint can take the request now."""
        now = time.monotonic()
        if not self._waiters:  # fast path: nobody ahead of us
            ep, probe, _ = self._pick(now, avoid)
            if ep is not None:
                self._take(ep, probe, now)
                return ep, probe
        assert self._loop is not None
        fut: asyncio.Future[tuple[_Endpoint, bool]] = self._loop.create_future()
        self._waiters.append(_Waiter(fut, avoid, now + self.retry.timeout_s))
        self._dispatch()  # serves us at once if we are first and a slot is free; else arms a timer
        try:
            return await fut
        except asyncio.CancelledError:
            # The slot may have been handed over just before the cancellation: give it back.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                ep, probe = fut.result()
                self._release(ep, probe, _NEUTRAL)
            raise

    def _release(self, ep: _Endpoint, probe: bool, health: int) -> None:
        """Free a slot, update the endpoint's health and hand slots to waiting requests."""
        ep.in_flight -= 1
        if probe:
            ep.probing = False
        if health == _OK:
            ep.streak = 0
            if ep.ejected:  # any success (the probe's, or a late one) puts it back
                ep.ejected = False
                # a warning, not info: an outage that recovered must leave a record
                log.warning("endpoint %s answers again after %.1f s out of rotation (%d failed "
                            "attempts meanwhile; ejection %d so far)", ep.base_url,
                            time.monotonic() - ep.ejected_at, ep.failed_while_out,
                            ep.ejections)
        elif health == _FAIL:
            ep.streak += 1
            if ep.ejected:
                ep.failed_while_out += 1
                if probe:
                    ep.probe_at = time.monotonic() + self.probe_after_s
            elif ep.streak >= self.eject_after:
                ep.ejected = True
                ep.ejections += 1
                ep.ejected_at = ep.probe_at = time.monotonic()
                ep.probe_at += self.probe_after_s
                ep.failed_while_out = 0
                healthy = sum(not e.ejected for e in self._endpoints)
                log.warning("endpoint %s taken out of rotation after %d failed attempts in a "
                            "row (ejection %d so far; %d of %d endpoints left); probing "
                            "it every %g s", ep.base_url, ep.streak, ep.ejections, healthy,
                            len(self._endpoints), self.probe_after_s)
        elif probe:  # a busy (429) probe: try again after the next window
            ep.probe_at = time.monotonic() + self.probe_after_s
        if self._waiters:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting requests in arrival order."""
        now = time.monotonic()
        waiters = self._waiters
        while waiters:
            head = waiters[0]
            if head.future.done():  # cancelled while waiting
                waiters.popleft()
                continue
            ep, probe, wake = self._pick(now, head.avoid)
            if ep is None:
                if all(e.ejected for e in self._endpoints):
                    self._expire(now)
                    if not waiters:
                        return
                self._schedule(wake, now)
                return
            waiters.popleft()
            self._take(ep, probe, now)
            head.future.set_result((ep, probe))

    def _expire(self, now: float) -> None:
        """Fail the waiters whose deadline passed while every endpoint is ejected."""
        kept = []
        for w in self._waiters:
            if w.future.done():
                continue
            if w.deadline <= now:
                w.future.set_exception(_NoHealthyEndpoint())
            else:
                kept.append(w)
        self._waiters.clear()  # in place: _dispatch holds a reference to this deque
        self._waiters.extend(kept)

    def _schedule(self, wake: float, now: float) -> None:
        """Make sure ``_dispatch`` runs at ``wake`` (a rate-limit token or a probe window)."""
        if wake == math.inf:
            return
        if self._waiters and all(e.ejected for e in self._endpoints):
            # Also wake at the head's deadline (the earliest: FIFO), so waiting stays bounded.
            wake = min(wake, self._waiters[0].deadline)
        if self._timer is not None and self._timer_at <= wake:
            return
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer_at = wake
        self._timer = self._loop.call_later(max(0.0, wake - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, math.inf
        self._dispatch()

    # ------------------------------------------------------------------ session

    async def _ensure_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and self._loop is loop:
            return self._session
        if self._loop is not loop:  # a new event loop: state tied to the old one is stale
            await self.close()
            for ep in self._endpoints:
                ep.reset_runtime()
            self._waiters = deque()
        self._loop = loop
        connector = aiohttp.TCPConnector(
            limit=sum(ep.capacity for ep in self._endpoints),  # our slots are the real limit
            limit_per_host=0,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.retry.timeout_s),
        )
        return self._session


# ---------------------------------------------------------------------- probing


@dataclass
class ProbeResult:
    """What one endpoint did with a 1-token request.

    Attributes:
        base_url: the endpoint.
        status: the HTTP status of its answer, or None when no answer came.
        text: the start of the answer's body, or why no answer came.
        timed_out: no answer came within the timeout (in any attempt).
        attempts: attempts made.
    """

    base_url: str
    status: int | None
    text: str
    timed_out: bool = False
    attempts: int = 1


async def probe_endpoints(endpoints: list[EndpointConfig], *, model: str, api: str = "chat",
                          timeout_s: float = 60.0, attempts: int = 2) -> list[ProbeResult]:
    """Send each endpoint one 1-token request, all at once, as ``OpenAIBackend`` would send it.

    An endpoint gets up to ``attempts`` tries when it times out or the connection breaks;
    one that refuses the connection is not tried again (nothing listens there).

    Raises:
        BackendError: a configuration the backend would refuse (a URL that is not
            ``http(s)://host...``, invalid limits, an ``api_key_env`` variable that is not set).
    """
    path = "/chat/completions" if api == "chat" else "/completions"
    eps = [_Endpoint(cfg, _check_endpoint(cfg), path) for cfg in endpoints]
    body: dict[str, Any] = {"model": model, "max_tokens": 1, "temperature": 0.0}
    if api == "chat":
        body["messages"] = [{"role": "user", "content": "Say OK."}]
    else:
        body["prompt"] = "OK"
    payload = _dumps(body)
    # connecting should be quick even when answering is not: a host that drops packets
    # fails in seconds, not after the whole request timeout
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 10.0))

    async def one(session: aiohttp.ClientSession, ep: _Endpoint) -> ProbeResult:
        result = ProbeResult(ep.base_url, None, "")
        for attempt in range(1, max(1, attempts) + 1):
            result.attempts = attempt
            try:
                async with session.post(ep.url, data=payload, headers=ep.headers) as http:
                    raw = await http.read()
                    return ProbeResult(ep.base_url, http.status,
                                       raw[:200].decode("utf-8", "replace"), False, attempt)
            except TimeoutError:
                result.text, result.timed_out = f"no answer within {timeout_s:g} s", True
            except aiohttp.ClientConnectorError as exc:
                result.text = f"cannot connect ({exc.os_error or exc})"
                return result
            except aiohttp.ClientError as exc:
                result.text, result.timed_out = f"{type(exc).__name__}: {exc}", False
        return result

    async with aiohttp.ClientSession(timeout=timeout) as session:
        return list(await asyncio.gather(*(one(session, ep) for ep in eps)))


# ---------------------------------------------------------------------- helpers


def _check_endpoint(cfg: EndpointConfig) -> str | None:
    """Validate one endpoint's configuration and return its API key (or None)."""
    parts = urlsplit(cfg.base_url) if isinstance(cfg.base_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError(
            f"endpoint base_url must look like http://host:port/v1, got {cfg.base_url!r}")
    if cfg.max_in_flight < 1:
        raise BackendError(f"{cfg.base_url}: max_in_flight must be >= 1, got {cfg.max_in_flight}")
    if cfg.rate_limit_rps is not None and cfg.rate_limit_rps <= 0:
        raise BackendError(
            f"{cfg.base_url}: rate_limit_rps must be > 0 or None, got {cfg.rate_limit_rps}")
    if cfg.weight <= 0:
        raise BackendError(f"{cfg.base_url}: weight must be > 0, got {cfg.weight}")
    if cfg.api_key_env is None:
        return None
    key = os.environ.get(cfg.api_key_env)
    if key is None:
        raise BackendError(
            f"{cfg.base_url}: environment variable {cfg.api_key_env} (api_key_env) is not set")
    return key


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_text(raw: bytes) -> str:
    """The server's error message from an OpenAI/vLLM-style error body, or the raw text."""
    text = raw.decode("utf-8", "replace")
    try:
        obj = _loads(raw)
    except ValueError:
        return text[:_ERROR_TEXT_MAX]
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:_ERROR_TEXT_MAX]
        for name in ("message", "detail", "error"):
            if obj.get(name):
                return str(obj[name])[:_ERROR_TEXT_MAX]
    return text[:_ERROR_TEXT_MAX]


def _units(requests: list[ChatRequest], size: int) -> list[list[int]]:
    """Indices of ``requests`` in groups of at most ``size`` that can share one HTTP request.

    Requests share a request when they have the same model, sampling parameters (the seed
    aside: the group is sent with its first request's seed) and schema. Groups keep the
    requests' order, so the same batch always gives the same groups.
    """
    schema_keys: dict[int, bytes] = {}
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for i, r in enumerate(requests):
        sk = schema_keys.get(id(r.schema))
        if sk is None:
            sk = schema_keys[id(r.schema)] = _dumps(r.schema)
        buckets.setdefault((r.model, r.temperature, r.max_tokens, r.top_p, sk), []).append(i)
    return [idx[k:k + size] for idx in buckets.values() for k in range(0, len(idx), size)]


def _shares(total: int | None, weights: list[int]) -> list[int]:
    """``total`` tokens split over the prompts in proportion to ``weights`` (characters).

    A multi-prompt completions answer reports usage for the whole request only. Without a
    total (servers that report no usage) each share is estimated at four characters a token.
    """
    if total is None:
        return [math.ceil(w / 4) for w in weights]
    if len(weights) == 1:
        return [int(total)]
    whole = sum(weights)
    if whole == 0:
        base, extra = divmod(int(total), len(weights))
        return [base + (1 if i < extra else 0) for i in range(len(weights))]
    shares = [int(total) * w // whole for w in weights]
    shares[-1] += int(total) - sum(shares)  # the rounding remainder, so the shares sum up
    return shares


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted ``values`` (None when empty)."""
    if not values:
        return None
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]
