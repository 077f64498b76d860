"""Several prompts per HTTP request through the completions API, and client-side chat formats."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from aiohttp import web

from populace.simulator import Simulation, experiment_from_dict
from populace.simulator.config_errors import ConfigError
from populace.simulator.llm.chat_formats import make_renderer
from populace.simulator.llm.openai_backend import EndpointConfig, OpenAIBackend, RetryPolicy
from populace.simulator.llm.types import BackendError, ChatRequest
from populace.simulator.testing.llm_server import ServerBehaviour, TestServer
from populace.simulator.testing.schema_samples import conforms

from .test_llm_policy import llm_experiment

FAST = RetryPolicy(max_attempts=4, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5.0)
SCHEMA = {"type": "object", "properties": {"action": {"enum": ["like", "do_nothing"]},
                                           "target": {"type": "integer", "minimum": 0}},
          "required": ["action", "target"], "additionalProperties": False}
OTHER = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1,
                                                    "maximum": 10}}, "required": ["score"]}


def requests(n: int, schema: dict = SCHEMA, start: int = 0) -> list[ChatRequest]:
    return [ChatRequest(messages=[{"role": "system", "content": "Rules."},
                                  {"role": "user", "content": f"agent {i} sees post {i * 7}"}],
                        model="populace-test", schema=schema, key=i, seed=i)
            for i in range(start, start + n)]


def backend(url: str, per_request: int, **kw) -> OpenAIBackend:
    return OpenAIBackend([EndpointConfig(url, max_in_flight=kw.pop("max_in_flight", 4))],
                         retry=FAST, api="completions", prompts_per_request=per_request,
                         render=make_renderer("chatml"), **kw)


async def _answer(behaviour: ServerBehaviour, batch: list[ChatRequest], per_request: int,
                  **kw):
    async with TestServer(behaviour) as srv:
        client = backend(srv.url, per_request, **kw)
        try:
            out = await client.generate(batch)
        finally:
            await client.close()
        return out, srv.stats, client.stats()


def test_prompts_share_http_requests_and_answers_keep_their_order() -> None:
    batch = requests(50)
    out, server, client = asyncio.run(_answer(ServerBehaviour(seed=1), batch, 8))
    assert server["completion_requests"] == math.ceil(50 / 8) == client["totals"]["attempts"]
    assert server["chat_requests"] == 0
    assert server["prompts_seen"] == 50
    assert [r.key for r in out] == list(range(50))
    assert all(r.error is None and conforms(SCHEMA, json.loads(r.text)) for r in out)
    assert client["totals"]["requests"] == client["totals"]["ok"] == 50
    # usage is reported per HTTP request: the shares add up to the server's totals
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in out)
    # the same prompt gets the same answer whichever request carried it
    alone, _, _ = asyncio.run(_answer(ServerBehaviour(seed=1), [batch[17]], 8))
    assert alone[0].text == out[17].text


def test_only_requests_with_the_same_schema_and_sampling_share_a_request() -> None:
    batch = requests(6) + requests(5, OTHER, start=6)
    batch[2].temperature = 0.1  # a different sampling parameter: a request of its own
    out, server, _ = asyncio.run(_answer(ServerBehaviour(), batch, 16))
    assert server["completion_requests"] == 3
    assert all(conforms(SCHEMA, json.loads(r.text)) for r in out[:6])
    assert all(conforms(OTHER, json.loads(r.text)) for r in out[6:])


def test_a_failed_request_is_retried_for_all_its_prompts() -> None:
    behaviour = ServerBehaviour(seed=5, error_rate=0.4)
    out, server, client = asyncio.run(_answer(behaviour, requests(64), 8))
    assert all(r.error is None for r in out)
    assert server["by_status"].get(500, 0) > 0
    assert server["completion_requests"] == 8 + server["by_status"][500]
    assert client["totals"]["retries"] == server["by_status"][500]
    retried = [r for r in out if r.attempts > 1]
    assert retried and len(retried) % 8 == 0  # whole requests were retried, never one prompt


def test_a_request_that_fails_for_good_fails_each_of_its_prompts() -> None:
    out, server, client = asyncio.run(_answer(ServerBehaviour(error_rate=1.0), requests(10), 4,
                                              eject_after=100))
    assert [r.key for r in out] == list(range(10))
    assert all(r.error is not None and "HTTP 500" in r.error for r in out)
    assert client["totals"]["failed"] == 10
    assert server["completion_requests"] == 3 * FAST.max_attempts


def test_a_wrong_number_of_choices_is_a_bad_response() -> None:
    async def short(request: web.Request) -> web.Response:
        body = await request.json()
        choices = [{"index": i, "text": "{}"} for i in range(len(body["prompt"]) - 1)]
        return web.json_response({"choices": choices})

    async def main():
        app = web.Application()
        app.router.add_post("/v1/completions", short)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        client = backend(f"http://127.0.0.1:{runner.addresses[0][1]}/v1", 4)
        try:
            return await client.generate(requests(4))
        finally:
            await client.close()
            await runner.cleanup()

    out = asyncio.run(main())
    assert all("3 choices for 4 prompts" in (r.error or "") for r in out)


def test_bad_completions_settings_are_refused() -> None:
    with pytest.raises(BackendError, match="needs api completions"):
        OpenAIBackend([EndpointConfig("http://127.0.0.1:9/v1")], prompts_per_request=4)
    with pytest.raises(BackendError, match="needs a render function"):
        OpenAIBackend([EndpointConfig("http://127.0.0.1:9/v1")], api="completions")
    data = llm_experiment("http://127.0.0.1:9/v1", prompts_per_request=8)
    with pytest.raises(ConfigError, match="prompts_per_request > 1 needs api: completions"):
        experiment_from_dict(data)
    data = llm_experiment("http://127.0.0.1:9/v1", api="completions", chat_format="llama2")
    with pytest.raises(ConfigError, match="chat_format"):
        experiment_from_dict(data)


def test_chat_formats_render_the_model_families_layouts(tmp_path) -> None:
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
    assert make_renderer("chatml")(messages) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n")
    assert make_renderer("llama3")(messages) == (
        "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user"
        "<|end_header_id|>\n\nU<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    assert make_renderer("gemma")(messages) == (
        "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n")
    assert make_renderer("mistral")(messages) == "[INST] S\n\nU [/INST]"
    assert make_renderer("plain")(messages) == "System: S\n\nUser: U\n\nAssistant:"
    # a Hugging Face chat template file, with its helpers
    template = tmp_path / "chat.j2"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}{% if m.role not in ['system', 'user'] %}"
        "{{ raise_exception('unexpected role ' + m.role) }}{% endif %}"
        "<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}")
    render = make_renderer("chatml", template)
    assert render(messages) == "<system>S</system><user>U</user><assistant>"
    with pytest.raises(ValueError, match="unexpected role assistant"):
        render([{"role": "assistant", "content": "A"}])
    broken = tmp_path / "broken.j2"
    broken.write_text("line one\n{% for m in messages %}\n")
    with pytest.raises(ValueError, match=r"broken.j2, line \d+"):
        make_renderer("chatml", broken)
    with pytest.raises(ValueError, match="cannot read"):
        make_renderer("chatml", tmp_path / "missing.j2")


def test_a_run_on_the_completions_api_batches_prompts_and_records_each_call(sqlite_url) -> None:
    srv = TestServer(ServerBehaviour(seed=3))
    url = srv.start_in_thread()
    try:
        data = llm_experiment(url, api="completions", prompts_per_request=16,
                              chat_format="llama3")
        result = Simulation(experiment_from_dict(data), db_url=sqlite_url).run()
    finally:
        srv.stop_thread()
    assert result.info["status"] == "completed"
    calls = result.table("llm_calls")
    stats = srv.stats
    # one prompt and one request more: the 1-token check before the first step
    assert stats["prompts_seen"] == len(calls) + 1 > 16
    assert stats["chat_requests"] == 0
    # no more HTTP requests than one per 16 prompts of each step
    steps = result.metrics()["llm.requests"].fillna(0)
    assert stats["completion_requests"] == 1 + sum(math.ceil(n / 16) for n in steps if n)
    assert calls["valid"].astype(bool).all()
    assert (calls["prompt_tokens"] > 0).all()
