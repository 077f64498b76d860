"""Interviews of language-model agents: the prompt that asks an agent in persona, the model its
reply must fit, and what becomes of a reply (answers, memories).

Core objects:
    InterviewPrompts: the ``interview.j2`` template (the experiment's template folder first,
        then the scenario's, then Populace's own), a ``system`` block shared by every agent
        asked and a ``user`` block with the agent's profile, situation, memories and questions.
    reply_model: the pydantic model of one agent's reply: one key per question id (text up to
        the question's ``max_chars``, an integer on a scale, or a JSON value that validates
        against the question's schema).
    reply_schema: the JSON schema of a reply, as sent to servers (the questions' own ``$defs``
        moved to its root, so that their ``$ref`` still resolve).
    reply_answers: a validated reply (or None) as one ``Answer`` per question.
    reply_memories: what an agent remembers of an interview it answered (``remember: true``).
    reply_tokens: the completion budget of an interview request.
    INTERVIEW, INTERVIEW_REPAIR: the ``llm_calls.kind`` of an interview request and of its
        repair.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import jinja2
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    WithJsonSchema,
    create_model,
)

from ..events import InterviewEvent, Question
from ..interviews import Answer, question_ids
from .profile_prompts import prompt_attributes

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"
"""Folder of Populace's own ``interview.j2``."""

INTERVIEW = "interview"
INTERVIEW_REPAIR = "iv_repair"
"""``llm_calls.kind`` of interview requests and their repairs (the column holds 10 characters)."""

_OWN_KEYS = ("agent_id", "profile", "memories")
"""Keys of a scenario's per-agent prompt context that the template shows in their own place."""


class InterviewPrompts:
    """Renders interview prompts from ``[<role>.]interview.j2``.

    Args:
        scenario_dir: the scenario's template folder (a scenario may ship its own
            ``interview.j2``), if any.
        user_dir: the experiment's template folder (``params.templates``), if any.
        role: the policy part's role.

    Raises:
        ValueError: the template has a syntax error or lacks its ``system`` or ``user`` block.
    """

    def __init__(self, scenario_dir: Path | None, user_dir: Path | None, role: str) -> None:
        folders = [str(d) for d in (user_dir, scenario_dir, BUILTIN_TEMPLATES) if d is not None]
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(folders), undefined=jinja2.StrictUndefined,
            autoescape=False, keep_trailing_newline=False)
        try:
            self.template = env.select_template([f"{role}.interview.j2", "interview.j2"])
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"interview template {exc.filename}, line {exc.lineno}: "
                             f"{exc.message}") from exc
        self.name = self.template.filename or "interview.j2"
        missing = {"system", "user"} - set(self.template.blocks)
        if missing:
            raise ValueError(f"interview template {self.name} has no {' or '.join(sorted(missing))}"
                             " block")

    def _render(self, block: str, variables: dict[str, Any], what: str) -> str:
        try:
            ctx = self.template.new_context(variables)
            return "".join(self.template.blocks[block](ctx)).strip()
        except jinja2.TemplateError as exc:
            raise ValueError(f"interview template {self.name}, {what}: {exc}") from exc

    def system(self, shared: dict[str, Any]) -> str:
        """The system part shared by every agent asked."""
        return self._render("system", dict(shared), "the system block")

    def user(self, shared: dict[str, Any], context: dict[str, Any], memories: list[str],
             event: InterviewEvent) -> str:
        """One agent's part: ``context`` is its entry of the scenario's prompt context."""
        variables = {
            **shared, "agent_id": context.get("agent_id", "?"),
            "profile": prompt_attributes(context.get("profile") or {}),
            "situation": situation(context), "memories": memories,
            "questions": [_question_vars(qid, q) for qid, q in
                          zip(question_ids(event), event.questions, strict=True)],
            "reply": reply_example(event)}
        return self._render("user", variables, f"agent {variables['agent_id']}")


