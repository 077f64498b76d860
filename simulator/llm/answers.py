"""Reading a model's answer: JSON out of free text, validated against the decision model.

Core objects:
    parse_decision: the validated decision, or the reason the answer is not one.
    got_answer: whether a recorded call (``llm_calls`` row) got an answer, valid or not.
    repair_messages: the follow-up request that asks the model to correct an invalid answer.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

EMPTY_ANSWER = "the answer is empty"
"""Why an empty answer is invalid (the one invalid answer whose recorded text is empty)."""


def _json_objects(text: str) -> list[str]:
    """Balanced ``{...}`` spans of ``text``, outermost first (models wrap JSON in prose/fences)."""
    spans, depth, start, in_str, escape = [], 0, -1, False, False
    for i, ch in enumerate(text):
        if in_str:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def parse_decision(text: str, adapter: TypeAdapter[Any]) -> tuple[BaseModel | None, str | None]:
    """Validate an answer; return ``(decision, None)`` or ``(None, why it is invalid)``."""
    try:
        return adapter.validate_json(text), None
    except ValidationError as err:
        first_error = _describe(err)
    candidates = _json_objects(text)
    if not candidates:
        return None, "the answer is not JSON" if text.strip() else EMPTY_ANSWER
    for candidate in candidates:
        try:
            return adapter.validate_json(candidate), None
        except ValidationError as err:
            first_error = _describe(err)
    return None, first_error


def got_answer(response: str | None, error: str | None) -> bool:
    """Whether a recorded call got an answer from the model (valid or not).

    The ``llm_calls.error`` column holds why a request got no answer *or* why the answer that
    came was invalid; a request without an answer is recorded with an empty response, and the
    only invalid answer with an empty text is recorded with ``EMPTY_ANSWER``.
    """
    return bool(response) or error is None or error == EMPTY_ANSWER


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e["loc"] if not str(x).startswith(("function", "tagged")))
        parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return "; ".join(parts)


def repair_messages(messages: list[dict[str, str]], answer: str, problem: str,
                    schema: dict[str, Any] | None) -> list[dict[str, str]]:
    """The conversation that asks for a corrected answer."""
    hint = (f"\nThe answer must follow this JSON schema:\n{json.dumps(schema)}" if schema
            else "")
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": f"That answer is invalid ({problem}). Reply with one JSON "
             f"object only, no other text.{hint}"}]
