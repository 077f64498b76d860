"""Chat messages rendered as one prompt text, for servers' plain completions endpoint.

The ``/v1/completions`` endpoint of vLLM (and SGLang, llama.cpp) takes a *list* of prompts in one
HTTP request, which divides the client's per-request cost by the list's length; but it applies no
chat template, so the client must. Built-in formats cover the common model families; any other
model's template can be given as a Jinja file in Hugging Face's convention (the
``chat_template`` string of the model's ``tokenizer_config.json``), rendered with ``messages``,
``add_generation_prompt=True``, ``bos_token`` and ``eos_token`` (both empty: vLLM adds the BOS
token itself when it tokenizes a completions prompt).

Core objects:
    CHAT_FORMATS: the built-in format names.
    make_renderer: a function from chat messages to prompt text, for a format or a template file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jinja2

Messages = list[dict[str, str]]
Renderer = Callable[[Messages], str]


def _chatml(messages: Messages) -> str:
    """Qwen, Yi, OpenHermes and other ChatML models."""
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"


def _llama3(messages: Messages) -> str:
    """Llama 3.x instruct (without <|begin_of_text|>: the server's tokenizer adds it)."""
    parts = [f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
             for m in messages]
    return "".join(parts) + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _merged_system(messages: Messages) -> list[tuple[str, str]]:
    """(role, content) turns with system text folded into the next user turn."""
    turns: list[tuple[str, str]] = []
    pending = ""
    for m in messages:
        if m["role"] == "system":
            pending += m["content"] + "\n\n"
        elif m["role"] == "user":
            turns.append(("user", pending + m["content"]))
            pending = ""
        else:
            turns.append((m["role"], m["content"]))
    if pending:
        turns.append(("user", pending.rstrip()))
    return turns


def _gemma(messages: Messages) -> str:
    """Gemma (no system role: the system text opens the first user turn)."""
    parts = [f"<start_of_turn>{'model' if role == 'assistant' else 'user'}\n{content}"
             "<end_of_turn>\n" for role, content in _merged_system(messages)]
    return "".join(parts) + "<start_of_turn>model\n"


def _mistral(messages: Messages) -> str:
    """Mistral / Mixtral instruct ([INST] blocks; system text folded into the first one)."""
    out = []
    for role, content in _merged_system(messages):
        out.append(f"[INST] {content} [/INST]" if role == "user" else f"{content}</s>")
    return "".join(out)


def _plain(messages: Messages) -> str:
    """Role-labelled paragraphs, for base models."""
    parts = [f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages]
    return "".join(parts) + "Assistant:"


CHAT_FORMATS: dict[str, Renderer] = {
    "chatml": _chatml, "llama3": _llama3, "gemma": _gemma, "mistral": _mistral, "plain": _plain,
}


def _raise(message: str) -> None:
    raise ValueError(f"chat template: {message}")


def make_renderer(chat_format: str, template: Path | None = None) -> Renderer:
    """The function that turns chat messages into one completions prompt.

    Args:
        chat_format: one of ``CHAT_FORMATS`` (ignored when ``template`` is given).
        template: a Jinja chat-template file in Hugging Face's convention.

    Raises:
        ValueError: an unknown format, or a template file that is missing or does not parse.
    """
    if template is None:
        try:
            return CHAT_FORMATS[chat_format]
        except KeyError:
            raise ValueError(f"unknown chat_format {chat_format!r}; expected one of "
                             f"{', '.join(CHAT_FORMATS)} or a chat_template file") from None
    try:
        source = template.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"llm.chat_template: cannot read {template}: {exc.strerror}") from None
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.globals["raise_exception"] = _raise
    try:
        compiled = env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"llm.chat_template {template}, line {exc.lineno}: {exc.message}") \
            from None

    def render(messages: Messages) -> str:
        return compiled.render(messages=messages, add_generation_prompt=True, bos_token="",
                               eos_token="")

    return render


__all__ = ["CHAT_FORMATS", "make_renderer"]
