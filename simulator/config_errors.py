"""Located config errors: pydantic's own validation messages, pointed into the YAML file.

``populace validate`` and ``populace run`` report every problem of a config at once. For each
error of a pydantic ``ValidationError`` the message is pydantic's ``msg`` (for a project
validator's ``ValueError``, its own text), and this module adds what a YAML author needs to
find and fix it:

- the location as a dotted path (``scenario.feed.size``), pydantic's union labels (the tag of
  a discriminated union, a plain union's member name) taken out;
- the line and column of that key or value in the file (:class:`Marks`);
- the offending value, shortened (``(got 'ten')``);
- a "did you mean" for an unknown key (``extra_forbidden``) and for a literal, enum or
  discriminator choice (:mod:`difflib`).

A plain union's members each report the same value; their messages become one problem. A
discriminated union reports only the member its tag selects (pydantic already does).

The problem types live in :mod:`.config_problems` and the YAML loading in
:mod:`.yaml_positions`; both are re-exported here, the one import for callers.

Typical use::

    data, marks = load_yaml("exp.yaml")
    config = validate(ExperimentConfig, data, marks, source="exp.yaml")
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_core.core_schema import ErrorType

from .config_problems import ConfigError, Problem, format_path, show_value
from .yaml_positions import Loc, Marks, load_yaml, load_yaml_text

__all__ = [
    "ConfigError",
    "Marks",
    "Problem",
    "check",
    "format_path",
    "load_yaml",
    "load_yaml_text",
    "problems_from_validation_error",
    "validate",
]

M = TypeVar("M", bound=BaseModel)

# Labels pydantic gives a union member that is a validator or wrapper schema, e.g.
# "function-after[_check(), NormalDist]": never a key of the document.
_LABEL = re.compile(
    r"^(function-(after|before|wrap|plain)|json-or-python|lax-or-strict|chain|is-instance|"
    r"tagged-union|union|nullable|default|definition-ref|model|dataclass|typed-dict)\["
)
# Errors about a field absent from the input: the last loc element is not in the file.
_ABSENT = {"missing", "missing_argument", "missing_keyword_only_argument",
           "missing_positional_only_argument"}
# pydantic's own messages never quote the input, so the value is shown after them; a project
# validator's message (value_error, a custom type) is written to name it already.
_SHOW_VALUE = frozenset(get_args(ErrorType)) - _ABSENT - {
    "extra_forbidden", "union_tag_invalid", "union_tag_not_found", "value_error",
    "assertion_error"}

# A type met on the way down a model, with the discriminator of the union it is a member of.
_Cand = tuple[Any, "str | None"]


# --------------------------------------------------------------------------- model walking


def _disc(meta: FieldInfo | Discriminator | None) -> str | None:
    """The field name of a ``Field(discriminator=...)`` or ``Discriminator``, if it is one."""
    disc = getattr(meta, "discriminator", None)
    if isinstance(disc, Discriminator):
        disc = disc.discriminator
    return disc if isinstance(disc, str) else None


def _members(tp: Any, disc: str | None = None) -> list[_Cand]:
    """Flatten ``Annotated``, ``Optional`` and unions into their member types."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *metadata = get_args(tp)
        for meta in metadata:
            if isinstance(meta, FieldInfo | Discriminator):
                disc = _disc(meta) or disc
        return _members(base, disc)
    if origin is Union or origin is types.UnionType:
        return [c for arg in get_args(tp) if arg is not type(None) for c in _members(arg, disc)]
    return [(tp, disc)]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field(model: type[BaseModel], name: Any) -> FieldInfo | None:
    return next((info for field_name, info in model.model_fields.items()
                 if name in (field_name, info.alias, info.validation_alias)), None)


