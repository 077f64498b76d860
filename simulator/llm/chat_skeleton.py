"""Rendering a step's chats with a chat template once per conversation shape, not once per
agent.

A Jinja chat template costs about 75 us a chat; at 10,000 language-model agents that is most
of a second of a step, single-threaded, before the GPU sees anything. Most templates copy each
message's content verbatim between fixed pieces, so ``render_chats`` renders one skeleton per
shape (the sequence of roles) with markers in place of the contents, and fills the contents in.

It only does so where that is provably the template's output:

* the template's source is read (``copies_contents``): a content may only be written out as
  it is (``{{ m['content'] }}``, or joined to strings with ``+`` or ``~``) or tested for being
  empty (``{% if m.content %}``; chats with an empty content are then rendered in full). A
  content passed to a filter (``trim``), a test, a comparison, a call or a variable makes the
  template render every chat in full;
* the markers are rendered with whitespace around them and must come back intact and in order;
* a sample of chats (the first, the last and every 64th of a shape) is rendered in full and
  compared; any difference renders the whole shape in full.

Core objects:
    copies_contents: whether a template's source only copies contents.
    render_chats: the rendered text of every chat, and how many were rendered in full.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import jinja2
from jinja2 import nodes

Chat = Sequence[dict[str, str]]
#: private-use characters around a content's index: no prompt text holds them
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARK = re.compile(f"{_OPEN}(\\d+){_CLOSE}")
#: whitespace around each marker: a template that trims contents loses it, and is refused
_PAD = " \n"
#: every this many chats of a shape (and the first and last) are rendered in full and compared
CHECK_EVERY = 64


def _is_content(node: nodes.Node) -> bool:
    """``x.content`` or ``x['content']``."""
    return ((isinstance(node, nodes.Getattr) and node.attr == "content")
            or (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
                and node.arg.value == "content"))


def _verbatim(node: nodes.Node, written: bool) -> bool:
    """Whether every content under ``node`` is written out unchanged (``written``: ``node``
    is an output expression or a part of a string joined into one) or only tested for
    emptiness."""
    if _is_content(node):
        return written
    if isinstance(node, nodes.Output):
        return all(_verbatim(child, True) for child in node.nodes)
    if isinstance(node, nodes.Add | nodes.Concat):
        return all(_verbatim(child, written) for child in node.iter_child_nodes())
    if isinstance(node, nodes.If):
        test = _is_content(node.test) or _verbatim(node.test, False)
        return test and all(_verbatim(child, False)
                            for child in [*node.body, *node.elif_, *node.else_])
    return all(_verbatim(child, False) for child in node.iter_child_nodes())


def copies_contents(source: str) -> bool:
    """Whether the chat template ``source`` writes each message's content unchanged or tests
    it for emptiness, and does nothing else with it (see the module docstring)."""
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    try:
        tree = env.parse(source)
    except jinja2.TemplateSyntaxError:  # e.g. a tag of transformers' own: render in full
        return False
    return _verbatim(tree, False)


def _skeleton(render: Callable[[Chat], str], chat: Chat) -> list[str] | None:
    """The fixed pieces around each content of ``chat``'s shape (one more than the
    messages), or None where the template does not copy contents verbatim."""
    marked = [{**m, "content": f"{_PAD}{_OPEN}{i}{_CLOSE}{_PAD}"} for i, m in enumerate(chat)]
    parts = _MARK.split(render(marked))
    # [piece, index, piece, index, ..., piece]: each content once, in order, padding intact
    if [int(i) for i in parts[1::2]] != list(range(len(chat))):
        return None
    pieces = parts[0::2]
    for k in range(len(chat)):
        if not (pieces[k].endswith(_PAD) and pieces[k + 1].startswith(_PAD)):
            return None
        pieces[k] = pieces[k].removesuffix(_PAD)
        pieces[k + 1] = pieces[k + 1].removeprefix(_PAD)
    return pieces


def _fill(pieces: list[str], chat: Chat) -> str:
    out = [pieces[0]]
    for message, piece in zip(chat, pieces[1:], strict=True):
        out += [message["content"], piece]
    return "".join(out)


def render_chats(render: Callable[[Chat], str], chats: Sequence[Chat],
                 source: str | None) -> tuple[list[str], int]:
    """Every chat rendered as ``render`` (the template ``source``) would, and the number of
    chats that ``render`` rendered in full (see the module docstring). Without a source, or
    where it does more than copy contents, every chat is rendered in full."""
    if source is None or not copies_contents(source):
        return [render(c) for c in chats], len(chats)
    texts: list[str] = [""] * len(chats)
    full = 0
    by_shape: dict[tuple[str, ...], list[int]] = {}
    for i, chat in enumerate(chats):
        if all(isinstance(m.get("content"), str) and m["content"] for m in chat):
            by_shape.setdefault(tuple(m["role"] for m in chat), []).append(i)
        else:  # an empty content (the template may test it), or content parts
            texts[i] = render(chat)
            full += 1
    for members in by_shape.values():
        pieces = _skeleton(render, chats[members[0]])
        if pieces is not None:
            checked = {members[0], members[-1], *members[::CHECK_EVERY]}
            for i in members:
                texts[i] = _fill(pieces, chats[i])
            for i in checked:
                full += 1
                if render(chats[i]) != texts[i]:
                    pieces = None
                    break
        if pieces is None:
            for i in members:
                texts[i] = render(chats[i])
            full += len(members)
    return texts, full


__all__ = ["CHECK_EVERY", "copies_contents", "render_chats"]
