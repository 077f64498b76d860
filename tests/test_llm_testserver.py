"""The OpenAI-compatible test server: answers, faults, latency and capacity, over real HTTP.

Every test talks to a real ``aiohttp.web`` server through ``aiohttp.ClientSession`` (or urllib
for the thread and subprocess modes); nothing is mocked.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import aiohttp
import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.simulator.testing.schema_samples import conforms, sample_instance

try:  # schema validation by an independent implementation when it is installed
    import jsonschema
except ImportError:  # pragma: no cover - pydantic validation still runs
    jsonschema = None

MODEL = "populace-test"


class Like(BaseModel):
    action: Literal["like_post"]
    post_id: int = Field(ge=0, le=999)
    reason: str = Field(min_length=2, max_length=60)


class Share(BaseModel):
    action: Literal["share_post"]
    post_id: int = Field(gt=0, lt=50)
    comment: str = Field(max_length=20)
    intensity: float = Field(ge=0.0, le=1.0)


class Nothing(BaseModel):
    action: Literal["do_nothing"]


Action = Annotated[Like | Share | Nothing, Field(discriminator="action")]
ADAPTER: TypeAdapter[Any] = TypeAdapter(Action)
SCHEMA: dict[str, Any] = ADAPTER.json_schema()
# Built once: jsonschema.validate() re-checks the schema itself on every call.
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA) if jsonschema is not None else None
JSON_SCHEMA_FORMAT = {"type": "json_schema",
                      "json_schema": {"name": "action", "schema": SCHEMA, "strict": True}}


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async test body in a fresh event loop (no pytest-asyncio needed)."""
    asyncio.run(coro_fn())


def chat_body(text: str, schema_format: dict[str, Any] | None = JSON_SCHEMA_FORMAT,
              **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL, "temperature": 0.7, "max_tokens": 128, "seed": 3,
        "messages": [{"role": "system", "content": "You are an agent of a social network."},
                     {"role": "user", "content": text}],
    }
    if schema_format is not None:
        body["response_format"] = schema_format
    return {**body, **extra}


def assert_valid(text: str) -> dict[str, Any]:
    """The answer validates against the schema (jsonschema) and the pydantic models."""
    value = json.loads(text)
    if VALIDATOR is not None:
        VALIDATOR.validate(value)
    ADAPTER.validate_python(value)
    return value


def is_schema_valid(value: Any) -> bool:
    if VALIDATOR is not None and not VALIDATOR.is_valid(value):
        return False
    try:
        ADAPTER.validate_python(value)
    except ValidationError:
        return False
    return True


async def post(session: aiohttp.ClientSession, url: str, body: Any,
               timeout: float | None = None) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    client_timeout = aiohttp.ClientTimeout(total=timeout) if timeout else None
    async with session.post(url, data=data, headers={"Content-Type": "application/json"},
                            timeout=client_timeout) as response:
        return response.status, await response.json(), dict(response.headers)


def test_sample_instance_follows_pydantic_schemas() -> None:
    class Node(BaseModel):
        name: str = Field(min_length=1, max_length=8)
        children: list[Node] = Field(default_factory=list, max_length=2)

    class Misc(BaseModel):
        scores: dict[str, float]
        pair: tuple[int, str]
        tags: set[str] = Field(min_length=2, max_length=4)
        step: int = Field(multiple_of=5, gt=0, le=50)
        maybe: int | None = None
        mood: Literal["calm", "angry"]
        tree: Node

    for model in (Misc, list[Action]):
        adapter: TypeAdapter[Any] = TypeAdapter(model)
        schema = adapter.json_schema()
        validator = jsonschema.Draft202012Validator(schema) if jsonschema is not None else None
        for i in range(100):
            value = sample_instance(schema, random.Random(i))
            adapter.validate_python(value)
            assert conforms(schema, value)
            if validator is not None:
                validator.validate(value)
    assert not conforms(SCHEMA, {"action": "teleport"})
    assert not conforms(SCHEMA, {"action": "like_post", "post_id": 1})


