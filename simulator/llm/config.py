"""Configuration of language-model agents.

Core objects:
    LLMConfig: the top-level ``llm:`` section: backend, model, endpoints, sampling, response
        cache, replay, prices. Shared by every ``type: llm`` part of the policy.
    EndpointSettings: one OpenAI-compatible server.
    LLMParams: ``params`` of a ``type: llm`` policy part: prompt templates, role, fallback.
"""

from __future__ import annotations

from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .memory import MemoryConfig


class EndpointSettings(BaseModel):
    """One OpenAI-compatible server (vLLM ``serve``, SGLang, llama.cpp server, OpenAI, ...)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="e.g. http://127.0.0.1:8000/v1")
    max_in_flight: int = Field(64, ge=1, le=100_000, description="requests outstanding at once")
    rate_limit_rps: float | None = Field(None, gt=0, le=1e6, description="requests per second cap")
    api_key_env: str | None = Field(
        None, description="name of the environment variable that holds the API key (the key "
        "itself never goes in the YAML)")


class Prices(BaseModel):
    """Prices per million tokens, for the cost estimate."""

    model_config = ConfigDict(extra="forbid")

    prompt_per_million: float = Field(0.0, ge=0, le=1e6)
    completion_per_million: float = Field(0.0, ge=0, le=1e6)


class TransformersSettings(BaseModel):
    """``llm.transformers``: the in-process torch + transformers backend
    (``backend: transformers``)."""

    model_config = ConfigDict(extra="forbid")

    device: Literal["auto", "cuda", "cpu"] = Field(
        "auto", description="where the model runs: auto (a CUDA GPU when torch sees one, else "
        "the CPU), cuda or cpu")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights and activations: auto (bfloat16 on a GPU, float32 on the "
        "CPU)")
    max_batch: int = Field(256, ge=1, le=65_536, description="requests decoded together at "
                           "most (on a GPU also bounded by free memory; halved on an "
                           "out-of-memory error)")
    prefix_cache: bool = Field(True, description="encode the prompt prefix a batch shares "
                               "once and reuse its KV cache for every row")
    min_prefix_tokens: int = Field(8, ge=1, description="shortest shared prefix worth "
                                   "encoding apart")
    max_text_chars: int = Field(200, ge=1, le=100_000, description="with structured output, "
                                "the longest free-text string the grammar lets an answer hold "
                                "(so that answers end within max_tokens)")
    static_decode: bool = Field(True, description="Llama-family models (Llama, Qwen2, Qwen3, "
                                "Mistral): decode with Populace's own loop on a static KV "
                                "cache, grouped-query attention without copying the cache; "
                                "other models, or false, use transformers' forward")
    cuda_graphs: bool = Field(True, description="with static_decode on a GPU, capture a "
                              "decode step as a CUDA graph and replay it")
    prefill_tokens: int = Field(65_536, ge=256, le=16_777_216, description="with "
                                "static_decode, prompt tokens encoded together at most (a "
                                "chunk's rows are prefilled in blocks: the activations' memory)")
    ray_actor: bool = Field(False, description="on runtime ray: one actor holds the model and "
                            "answers every shard (their requests merged into large batches); "
                            "false: each shard loads the model. The local runtime ignores it")
    ray_num_gpus: float = Field(1.0, ge=0, le=1024, description="GPUs the ray_actor asks Ray "
                                "for (0 on a cluster without GPUs)")


class LLMConfig(BaseModel):
    """``llm:``: how language-model agents reach a model.

    ``backend: openai`` sends requests to ``endpoints``; ``vllm`` runs an in-process vLLM
    engine (needs a GPU and ``populace[vllm]``); ``transformers`` runs a local Hugging Face
    model in this process on torch (a GPU or the CPU; ``populace[transformers]``, settings in
    ``transformers``); ``replay`` answers from the recorded calls of
    the run named in ``replay`` (no server: the original run is reproduced exactly). A replay
    takes every key it does not set itself (model, sampling, endpoints...) from the replayed
    run's ``llm:`` section, so that its requests are the recorded ones.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["openai", "vllm", "transformers", "replay"] = "openai"
    model: str = Field("populace-test", description="model name as the server knows it; with "
                       "backend transformers, a local model folder (relative to the experiment "
                       "file) or an org/name in this machine's Hugging Face cache (checked by "
                       "populace validate; nothing is downloaded)")
    transformers: TransformersSettings = Field(default_factory=TransformersSettings)
    endpoints: list[EndpointSettings] = Field(default_factory=list)
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int = Field(256, ge=1, le=1_000_000)
    top_p: float = Field(1.0, gt=0, le=1)
    timeout_s: float = Field(60.0, gt=0, le=86_400, description="per request attempt (at most a day)")
    max_attempts: int = Field(4, ge=1, le=100, description="attempts per request (retries included)")
    api: Literal["chat", "completions"] = Field(
        "chat", description="backend openai: chat (/chat/completions, the server applies the "
        "model's chat template) or completions (/completions, Populace renders the prompt with "
        "chat_format or chat_template)")
    prompts_per_request: int = Field(
        1, ge=1, le=1024, description="with api: completions, prompts sent in one HTTP request "
        "(vLLM, SGLang and llama.cpp take a list); fewer requests, less client CPU per decision")
    chat_format: Literal["chatml", "llama3", "gemma", "mistral", "plain"] = Field(
        "chatml", description="with api: completions, how chat messages become one prompt")
    chat_template: str | None = Field(
        None, description="with api: completions, a Jinja chat template file in Hugging "
        "Face's convention (the model's tokenizer_config.json chat_template), relative to the "
        "experiment file; overrides chat_format")
    structured_output: bool = Field(
        True, description="send the answer's JSON schema (response_format / guided decoding)")
    cache: bool = Field(True, description="reuse stored answers to identical requests "
                        "(same model, sampling parameters and prompt) instead of paying twice")
    replay: str | int | None = Field(None, description="run (id or name) whose recorded calls "
                                     "answer this run's requests (with backend: replay)")
    replay_db: str | None = Field(None, description="database of the replayed run (default: "
                                  "this run's database)")
    replay_on_miss: Literal["fail", "live"] = Field(
        "fail", description="with backend: replay, what a request the replayed run never made "
        "does: fail (stop the run, saying what differs) or live (ask the model at `endpoints`; "
        "counted in llm.replay_misses)")
    record_prompts: bool = Field(True, description="store every prompt text with its answer")
    prices: Prices = Field(default_factory=Prices)
    check_endpoints: bool = Field(
        True, description="before the first step, send each endpoint one 1-token request: a run "
        "stops at once (naming the URL) when none answers within timeout_s, and warns about "
        "each one that does not")
    max_failed_share: float | None = Field(
        1.0, gt=0, le=1, description="stop the run (failed, resumable) when at least this share "
        "of a step's decisions got no answer from the model (errors, not invalid answers); 1: "
        "only when all of them failed; null: never")
    max_consecutive_failures: int | None = Field(
        100, ge=1, description="stop the run when this many requests in a row got no answer "
        "(null: never)")
    max_fallback_share: float = Field(
        0.1, ge=0, le=1, description="at the end of a run, `populace run`/`resume` exit with "
        "status 1 when more than this share of the run's LLM decisions fell back (no valid "
        "answer) or more than this share of a scenario's questions went unanswered")

    @model_validator(mode="after")
    def _backend_needs(self) -> Self:
        if self.backend == "openai" and not self.endpoints:
            raise ValueError("backend openai needs at least one entry in `endpoints`")
        if self.prompts_per_request > 1 and self.api != "completions":
            raise ValueError("prompts_per_request > 1 needs api: completions (a chat request "
                             "holds one conversation)")
        if self.backend == "replay" and self.replay is None:
            raise ValueError("backend replay needs `replay`: the run to answer from")
        return self


class LLMParams(BaseModel):
    """``params`` of a ``type: llm`` policy part."""

    model_config = ConfigDict(extra="forbid")

    role: str = Field("agent", description="prompt role: templates <role>.system.j2 and "
                      "<role>.agent.j2 are used when present")
    templates: str | None = Field(None, description="folder of templates that override the "
                                  "scenario's (relative to the experiment file)")
    fallback: str = Field("do_nothing", description="action taken when no valid answer comes")
    repair: bool = Field(True, description="send one repair request after an invalid answer")
    memory: MemoryConfig = Field(default_factory=MemoryConfig,
                                 description="each agent's memory stream and its retrieval")