def situation(context: dict[str, Any]) -> dict[str, Any]:
    """The plain values of an agent's prompt context (its opinion, interest, balance...):
    what it knows of its own state. Lists and mappings (a feed, a menu) are left out: an
    interview asks the person, not about the step's screen."""
    out: dict[str, Any] = {}
    for key, value in context.items():
        if key in _OWN_KEYS:
            continue
        if hasattr(value, "item") and callable(value.item) and not isinstance(value, str):
            value = value.item()  # numpy scalars
        if isinstance(value, float):
            if math.isfinite(value):
                out[key] = round(value, 2)
        elif isinstance(value, (str, int, bool)):
            out[key] = value
    return out


def _question_vars(qid: str, q: Question) -> dict[str, Any]:
    return {"id": qid, "text": q.text, "answer": q.answer, "low": q.low, "high": q.high,
            "max_chars": q.max_chars,
            "schema": json.dumps(q.schema_) if q.schema_ is not None else None}


def reply_example(event: InterviewEvent) -> str:
    """The reply expected, as the prompt shows it: ``{"q0": "<your answer>", ...}``."""
    parts = []
    for qid, q in zip(question_ids(event), event.questions, strict=True):
        if q.answer == "scale":
            shown = f"<a whole number from {q.low} to {q.high}>"
        elif q.answer == "json":
            shown = "<a JSON value following its schema>"
        else:
            shown = '"<your answer>"'
        parts.append(f"{json.dumps(qid)}: {shown}")
    return "{" + ", ".join(parts) + "}"


# -- the reply model ----------------------------------------------------------------------------

def _truncate(limit: int) -> Callable[[str], str]:
    def cut(text: str) -> str:
        return text[:limit]
    return cut


def _conforming(schema: dict[str, Any], qid: str) -> Callable[[Any], Any]:
    """A validator that accepts a value only if it validates against ``schema``."""
    cls = validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"interview question {qid!r}: its schema is not a valid JSON schema: "
                         f"{exc.message}") from None
    validator = cls(schema)

    def check(value: Any) -> Any:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path)
            raise ValueError(f"does not follow the question's schema"
                             f"{f' at {where}' if where else ''}: {errors[0].message}")
        return value
    return check


def _answer_type(qid: str, q: Question) -> Any:
    if q.answer == "scale":
        return Annotated[int, Field(ge=q.low, le=q.high)]
    if q.answer == "json":
        assert q.schema_ is not None
        # the schema is put in place by reply_schema: pydantic cannot follow the $ref of a
        # schema it did not make
        return Annotated[Any, AfterValidator(_conforming(q.schema_, qid)), WithJsonSchema({})]
    # a longer text is kept cut at max_chars (the question's "longest answer kept"), not
    # refused: the schema's maxLength already guides servers that constrain their output
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1),
                     AfterValidator(_truncate(q.max_chars)),
                     WithJsonSchema({"type": "string", "minLength": 1,
                                     "maxLength": q.max_chars})]


def reply_model(event: InterviewEvent) -> TypeAdapter[Any]:
    """The model of one agent's reply: one required key per question id, nothing else.

    Raises:
        ValueError: two questions share an id, or a question's schema is not a JSON schema.
    """
    ids = question_ids(event)
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"interview questions need distinct ids (repeated: {', '.join(twice)})")
    # fields are named a0, a1... and take the question ids as aliases: ids need not be
    # Python identifiers
    fields: dict[str, Any] = {f"a{i}": (_answer_type(qid, q), Field(alias=qid))
                              for i, (qid, q) in enumerate(zip(ids, event.questions,
                                                               strict=True))}
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        "InterviewReply", __config__=ConfigDict(extra="forbid"), **fields)
    return TypeAdapter(model)