def test_chat_answers_validate_and_are_reproducible() -> None:
    async def body() -> None:
        async with TestServer(ServerBehaviour(seed=5)) as server, aiohttp.ClientSession() as s:
            url = f"{server.url}/chat/completions"
            actions = []
            for i in range(50):
                status, data, _ = await post(s, url, chat_body(f"Agent {i}: what do you do?"))
                assert status == 200
                assert data["object"] == "chat.completion" and data["model"] == MODEL
                choice = data["choices"][0]
                assert choice["finish_reason"] == "stop"
                assert choice["message"]["role"] == "assistant"
                actions.append(assert_valid(choice["message"]["content"])["action"])
                usage = data["usage"]
                assert usage["completion_tokens"] == -(-len(choice["message"]["content"]) // 4)
                assert usage["total_tokens"] == usage["prompt_tokens"] + usage[
                    "completion_tokens"]
            assert set(actions) == {"like_post", "share_post", "do_nothing"}
            # The same request gets the same answer; another seed gives other answers.
            first = (await post(s, url, chat_body("Agent 7: what do you do?")))[1]
            again = (await post(s, url, chat_body("Agent 7: what do you do?")))[1]
            assert first["choices"][0]["message"] == again["choices"][0]["message"]
            texts = {(await post(s, url, chat_body(f"Agent {i}")))[1]["choices"][0]["message"][
                "content"] for i in range(10)}
            assert len(texts) >= 5
            # No schema (or json_object): the do-nothing decision.
            for fmt in (None, {"type": "json_object"}):
                data = (await post(s, url, chat_body("hello", schema_format=fmt)))[1]
                assert json.loads(data["choices"][0]["message"]["content"]) == {
                    "action": "do_nothing"}
            stats = server.stats
            assert stats["answered"] == stats["requests"] == stats["by_status"][200] == 64
            assert stats["chat_requests"] == 64 and stats["max_concurrent"] == 1
        other = TestServer(ServerBehaviour(seed=6))
        await other.start()
        try:
            async with aiohttp.ClientSession() as s:
                changed = [(await post(s, f"{other.url}/chat/completions",
                                       chat_body(f"Agent {i}")))[1] for i in range(10)]
        finally:
            await other.stop()
        assert {c["choices"][0]["message"]["content"] for c in changed} != texts

    run(body)


def test_completions_with_prompt_lists_and_guided_json() -> None:
    async def body() -> None:
        async with TestServer(ServerBehaviour(seed=1)) as server, aiohttp.ClientSession() as s:
            url = f"{server.url}/completions"
            prompts = [f"Agent {i} sees a post about taxes." for i in range(30)]
            status, data, _ = await post(s, url, {"model": MODEL, "prompt": prompts,
                                                  "max_tokens": 64, "guided_json": SCHEMA})
            assert status == 200 and data["object"] == "text_completion"
            assert [c["index"] for c in data["choices"]] == list(range(30))
            actions = {assert_valid(c["text"])["action"] for c in data["choices"]}
            assert len(actions) >= 2
            completion = sum(-(-len(c["text"]) // 4) for c in data["choices"])
            assert data["usage"]["completion_tokens"] == completion
            assert data["usage"]["prompt_tokens"] == sum(-(-len(p) // 4) for p in prompts)
            # One prompt as a string, the schema as response_format or a JSON string.
            for extra in ({"response_format": JSON_SCHEMA_FORMAT},
                          {"guided_json": json.dumps(SCHEMA)}):
                status, single, _ = await post(
                    s, url, {"model": MODEL, "prompt": prompts[3], **extra})
                assert status == 200 and len(single["choices"]) == 1
                assert single["choices"][0]["text"] == data["choices"][3]["text"]
            stats = server.stats
            assert stats["requests"] == 3 and stats["prompts_seen"] == 32
            assert stats["completion_items"] == 32 and stats["completion_requests"] == 3

    run(body)


def test_answer_hook_models_and_request_errors() -> None:
    async def body() -> None:
        async with TestServer(ServerBehaviour(invalid_json_rate=1.0)) as server, \
                aiohttp.ClientSession() as s:
            base = server.url
            forced = '{"action": "share_post", "post_id": 4, "comment": "", "intensity": 1}'
            status, data, _ = await post(s, f"{base}/chat/completions",
                                         chat_body(f"Decide.\nANSWER: {forced}\nThanks"))
            assert status == 200 and data["choices"][0]["message"]["content"] == forced
            status, data, _ = await post(s, f"{base}/completions", {
                "model": MODEL, "prompt": ["ANSWER: not json at all", "x\nANSWER: [1, 2]"]})
            assert [c["text"] for c in data["choices"]] == ["not json at all", "[1, 2]"]
            # Only the last user message counts.
            hooked = chat_body("now decide")
            hooked["messages"].insert(1, {"role": "user", "content": 'ANSWER: {"old": 1}'})
            hooked["messages"].insert(2, {"role": "assistant", "content": "ok"})
            data = (await post(s, f"{base}/chat/completions", hooked))[1]
            assert data["choices"][0]["message"]["content"] != '{"old": 1}'

            async with s.get(f"{base}/models") as response:
                assert response.status == 200
                listed = await response.json()
            assert listed["object"] == "list" and listed["data"][0]["id"] == MODEL
            async with s.get(f"{base.removesuffix('/v1')}/health") as response:
                assert response.status == 200

            status, data, _ = await post(s, f"{base}/chat/completions",
                                         chat_body("hi", model="gpt-17"))
            assert status == 404 and {"message", "type", "code"} <= data["error"].keys()
            bad_bodies: list[Any] = [b"{not json", b"[1, 2]", {"model": MODEL},
                                     {"model": MODEL, "messages": "hello"},
                                     chat_body("hi", response_format={"type": "xml"}),
                                     chat_body("hi", temperature="hot")]
            for bad in bad_bodies:
                status, data, _ = await post(s, f"{base}/chat/completions", bad)
                assert status == 400 and data["error"]["message"], bad
            status, data, _ = await post(s, f"{base}/completions", {"model": MODEL, "prompt": 3})
            assert status == 400
            remote = {"model": MODEL, "prompt": "x", "guided_json": {"$ref": "https://x/s.json"}}
            status, data, _ = await post(s, f"{base}/completions", remote)
            assert status == 400 and "schema" in data["error"]["message"]
            assert server.stats["by_status"] == {200: 3, 404: 1, 400: 8}
            assert server.stats["requests"] == 12

    run(body)


async def timed_burst(server: TestServer, n: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        start = time.perf_counter()
        results = await asyncio.gather(*[post(s, f"{server.url}/chat/completions",
                                              chat_body(f"agent {i}")) for i in range(n)])
        elapsed = time.perf_counter() - start
    assert all(status == 200 for status, _, _ in results)
    return elapsed


@pytest.mark.slow
def test_latency_and_capacity_queue_requests() -> None:
    async def body() -> None:
        behaviour = ServerBehaviour(latency_s=0.2, capacity=5)
        async with TestServer(behaviour) as server:
            elapsed = await timed_burst(server, 20)
            assert 0.75 <= elapsed < 1.3, elapsed  # four waves of five
            assert server.stats["max_concurrent"] == 5 == behaviour.max_concurrent_seen
            server.behaviour.capacity = 0  # unlimited, changed while running
            server.reset_stats()
            elapsed = await timed_burst(server, 20)
            assert 0.19 <= elapsed < 0.5, elapsed
            assert server.stats["max_concurrent"] == 20
            assert server.stats["in_flight"] == 0

    run(body)


def test_abandoned_queued_requests_free_their_place() -> None:
    async def body() -> None:
        async with TestServer(ServerBehaviour(latency_s=0.3, capacity=1)) as server, \
                aiohttp.ClientSession() as s:
            url = f"{server.url}/chat/completions"
            quitters = [post(s, url, chat_body(f"q{i}"), timeout=0.1) for i in range(6)]
            outcomes = await asyncio.gather(*quitters, return_exceptions=True)
            assert all(isinstance(o, asyncio.TimeoutError) for o in outcomes)
            await asyncio.sleep(0.05)
            start = time.perf_counter()
            status, _, _ = await post(s, url, chat_body("patient"))
            # Only the cancelled request holding the slot could have delayed this one.
            assert status == 200 and time.perf_counter() - start < 0.65
            await asyncio.sleep(0.05)
            assert server.stats["in_flight"] == 0

    run(body)


def test_each_fault_at_rate_one() -> None:
    async def body() -> None:
        async with TestServer() as server, aiohttp.ClientSession() as s:
            url = f"{server.url}/chat/completions"
            server.behaviour = ServerBehaviour(rate_limit_rate=1.0)
            status, data, headers = await post(s, url, chat_body("a"))
            assert status == 429 and headers["Retry-After"] == "0" and data["error"]["message"]
            server.behaviour = ServerBehaviour(error_rate=1.0)
            status, data, _ = await post(s, url, chat_body("a"))
            assert status == 500 and data["error"]["type"] == "server_error"
            server.behaviour = ServerBehaviour(invalid_json_rate=1.0)
            for i in range(5):
                status, data, _ = await post(s, url, chat_body(f"a{i}"))
                assert status == 200
                with pytest.raises(json.JSONDecodeError):
                    json.loads(data["choices"][0]["message"]["content"])
            server.behaviour = ServerBehaviour(wrong_action_rate=1.0)
            for i in range(20):
                status, data, _ = await post(s, url, chat_body(f"a{i}"))
                value = json.loads(data["choices"][0]["message"]["content"])  # JSON, ...
                assert not is_schema_valid(value), value  # ... but not a valid decision
            status, data, _ = await post(s, f"{server.url}/completions", {
                "model": MODEL, "prompt": ["p1", "p2"], "guided_json": SCHEMA})
            assert all(not is_schema_valid(json.loads(c["text"])) for c in data["choices"])
            server.behaviour = ServerBehaviour()  # healthy again
            status, data, _ = await post(s, url, chat_body("a"))
            assert status == 200 and assert_valid(data["choices"][0]["message"]["content"])
            stats = server.stats
            assert stats["by_status"] == {429: 1, 500: 1, 200: 27}
            assert stats["invalid_json"] == 5 and stats["wrong_action"] == 22

    run(body)


def test_faults_are_reproducible_and_retries_draw_anew() -> None:
    async def statuses(seed: int) -> list[int]:
        behaviour = ServerBehaviour(rate_limit_rate=0.3, error_rate=0.3, seed=seed)
        async with TestServer(behaviour) as server, aiohttp.ClientSession() as s:
            url = f"{server.url}/chat/completions"
            out = [(await post(s, url, chat_body(f"agent {i}")))[0] for i in range(30)]
            # Retrying one body: each attempt is a new draw, so it gets through eventually.
            retries = [(await post(s, url, chat_body("retry me")))[0] for _ in range(12)]
            assert 200 in retries
            return out + retries

    async def body() -> None:
        first, second, other = await statuses(1), await statuses(1), await statuses(2)
        assert first == second and first != other
        assert {200, 429, 500} <= set(first)

    run(body)


def test_hung_requests_do_not_block_others() -> None:
    async def body() -> None:
        behaviour = ServerBehaviour(hang_rate=0.5, capacity=1, seed=3)
        async with TestServer(behaviour) as server, aiohttp.ClientSession() as s:
            url = f"{server.url}/chat/completions"
            start = time.perf_counter()
            outcomes = await asyncio.gather(
                *[post(s, url, chat_body(f"agent {i}"), timeout=0.3) for i in range(12)],
                return_exceptions=True)
            elapsed = time.perf_counter() - start
            answered = [o for o in outcomes if isinstance(o, tuple)]
            timed_out = [o for o in outcomes if isinstance(o, asyncio.TimeoutError)]
            assert len(answered) + len(timed_out) == 12
            assert answered and timed_out and elapsed < 0.6
            assert all(status == 200 for status, _, _ in answered)
            assert server.stats["hung"] == len(timed_out)
            await asyncio.sleep(0.3)  # hung handlers notice the clients left
            assert server.stats["in_flight"] == 0

    run(body)


def test_stop_releases_hung_requests_quickly() -> None:
    async def body() -> None:
        server = TestServer(ServerBehaviour(hang_rate=1.0))
        await server.start()
        async with aiohttp.ClientSession() as s:
            pending = asyncio.ensure_future(post(s, f"{server.url}/chat/completions",
                                                 chat_body("x"), timeout=10))
            await asyncio.sleep(0.2)
            start = time.perf_counter()
            await server.stop()
            assert time.perf_counter() - start < 2.0
            with pytest.raises((aiohttp.ClientError, aiohttp.ContentTypeError)):
                await pending

    run(body)


def _sync_post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_thread_mode_and_admin_endpoints() -> None:
    with TestServer(ServerBehaviour(seed=2)) as server:
        assert server.url is not None and server.url.startswith("http://127.0.0.1:")
        data = _sync_post(f"{server.url}/chat/completions", chat_body("sync caller"))
        assert_valid(data["choices"][0]["message"]["content"])
        root = server.url.removesuffix("/v1")
        changed = _sync_post(f"{root}/testserver/behaviour", {"error_rate": 1.0})
        assert changed["error_rate"] == 1.0 and server.behaviour.error_rate == 1.0
        with pytest.raises(urllib.error.HTTPError) as failure:
            _sync_post(f"{server.url}/chat/completions", chat_body("sync caller 2"))
        assert failure.value.code == 500
        with urllib.request.urlopen(f"{root}/testserver/stats", timeout=10) as response:
            stats = json.loads(response.read())
        assert stats["by_status"] == {"200": 1, "500": 1}
    assert server.stats["requests"] == 2
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"{root}/health", timeout=2)


@pytest.mark.slow
def test_command_line_server() -> None:
    command = [sys.executable, "-m", "populace.simulator.testing.llm_server", "--port", "0",
               "--latency", "0.01", "--capacity", "4", "--seed", "9"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), url
        data = _sync_post(f"{url}/chat/completions", chat_body("from another process"))
        assert_valid(data["choices"][0]["message"]["content"])
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert json.loads(err.strip().splitlines()[-1])["answered"] == 1
