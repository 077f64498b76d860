"""OpenAIBackend against real HTTP servers: a small aiohttp.web chat-completions fixture server.

Most tests run the fixture server in the test's own event loop so that they can read what it
recorded (peak concurrency, request bodies, headers) and change its behaviour mid-test; the CPU
measurement and the event-loop-reuse test use the same server in a separate process
(``python tests/test_llm_openai_backend.py --serve``) so that only client work is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import math
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web

from populace.simulator.llm.openai_backend import EndpointConfig, OpenAIBackend, RetryPolicy
from populace.simulator.llm.types import BackendError, ChatRequest, ChatResponse

FAST = RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5.0)

Script = Callable[["FakeServer", dict[str, Any], int], "web.Response | None | Awaitable[Any]"]


class FakeServer:
    """An OpenAI-compatible ``/v1/chat/completions`` that echoes the last message.

    Attributes:
        latency: seconds each request takes before it is answered.
        script: optional hook ``(server, body, n) -> Response | None`` (may be async); a
            response it returns replaces the normal answer (``n`` counts requests from 1).
        usage: whether answers carry a ``usage`` block.
        broken: a flag for scripts (e.g. fail while set).
        count, peak, bodies, auth: what the server saw (requests, peak concurrency, JSON
            bodies, Authorization headers).
        release: set at shutdown to let hanging handlers finish.
    """

    def __init__(self, latency: float = 0.0, script: Script | None = None) -> None:
        self.latency = latency
        self.script = script
        self.usage = True
        self.broken = False  # free for scripts to switch failures on and off
        self.count = 0
        self.in_flight = 0
        self.peak = 0
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.count += 1
        n = self.count
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            body = await request.json()
            self.bodies.append(body)
            self.auth.append(request.headers.get("Authorization"))
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.script is not None:
                out = self.script(self, body, n)
                if inspect.isawaitable(out):
                    out = await out
                if out is not None:
                    return out
            content = "echo:" + body["messages"][-1]["content"]
            answer: dict[str, Any] = {
                "id": f"cmpl-{n}",
                "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": content}}],
            }
            if self.usage:
                prompt = sum(len(m["content"]) for m in body["messages"])
                answer["usage"] = {"prompt_tokens": prompt, "completion_tokens": len(content),
                                   "total_tokens": prompt + len(content)}
            return web.json_response(answer)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def serve(server: FakeServer) -> AsyncIterator[str]:
    """Run ``server`` on a free localhost port; yields its base URL (``.../v1``)."""
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.release.set()
        await runner.cleanup()


def reqs(n: int, **kw: Any) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "system", "content": "You are an agent."},
                                  {"role": "user", "content": f"q{i}"}],
                        model="m", key=i, **kw) for i in range(n)]


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"message": message, "code": status}}, status=status,
                             headers=headers)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- basics


def test_batch_of_200_in_order_with_usage() -> None:
    async def main() -> None:
        server = FakeServer()
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, max_in_flight=16)], retry=FAST)
            out = await backend.generate(reqs(200))
            st = backend.stats()
            await backend.close()
        assert [r.text for r in out] == [f"echo:q{i}" for i in range(200)]
        assert [r.key for r in out] == list(range(200))
        assert all(r.error is None and r.attempts == 1 and r.endpoint == url for r in out)
        assert all(r.prompt_tokens == len("You are an agent.q0") for r in out[:10])
        assert out[7].completion_tokens == len("echo:q7")
        assert all(r.latency_s > 0 for r in out)
        assert out[0].extra["finish_reason"] == "stop"
        assert server.count == 200
        assert st["totals"]["ok"] == 200 and st["totals"]["failed"] == 0
        assert st["endpoints"][0]["sent"] == 200 and st["endpoints"][0]["in_flight"] == 0
        assert st["endpoints"][0]["latency_p95_s"] >= st["endpoints"][0]["latency_p50_s"] > 0

    asyncio.run(main())


def test_usage_missing_is_estimated() -> None:
    async def main() -> None:
        server = FakeServer()
        server.usage = False
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)], retry=FAST)
            (r,) = await backend.generate(reqs(1))
            await backend.close()
        assert r.prompt_tokens == math.ceil(len("You are an agent.q0") / 4)
        assert r.completion_tokens == math.ceil(len("echo:q0") / 4)

    asyncio.run(main())


def test_max_in_flight_respected() -> None:
    async def main() -> None:
        server = FakeServer(latency=0.02)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, max_in_flight=8)], retry=FAST)
            out = await backend.generate(reqs(100))
            st = backend.stats()["endpoints"][0]
            await backend.close()
        assert all(r.error is None for r in out)
        assert server.peak == 8
        assert st["max_in_flight_seen"] == 8

    asyncio.run(main())


@pytest.mark.slow
def test_least_outstanding_keeps_both_endpoints_full() -> None:
    async def main() -> None:
        small, big = FakeServer(latency=0.05), FakeServer(latency=0.05)
        async with serve(small) as url_s, serve(big) as url_b:
            backend = OpenAIBackend([EndpointConfig(url_s, max_in_flight=4),
                                     EndpointConfig(url_b, max_in_flight=12)], retry=FAST)
            t0 = time.perf_counter()
            out = await backend.generate(reqs(400))
            elapsed = time.perf_counter() - t0
            await backend.close()
        assert all(r.error is None for r in out)
        assert 3 <= small.peak <= 4 and 10 <= big.peak <= 12
        share = small.count / (small.count + big.count)
        assert 0.19 <= share <= 0.31, share
        # 400 requests / 16 slots * 0.05 s = 1.25 s when both stay full (the peaks and the share
        # above are the real check; this bound only catches gross serialisation on a busy box).
        assert elapsed < 4.0, elapsed

    asyncio.run(main())


# ---------------------------------------------------------------------- retries


@pytest.mark.slow
def test_429_with_retry_after_is_honoured() -> None:
    def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        return error(429, "slow down", {"Retry-After": "1"}) if n == 1 else None

    async def main() -> None:
        server = FakeServer(script=script)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)], retry=FAST)
            t0 = time.perf_counter()
            (r,) = await backend.generate(reqs(1))
            elapsed = time.perf_counter() - t0
            st = backend.stats()
            await backend.close()
        assert r.error is None and r.text == "echo:q0" and r.attempts == 2
        assert elapsed >= 0.95, elapsed  # FAST's own backoff is at most 0.05 s
        assert st["endpoints"][0]["retried"] == 1 and not st["endpoints"][0]["ejected"]

    asyncio.run(main())


def test_500_retried_then_succeeds() -> None:
    def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        return error(500, "flaky") if n <= 2 else None

    async def main() -> None:
        server = FakeServer(script=script)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)], retry=FAST)
            (r,) = await backend.generate(reqs(1))
            await backend.close()
        assert r.error is None and r.text == "echo:q0" and r.attempts == 3

    asyncio.run(main())


def test_500_fails_after_max_attempts() -> None:
    async def main() -> None:
        server = FakeServer(script=lambda s, b, n: error(500, "boom"))
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)], retry=FAST, eject_after=100)
            (r,) = await backend.generate(reqs(1))
            st = backend.stats()
            await backend.close()
        assert r.text == "" and r.attempts == 4 and server.count == 4
        assert r.error is not None and r.error.startswith("HTTP 500 after 4 attempts: boom")
        assert st["totals"]["failed"] == 1 and st["endpoints"][0]["retried"] == 3
        assert st["endpoints"][0]["failed"] == 1

    asyncio.run(main())


def test_400_not_retried() -> None:
    def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        if body["messages"][-1]["content"] == "q1":
            return web.json_response({"object": "error", "message": "unknown model"}, status=400)
        return None

    async def main() -> None:
        server = FakeServer(script=script)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)], retry=FAST)
            out = await backend.generate(reqs(3))
            await backend.close()
        assert out[1].error == "HTTP 400: unknown model" and out[1].attempts == 1
        assert out[0].text == "echo:q0" and out[2].text == "echo:q2"
        assert server.count == 3

    asyncio.run(main())


def test_timeout_fails_one_request_and_answers_the_rest() -> None:
    async def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        if body["messages"][-1]["content"] == "q5":
            await server.release.wait()  # hang until the server shuts down
        return None

    async def main() -> None:
        server = FakeServer(script=script)
        policy = RetryPolicy(max_attempts=2, backoff_s=0.01, timeout_s=0.3)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, max_in_flight=4)], retry=policy)
            t0 = time.perf_counter()
            out = await backend.generate(reqs(20))
            elapsed = time.perf_counter() - t0
            await backend.close()
        assert out[5].error is not None and out[5].error.startswith("timeout after 2 attempts")
        assert out[5].attempts == 2
        assert all(r.text == f"echo:q{i}" for i, r in enumerate(out) if i != 5)
        assert 0.6 <= elapsed < 2.0, elapsed

    asyncio.run(main())


def test_connection_refused_is_retried_then_error() -> None:
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}/v1"
        backend = OpenAIBackend([EndpointConfig(url)], retry=FAST, eject_after=100)
        out = await backend.generate(reqs(3))
        await backend.close()
        for r in out:
            assert r.error is not None and r.error.startswith("connection error after 4 attempts")
            assert r.attempts == 4

    asyncio.run(main())


# ---------------------------------------------------------------------- ejection


def test_ejection_and_probe_back_in() -> None:
    def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        return error(503, "down") if server.broken else None

    async def main() -> None:
        bad, good = FakeServer(script=script), FakeServer(latency=0.005)
        bad.broken = True
        async with serve(bad) as url_bad, serve(good) as url_good:
            backend = OpenAIBackend([EndpointConfig(url_bad, max_in_flight=4),
                                     EndpointConfig(url_good, max_in_flight=4)],
                                    retry=FAST, eject_after=3, probe_after_s=0.3)
            out = await backend.generate(reqs(40))
            st = backend.stats()["endpoints"][0]
            assert all(r.error is None and r.endpoint == url_good for r in out)
            assert st["ejected"] and st["ejections"] == 1
            assert bad.count <= 8  # taken out after a few failures, not sent the batch

            bad.broken = False
            await asyncio.sleep(0.35)
            out = await backend.generate(reqs(40))
            st = backend.stats()["endpoints"][0]
            await backend.close()
        assert all(r.error is None for r in out)
        assert not st["ejected"] and st["ejections"] == 1
        assert any(r.endpoint == url_bad for r in out)  # back in rotation after the probe

    asyncio.run(main())


def test_all_ejected_waits_for_probe_window() -> None:
    def script(server: FakeServer, body: dict[str, Any], n: int) -> web.Response | None:
        return error(502, "warming up") if n <= 4 else None

    async def main() -> None:
        server = FakeServer(script=script)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, max_in_flight=2)], retry=FAST,
                                    eject_after=2, probe_after_s=0.2)
            t0 = time.perf_counter()
            out = await backend.generate(reqs(10))
            elapsed = time.perf_counter() - t0
            st = backend.stats()
            await backend.close()
        # Two failures eject the only endpoint (a third request was already on its way); the
        # probe after 0.2 s fails, the one after 0.4 s succeeds, and everything waiting goes
        # through instead of failing.
        assert all(r.error is None for r in out), [r.error for r in out]
        assert st["endpoints"][0]["ejections"] == 1 and not st["endpoints"][0]["ejected"]
        assert elapsed >= 0.38, elapsed
        assert server.count == 14

    asyncio.run(main())


def test_all_ejected_wait_is_bounded_by_retry_policy() -> None:
    async def main() -> None:
        server = FakeServer(script=lambda s, b, n: error(500, "dead"))
        policy = RetryPolicy(max_attempts=2, backoff_s=0.01, timeout_s=0.2)
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, max_in_flight=1)], retry=policy,
                                    eject_after=1, probe_after_s=30.0)
            t0 = time.perf_counter()
            out = await backend.generate(reqs(3))
            elapsed = time.perf_counter() - t0
            await backend.close()
        assert all(r.error is not None for r in out)
        assert any("no healthy endpoint" in (r.error or "") for r in out)
        assert elapsed < 2.0, elapsed  # not the 30 s probe window
        assert server.count == 1

    asyncio.run(main())


def test_health_counts_retries_as_stats_does() -> None:
    """One definition of a retry: an attempt that found every endpoint ejected is not one."""
    async def main() -> None:
        url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens
        policy = RetryPolicy(max_attempts=3, backoff_s=0.01, timeout_s=0.2)
        backend = OpenAIBackend([EndpointConfig(url)], retry=policy, eject_after=1,
                                probe_after_s=30.0)
        out = await backend.generate(reqs(1))
        totals = backend.stats()["totals"]
        health = backend.health()
        await backend.close()
        assert "no healthy endpoint" in (out[0].error or "")
        assert totals["attempts"] == 3 and totals["no_endpoint"] == 2
        # the first attempt failed and was tried again; the other two found no endpoint
        assert health == {"retries": totals["retries"], "ejections": 1}
        assert totals["retries"] == 1

    asyncio.run(main())


# ---------------------------------------------------------------------- limits, keys, body


@pytest.mark.slow
def test_rate_limit() -> None:
    async def main() -> None:
        server = FakeServer()
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url, rate_limit_rps=50)], retry=FAST)
            t0 = time.perf_counter()
            out = await backend.generate(reqs(100))
            elapsed = time.perf_counter() - t0
            await backend.close()
        assert all(r.error is None for r in out)
        assert 1.9 <= elapsed < 3.0, elapsed

    asyncio.run(main())


def test_api_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POPULACE_TEST_KEY", "sk-test-123")

    async def main() -> None:
        with_key, without = FakeServer(), FakeServer()
        async with serve(with_key) as url_k, serve(without) as url_n:
            b1 = OpenAIBackend([EndpointConfig(url_k, api_key_env="POPULACE_TEST_KEY")])
            b2 = OpenAIBackend([EndpointConfig(url_n)])
            await b1.generate(reqs(3))
            await b2.generate(reqs(1))
            await b1.close()
            await b2.close()
        assert with_key.auth == ["Bearer sk-test-123"] * 3
        assert without.auth == [None]

    asyncio.run(main())


def test_missing_api_key_env_and_bad_config_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POPULACE_NO_SUCH_KEY", raising=False)
    with pytest.raises(BackendError, match="POPULACE_NO_SUCH_KEY"):
        OpenAIBackend([EndpointConfig("http://127.0.0.1:8000/v1",
                                      api_key_env="POPULACE_NO_SUCH_KEY")])
    with pytest.raises(BackendError, match="at least one endpoint"):
        OpenAIBackend([])
    for bad in ("127.0.0.1:8000/v1", "ftp://host/v1", "http:///v1", ""):
        with pytest.raises(BackendError, match="base_url"):
            OpenAIBackend([EndpointConfig(bad)])
    with pytest.raises(BackendError, match="max_in_flight"):
        OpenAIBackend([EndpointConfig("http://h/v1", max_in_flight=0)])


def test_request_body_and_response_format() -> None:
    schema = {"type": "object", "properties": {"action": {"type": "string"}},
              "required": ["action"]}

    async def main() -> None:
        server = FakeServer()
        async with serve(server) as url:
            backend = OpenAIBackend([EndpointConfig(url)])
            await backend.generate(reqs(1, schema=schema, seed=11, temperature=0.2,
                                        max_tokens=64, top_p=0.9))
            await backend.generate(reqs(1))
            plain = OpenAIBackend([EndpointConfig(url)], use_response_format=False)
            await plain.generate(reqs(1, schema=schema))
            await backend.close()
            await plain.close()
        first, second, third = server.bodies
        assert first["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "decision", "schema": schema, "strict": True}}
        assert (first["model"], first["seed"], first["temperature"], first["max_tokens"],
                first["top_p"]) == ("m", 11, 0.2, 64, 0.9)
        assert first["messages"][1] == {"role": "user", "content": "q0"}
        assert "response_format" not in second and "seed" not in second
        assert "response_format" not in third

    asyncio.run(main())


def test_retry_after_and_error_text_parsing() -> None:
    from email.utils import formatdate

    from populace.simulator.llm.openai_backend import _error_text, _retry_after

    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    in_3s = _retry_after(formatdate(time.time() + 3, usegmt=True))
    assert in_3s is not None and 1.5 <= in_3s <= 3.5
    assert _error_text(b'{"error": {"message": "rate limited"}}') == "rate limited"
    assert _error_text(b'{"object": "error", "message": "bad"}') == "bad"
    assert _error_text(b'{"detail": "Not Found"}') == "Not Found"
    assert _error_text(b"<html>oops</html>") == "<html>oops</html>"


# ---------------------------------------------------------------------- separate-process server


@pytest.fixture(scope="module")
def external_url() -> Iterator[str]:
    """The fixture server (zero latency) in its own process, so only client CPU is measured."""
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), "fixture server did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_backend_survives_a_new_event_loop(external_url: str) -> None:
    backend = OpenAIBackend([EndpointConfig(external_url, max_in_flight=8)], retry=FAST)
    with warnings.catch_warnings():
        # The first loop ends without close(): its sockets can only be dropped, not closed,
        # which Python reports as ResourceWarnings when they are collected.
        warnings.simplefilter("ignore", ResourceWarning)
        first = asyncio.run(backend.generate(reqs(20)))

        async def again() -> list[ChatResponse]:
            out = await backend.generate(reqs(20))  # session re-created for the new loop
            await backend.close()
            return out

        second = asyncio.run(again())
        gc.collect()
    assert [r.text for r in first] == [r.text for r in second] == [f"echo:q{i}"
                                                                   for i in range(20)]


@pytest.mark.slow
def test_client_cpu_per_request(external_url: str) -> None:
    """Measured and printed, not asserted: client CPU per request (time.process_time)."""
    n = 2000

    async def main() -> tuple[float, float]:
        backend = OpenAIBackend([EndpointConfig(external_url, max_in_flight=64)], retry=FAST)
        await backend.generate(reqs(200))  # warm up: connections, imports, code paths
        batch = reqs(n)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        out = await backend.generate(batch)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        await backend.close()
        assert all(r.error is None for r in out)
        return cpu, wall

    cpu, wall = asyncio.run(main())
    print(f"\nOpenAIBackend client CPU: {cpu / n * 1e3:.3f} ms/request "
          f"({n} requests, {wall:.2f} s wall, {n / wall:.0f} req/s)")


def _serve_forever() -> None:
    async def main() -> None:
        async with serve(FakeServer()) as url:
            print(url, flush=True)
            await asyncio.Event().wait()  # until the test terminates us

    asyncio.run(main())


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve_forever()