def _escape(token: str) -> str:
    """A JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _hoisted(schema: dict[str, Any], prefix: str, pointer: str
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A question's schema without its ``$defs``/``definitions``, its local ``$ref`` rewritten
    for its place (``pointer``) inside the reply schema, and its definitions renamed with
    ``prefix`` for the reply schema's root."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def ref(target: str) -> str:
        for head in ("#/$defs/", "#/definitions/"):
            if target.startswith(head):
                name, _, rest = target[len(head):].partition("/")
                return f"#/$defs/{prefix}{name}" + (f"/{rest}" if rest else "")
        if target == "#" or target.startswith("#/"):
            return pointer + target[1:]
        return target  # not local: left for the server to refuse

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (ref(v) if k == "$ref" and isinstance(v, str) else walk(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    body = walk({k: v for k, v in schema.items() if k not in ("$defs", "definitions",
                                                                "$schema", "$id")})
    return body, {f"{prefix}{name}": walk(d) for name, d in defs.items()}


def reply_schema(reply: TypeAdapter[Any], event: InterviewEvent) -> dict[str, Any]:
    """The JSON schema of a reply (``reply`` from ``reply_model``; use this, not its own
    ``json_schema``, which leaves ``json`` questions open). A ``json`` question's
    schema sits under the reply's ``properties``; its own definitions move to the root, so
    that ``#/$defs/...`` in it point where they did."""
    schema = reply.json_schema()
    root_defs: dict[str, Any] = dict(schema.get("$defs", {}))
    for i, (qid, q) in enumerate(zip(question_ids(event), event.questions, strict=True)):
        if q.answer == "json" and q.schema_ is not None:
            body, defs = _hoisted(q.schema_, f"a{i}__", f"#/properties/{_escape(qid)}")
            schema["properties"][qid] = body
            root_defs.update(defs)
    if root_defs:
        schema["$defs"] = root_defs
    return schema


def reply_answers(reply: BaseModel | None, event: InterviewEvent, prompt: str,
                  call: str | None = None) -> list[Answer]:
    """One ``Answer`` per question of ``event`` (``valid`` False for each when ``reply`` is
    None: the agent gave no valid reply); ``call``: the hash of the request that answered."""
    if reply is None:
        return [Answer(valid=False, prompt=prompt, source="llm", call=call)
                for _ in event.questions]
    out = []
    for i, q in enumerate(event.questions):
        value = getattr(reply, f"a{i}")
        if q.answer == "scale":
            out.append(Answer(value=float(value), prompt=prompt, source="llm", call=call))
        elif q.answer == "json":
            out.append(Answer(data=value, prompt=prompt, source="llm", call=call))
        else:
            out.append(Answer(text=value, prompt=prompt, source="llm", call=call))
    return out


def reply_memories(reply: BaseModel, event: InterviewEvent) -> list[str]:
    """What an agent remembers of the interview it answered: one memory per question."""
    out = []
    for i, q in enumerate(event.questions):
        value = getattr(reply, f"a{i}")
        if q.answer == "scale":
            said = f"{value} on a scale from {q.low} to {q.high}"
        elif q.answer == "json":
            said = json.dumps(value)
        else:
            said = json.dumps(value, ensure_ascii=False)
        out.append(f"An interviewer asked me: {json.dumps(q.text, ensure_ascii=False)} "
                   f"I answered: {said}")
    return out


def reply_tokens(event: InterviewEvent, base: int) -> int:
    """Completion tokens an interview request may use: ``llm.max_tokens``, or more when the
    questions allow longer answers (about 3 characters a token, and room for JSON answers)."""
    need = 16
    for q in event.questions:
        need += 16 + (q.max_chars // 3 if q.answer == "text" else 256 if q.answer == "json"
                      else 0)
    return max(base, need)


def question_query(event: InterviewEvent) -> str:
    """The text an agent's memories are retrieved for: the questions."""
    return "\n".join(q.text for q in event.questions)


__all__ = ["BUILTIN_TEMPLATES", "INTERVIEW", "INTERVIEW_REPAIR", "InterviewPrompts",
           "question_query", "reply_answers", "reply_example", "reply_memories", "reply_model",
           "reply_schema", "reply_tokens", "situation"]
