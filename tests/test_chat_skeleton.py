"""Rendering chats once per shape (simulator/llm/chat_skeleton.py): the same text as rendering
each chat with its template, for templates that copy contents, trim them, or branch on them;
the skeleton is used only where the template's source shows it copies contents."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest

from populace.simulator.llm.chat_skeleton import CHECK_EVERY, copies_contents, render_chats

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Qwen2.5's way: contents joined with +, an assistant's content tested for emptiness
QWEN = ("{%- for message in messages %}{%- if message.role == 'assistant' %}"
        "{{- '<|im_start|>' + message.role }}{%- if message.content %}"
        "{{- '\\n' + message.content }}{%- endif %}{{- '<|im_end|>\\n' }}{%- else %}"
        "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
        "{%- endif %}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}")
# Llama 3's shape: each content trimmed
TRIMMED = ("<|begin_of_text|>{% for m in messages %}<|start_header_id|>{{ m['role'] }}"
           "<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
           "<|start_header_id|>assistant<|end_header_id|>\n\n")
# a template that looks inside a content
BRANCHING = ("{% for m in messages %}{% if 'URGENT' in m['content'] %}!!{% endif %}"
             "[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}")
UPPER = "{% for m in messages %}{{ m.content | upper }}{% endfor %}"


def renderer(template: str) -> Any:
    compiled = jinja2.Environment().from_string(template)
    calls = []

    def render(chat: Any) -> str:
        calls.append(1)
        return compiled.render(messages=chat, add_generation_prompt=True)

    render.calls = calls  # type: ignore[attr-defined]
    return render


def chats(n: int) -> list[list[dict[str, str]]]:
    system = {"role": "system", "content": "You are a villager. Answer with JSON."}
    out = [[system, {"role": "user", "content": f"Agent {i}: your feed {'x' * (i % 7)}."}]
           for i in range(n)]
    out[150][1]["content"] = "URGENT: " + out[150][1]["content"]
    out[7][1]["content"] = "  padded with spaces \n"  # a trimming template changes it
    out.append([{"role": "user", "content": "No system message here."}])  # another shape
    out.append([system, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""}])  # an empty content: tested by QWEN
    return out


@pytest.mark.parametrize("template", [CHATML, QWEN, TRIMMED, BRANCHING, UPPER])
def test_every_chat_renders_as_its_template_does(template: str) -> None:
    cs = chats(300)
    texts, full = render_chats(renderer(template), cs, template)
    assert texts == [renderer(template)(c) for c in cs]
    assert texts[150] != texts[151]


def test_which_templates_only_copy_contents() -> None:
    assert copies_contents(CHATML) and copies_contents(QWEN)
    for changes in (TRIMMED, BRANCHING, UPPER, "{% set c = messages[0].content %}{{ c }}",
                    "{{ messages[0]['content'] == 'x' }}", "{{ messages | tojson }}x"
                    "{{ messages[0].content | tojson }}", "{% generation %}{% endgeneration %}"):
        assert not copies_contents(changes), changes


def test_a_verbatim_template_renders_each_shape_once_plus_the_checks() -> None:
    render = renderer(CHATML)
    cs = chats(300)
    texts, full = render_chats(render, cs, CHATML)
    checked = len({0, 299, *range(0, 300, CHECK_EVERY)}) + 1 + 1  # + the 1-chat shape's one
    assert full == checked  # + the chat with an empty content, rendered in full
    assert len(render.calls) == checked + 2  # and one skeleton for each of the two shapes
    render = renderer(TRIMMED)  # refused from its source: every chat in full
    assert render_chats(render, cs, TRIMMED)[1] == len(cs) == len(render.calls)
    render = renderer(CHATML)  # no source given: in full
    assert render_chats(render, cs, None)[1] == len(cs)


def test_a_template_whose_source_hides_a_change_is_caught_by_the_checks() -> None:
    """A renderer that changes a content where its source does not say so (here: the
    source passed is not the one rendering) is caught by the markers or the sampled checks."""
    cs = chats(300)
    for actual in (TRIMMED, UPPER):
        texts, full = render_chats(renderer(actual), cs, CHATML)
        assert texts == [renderer(actual)(c) for c in cs] and full >= 300