def _step(cand: _Cand, element: Any) -> list[_Cand]:
    """The types one level below ``cand`` along a key or index."""
    tp = cand[0]
    if _is_model(tp):
        info = _field(tp, element)
        return _members(info.annotation, _disc(info)) if info is not None else []
    origin, args = get_origin(tp), get_args(tp)
    if not isinstance(origin, type):
        return []
    if issubclass(origin, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return _members(args[0])
        return _members(args[element]) if type(element) is int and element < len(args) else []
    if issubclass(origin, Mapping) and len(args) == 2:
        return _members(args[1])
    if issubclass(origin, Iterable) and len(args) == 1:
        return _members(args[0])
    return []


def _is_member(cand: _Cand, label: Any) -> bool:
    """Whether pydantic's union label ``label`` (a discriminator tag or a class name) names it."""
    tp, disc = cand
    if not _is_model(tp):
        return False
    info = _field(tp, disc) if disc else None
    tags = [v for t, _ in _members(info.annotation) if get_origin(t) is Literal
            for v in get_args(t)] if info is not None else []
    return label == tp.__name__ or any(str(tag) == str(label) for tag in tags)


def _input_keys(model: Any, steps: Sequence[tuple[Any, bool]]) -> list[str]:
    """Keys accepted by the mapping that pydantic's ``steps`` lead to (for "did you mean").

    Args:
        model: The validated model.
        steps: pydantic's loc, each element with whether it is a union label.

    Returns:
        Field names (or their aliases) of the models found there, in declaration order.
    """
    cands = _members(model)
    for element, label in steps:
        if label:  # a tag or member name: keep the members it names, all if none
            cands = [c for c in cands if _is_member(c, element)] or cands
        else:
            cands = [c for cand in cands for c in _step(cand, element)]
    keys: list[str] = []
    for tp, _ in cands:
        if _is_model(tp):
            by_name = tp.model_config.get("populate_by_name") or tp.model_config.get(
                "validate_by_name")
            for name, info in tp.model_fields.items():
                alias = info.validation_alias if isinstance(info.validation_alias, str) else None
                alias = alias or info.alias
                keys += [alias or name] + ([name] if alias and by_name else [])
    return list(dict.fromkeys(keys))


# --------------------------------------------------------------------------- pydantic errors


@dataclasses.dataclass
class _Where:
    """Where a pydantic error's loc points in the document."""

    path: Loc  # keys and indices of the document, the loc prefix included
    steps: list[tuple[Any, bool]]  # pydantic's loc, each element with: is it a union label?
    key: bool  # the error is about a mapping key, not its value


def _where(loc: Sequence[Any], kind: str, prefix: Loc, marks: Marks) -> _Where:
    """Separate the document's keys from pydantic's union labels by following the document.

    A loc element absent from the document is a union label (pydantic names the member it
    tried), except for a missing field's name and anything below a place the document lacks.
    """
    path, steps, key = prefix, [], False
    inside = marks.exists(prefix)
    for index, element in enumerate(loc):
        if inside and marks.exists((*path, element)):
            label = False
        elif element == "[key]":
            key = True
            continue
        elif isinstance(element, str) and _LABEL.match(element):
            label = True
        elif (not inside or type(element) is int
              or (index == len(loc) - 1 and kind in _ABSENT)):
            label, inside = False, False
        else:
            label = True
        steps.append((element, label))
        if not label:
            path = (*path, element)
    return _Where(path, steps, key)


def _listed(text: Any) -> list[str]:
    """The choices of pydantic's ``"'a', 'b' or 'c'"`` listing (a literal's or tags' ``ctx``)."""
    if not isinstance(text, str):
        return []
    quoted = re.findall(r"'([^']*)'", text)
    return quoted or [part for part in re.split(r", | or ", text) if part]


def _closest(word: Any, options: Sequence[str]) -> str | None:
    """The option closest to ``word`` (same but for case first, then :mod:`difflib`'s)."""
    if isinstance(word, bool) or not isinstance(word, str | int | float):
        return None
    text = str(word)
    if text in options:
        return None
    same_case = {option.lower(): option for option in options}
    if text.lower() in same_case:
        return same_case[text.lower()]
    matches = difflib.get_close_matches(text, options, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _problem(error: ErrorDetails, prefix: Loc, marks: Marks,
             model: type[BaseModel] | None) -> tuple[Problem, bool]:
    """One located problem for one pydantic error, and whether it is a plain union member's."""
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")
    where = _where(error["loc"], kind, prefix, marks)
    path = where.path
    message = error["msg"]
    if kind in ("value_error", "assertion_error") and str(ctx.get("error", "")):
        # The validator's own text, without pydantic's "Value error, " prefix.
        message = str(ctx["error"])
    word: Any = value
    choices: list[str] = []
    if kind == "extra_forbidden":
        word = path[-1] if path else None
        choices = _input_keys(model, where.steps[:-1]) if model is not None else []
    elif kind in ("literal_error", "enum"):
        choices = _listed(ctx.get("expected"))
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        word, choices = ctx.get("tag"), _listed(ctx.get("expected_tags"))
        disc = str(ctx.get("discriminator", "")).strip("'\"")
        if disc.isidentifier():
            path = (*path, disc)  # point at the tag itself, not its whole mapping
    suggestion = _closest(word, choices)
    # An unknown key with no close match: say which keys are known (pydantic does not).
    expected = ("one of: " + ", ".join(choices)
                if kind == "extra_forbidden" and choices and suggestion is None else None)
    shown = show_value(value) if kind in _SHOW_VALUE and not isinstance(value, dict) else None
    # A block mapping's value starts at its first entry: point at its key instead.
    at_key = where.key or kind == "extra_forbidden" or marks.is_mapping(path)
    line, column = marks.locate(path, key=at_key) or (None, None)
    problem = Problem(format_path(path), message, line, column, expected, suggestion, shown)
    member = bool(where.steps) and where.steps[-1][1] and kind not in ("value_error",
                                                                        "assertion_error")
    return problem, member


def _merge(found: Iterable[tuple[Problem, bool]]) -> list[Problem]:
    """One problem per value of a plain union (each member reports it), messages joined by
    "or"; exact duplicates dropped."""
    problems: list[Problem] = []
    unions: dict[str, int] = {}  # path -> index of the problem its union members join
    for problem, member in found:
        index = unions.get(problem.path) if member else None
        if index is not None:
            kept = problems[index]
            if problem.message not in kept.message:
                problems[index] = dataclasses.replace(
                    kept, message=f"{kept.message}; or {problem.message}")
        elif problem not in problems:
            if member:
                unions[problem.path] = len(problems)
            problems.append(problem)
    return problems


def problems_from_validation_error(
    err: ValidationError,
    marks: Marks,
    *,
    loc_prefix: Sequence[Any] = (),
    model: type[BaseModel] | None = None,
) -> list[Problem]:
    """Convert every error of a pydantic ``ValidationError`` into a located :class:`Problem`.

    Args:
        err: The validation error.
        marks: Positions of the document that was validated.
        loc_prefix: Location of the validated data inside the document, when a sub-part
            (e.g. ``("scenario",)``) was validated by a separate model.
        model: The model that was validated; needed for "did you mean" on unknown keys
            (choices of literals, enums and tags come from pydantic's error itself).

    Returns:
        One problem per error (a plain ``Union``'s members merged), in pydantic's order.
    """
    prefix = tuple(loc_prefix)
    return _merge(_problem(error, prefix, marks, model)
                  for error in err.errors(include_url=False))


def check(
    model: type[M], data: Any, marks: Marks, *, loc_prefix: Sequence[Any] = ()
) -> tuple[M | None, list[Problem]]:
    """Validate without raising, for callers that combine problems from several passes.

    Args:
        model: The pydantic model.
        data: Data to validate (the document, or the part at ``loc_prefix``).
        marks: Positions of the document.
        loc_prefix: Location of ``data`` inside the document.

    Returns:
        ``(instance, [])`` on success, ``(None, problems)`` on failure.
    """
    try:
        return model.model_validate(data), []
    except ValidationError as err:
        return None, problems_from_validation_error(err, marks, loc_prefix=loc_prefix, model=model)


def validate(
    model: type[M],
    data: Any,
    marks: Marks,
    *,
    source: str | None = None,
    loc_prefix: Sequence[Any] = (),
) -> M:
    """Validate ``data`` against ``model``, raising one error that lists every problem.

    Args:
        model: The pydantic model.
        data: Data to validate (the document, or the part at ``loc_prefix``).
        marks: Positions of the document.
        source: File name shown in the error message.
        loc_prefix: Location of ``data`` inside the document.

    Returns:
        The validated model instance.

    Raises:
        ConfigError: With one problem per validation error.
    """
    instance, problems = check(model, data, marks, loc_prefix=loc_prefix)
    if instance is None:
        raise ConfigError(problems, source)
    return instance
