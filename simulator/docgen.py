"""Generate the experiment YAML reference (docs/yaml-reference.md) from the pydantic models.

Run ``python -m populace.simulator.docgen > docs/yaml-reference.md``. ``tests/test_docs.py`` checks
that the committed file equals this module's output, so the reference cannot drift from the code.

Core objects:
    render_reference: the whole reference as Markdown text (deterministic).
    model_anchors: the heading anchor of each documented model (used by tests/test_docs.py).
    TypeRenderer: turns an annotation and its constraints into readable text, e.g.
        ``float in [0, 1]``, ``one of: rule, mixed``, ``mapping of str to list of float``.
    slugify: the heading anchor GitHub gives a Markdown heading (used for links).
    main: print the reference.

Descriptions come from each field's ``Field(description=...)``, else from the ``Attributes:``
section of its model's docstring, else from ``FALLBACK`` below (for fields whose models carry no
description yet). A model's docstring becomes the text above its table.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import PurePath
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .config import ExperimentConfig, ScenarioSection
from .llm.config import LLMParams
from .policy import PolicyConfig, PolicyPart
from .registry import available_scenarios, get_scenario

COMMAND = "python -m populace.simulator.docgen > docs/yaml-reference.md"

# Descriptions for fields whose model gives none (neither Field(description=...) nor an
# "Attributes:" docstring entry). Keyed by (model class name, field name). A description added
# to the model itself takes precedence, so these can be deleted once the models carry them.
FALLBACK: dict[tuple[str, str], str] = {
    ("ExperimentConfig", "policy"): "Who decides what agents do: the scenario's rule policy, "
    "or several policies for different groups of agents.",
    ("ExperimentConfig", "network"): "The initial follow graph; `generator` picks how it is made.",
    ("ScenarioSection", "type"): "The scenario to simulate; the section's other keys are that "
    "scenario's own (see the scenario sections below).",
    ("StorageConfig", "url"): "SQLAlchemy database URL. Unset: the SQLite file "
    "`populace_runs/<name>.sqlite` under the current folder.",
    ("ActivationConfig", "probability"): "Chance that each agent acts in a step, the same every "
    "step. When neither `probability`, `hourly` nor `groups` is given it is 1 (everyone acts).",
    ("ActivationConfig", "hourly"): "Chance that an agent acts, for each hour 0-23 of the "
    "simulated day.",
    ("ActivationConfig", "by"): "Attribute whose value picks an agent's profile in `groups`.",
    ("ActivationConfig", "groups"): "A 24-hour profile per value of the `by` attribute (values "
    "compared as text). Agents with another value use `hourly` (never active if it is unset).",
    ("ActivationConfig", "scale_by"): "Numeric attribute that multiplies each agent's "
    "probability (the product is clipped to [0, 1]).",
    ("PolicyConfig", "type"): "`rule`: the scenario's rule policy for every agent; `mixed`: "
    "agents split among `parts`.",
    ("PolicyConfig", "params"): "Parameters of the scenario's rule policy, checked by the "
    "scenario's `policy.params` model (see the scenario sections below).",
    ("PolicyConfig", "parts"): "For `type: mixed` only: agents take the first part whose "
    "`select` matches them, in order.",
    ("PolicyPart", "select"): "Which agents follow this part. Empty: every agent not taken by "
    "an earlier part.",
    ("PolicyPart", "type"): "Policy kind of this part (only `rule` exists so far).",
    ("PolicyPart", "params"): "Parameters of the scenario's rule policy for these agents.",
    ("Selection", "where"): "Keep agents whose attribute equals the value (a list: any of the "
    "values).",
    ("Selection", "fraction"): "Then keep each matching agent with this probability (seeded), "
    "i.e. about this share of them.",
    ("CategoricalDist", "values"): "The possible values (a list), or a mapping of value to "
    "weight.",
    ("CategoricalDist", "weights"): "One weight per entry of a `values` list (uniform if "
    "omitted); weights are normalised.",
    ("NormalDist", "mean"): "Mean.",
    ("NormalDist", "sd"): "Standard deviation.",
    ("TruncNormalDist", "mean"): "Mean of the normal before truncation.",
    ("TruncNormalDist", "sd"): "Standard deviation of the normal before truncation.",
    ("TruncNormalDist", "low"): "Lower bound (unset: none).",
    ("TruncNormalDist", "high"): "Upper bound (unset: none).",
    ("LogNormalDist", "mean"): "Mean of the logarithm.",
    ("LogNormalDist", "sigma"): "Standard deviation of the logarithm.",
    ("UniformDist", "low"): "Lower bound (inclusive).",
    ("UniformDist", "high"): "Upper bound (exclusive).",
    ("IntegerDist", "low"): "Smallest value (inclusive).",
    ("IntegerDist", "high"): "Largest value (inclusive).",
    ("ConstantDist", "value"): "The value every agent gets.",
    ("BetaDist", "a"): "First shape parameter (alpha).",
    ("BetaDist", "b"): "Second shape parameter (beta).",
    ("BetaDist", "low"): "Value that 0 maps to.",
    ("BetaDist", "high"): "Value that 1 maps to.",
    ("ConditionalDist", "by"): "The attribute whose value picks the case.",
    ("ConditionalDist", "cases"): "A distribution per value of `by`.",
    ("ConditionalDist", "default"): "Distribution for values without a case (unset: such a "
    "value is an error).",
    ("FeedConfig", "mix"): "For `algorithm: mix`: weight of each recommender; the feed's slots "
    "are shared in proportion (largest remainders get the leftover slots).",
    ("SocialRuleParams", "post_rate"): "Probability that an active agent writes a new post.",
    ("SocialRuleParams", "repost_rate"): "Probability that an active agent reposts a post of "
    "its feed.",
    ("SocialRuleParams", "quote_rate"): "Probability that an active agent quotes a post of its "
    "feed.",
    ("SocialRuleParams", "comment_rate"): "Probability that an active agent comments on a post "
    "of its feed.",
    ("SocialRuleParams", "like_rate"): "Probability that an active agent likes a post of its "
    "feed.",
    ("SocialRuleParams", "dislike_rate"): "Probability that an active agent dislikes a post of "
    "its feed it disagrees with.",
    ("SocialRuleParams", "follow_rate"): "Probability that an active agent follows the author "
    "of a post of its feed.",
    ("SocialRuleParams", "unfollow_rate"): "Probability that an active agent unfollows the "
    "author of a post it disagrees with.",
}

# Rules enforced by model validators that the docstrings do not state.
NOTES: dict[str, str] = {
    "SocialRuleParams": "The eight `*_rate` values must add up to at most 1; an action that "
    "needs a target post and finds none becomes `do_nothing`.",
    "FeedConfig": "The `mix` weights must be non-negative and not all zero.",
    "TruncNormalDist": "`low` must be below `high`.",
    "UniformDist": "`low` must be below `high`.",
    "IntegerDist": "`low` must not exceed `high`.",
    "BetaDist": "`low` must be below `high`.",
}

INTRO = f"""\
# Experiment YAML reference

<!-- Generated by `{COMMAND}` from the configuration models; do not edit by hand. -->

Every key an experiment file accepts, section by section, generated from the pydantic models
that validate it. `populace validate EXP.yaml` checks a file against exactly these rules.
[Getting started](getting-started.md) walks through a complete file.

How to read the tables:

- **Default** "required" means the key must be given; "unset" means it may be left out and has
  no value (the description says what happens then).
- Unknown keys are errors in every section (with a "did you mean" when a known key is close).
- *scalar*: a string, a number or `true`/`false`.
- *duration*: a number and a unit, `s`, `m`, `h`, `d` or `w` (`90s`, `15m`, `1h`, `1d`), or a
  number of seconds.
- *date-time*: ISO 8601, e.g. `2025-03-01T00:00:00` (no time zone: simulated time is naive).
- *path*: a file path; relative paths are read from the folder of the experiment file.
- `float in [0, 1]` includes both ends; a parenthesis excludes that end.
"""


# --------------------------------------------------------------------------- text helpers


def slugify(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading (lower case, punctuation dropped, - for spaces).

    Args:
        heading: the heading text without the leading ``#`` marks.

    Returns:
        The anchor, without ``#``.
    """
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _code_spans(text: str) -> list[tuple[bool, str]]:
    """Split text into (is_code, piece) around single-backtick code spans."""
    parts = re.split(r"(`[^`]*`)", text)
    return [(p.startswith("`") and p.endswith("`") and len(p) > 1, p) for p in parts if p]


def _markdown(text: str) -> str:
    """Turn reStructuredText-flavoured docstring prose into Markdown."""
    text = re.sub(r":(?:class|func|data|meth|attr|mod):`~?\.?([^`]+)`", r"``\1``", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    out = []
    for is_code, piece in _code_spans(text):
        out.append(piece if is_code else piece.replace("*", r"\*"))
    return "".join(out)


def _cell(text: str) -> str:
    """Text safe for a Markdown table cell."""
    return " ".join(text.split()).replace("|", r"\|")


def _sentence(text: str) -> str:
    """One description: capitalised (unless it opens with a value or an abbreviation), with a stop."""
    text = " ".join(text.split())
    if not text:
        return text
    first = re.match(r"[\w']+", text)
    keep = first is not None and (
        text[first.end():first.end() + 1] in (":", ",") or first.group(0) in _LOWER_WORDS)
    if not keep:
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


_LOWER_WORDS = {"sd", "n"}


def _docstring(obj: Any) -> tuple[str, dict[str, str]]:
    """A class docstring as Markdown prose, and the entries of its ``Attributes:`` section."""
    raw = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    if not raw:
        return "", {}
    lines = inspect.cleandoc(raw).splitlines()
    prose: list[str] = []
    attrs: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() in ("Attributes:", "Args:"):
            i += 1
            current = None
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                entry = re.match(r"^\s{2,8}(\w+)(?: \([^)]*\))?:\s*(.*)$", lines[i])
                if entry and len(lines[i]) - len(lines[i].lstrip()) <= 8:
                    current = entry.group(1)
                    attrs[current] = entry.group(2)
                elif current and lines[i].strip():
                    attrs[current] += " " + lines[i].strip()
                i += 1
            continue
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            prose.append(head + ":" if head else "")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            prose += ["", "```yaml", *textwrap.dedent("\n".join(block)).splitlines(), "```", ""]
            continue
        prose.append(line)
        i += 1
    # Markdown conversion outside fenced blocks only.
    converted: list[str] = []
    fenced = False
    for line in prose:
        if line.startswith("```"):
            fenced = not fenced
            converted.append(line)
        else:
            converted.append(line if fenced else _markdown(line))
    text = "\n".join(converted).strip()
    text = re.sub(r"\n{3,}", "\n\n", text)
    # "``storage:``: where the run is recorded" -> "Where the run is recorded" (the heading
    # already names the section).
    lead = re.match(r"^`[\w.]+:`:\s*", text)
    if lead:
        text = text[lead.end():]
        text = text[:1].upper() + text[1:] if not text.startswith("`") else text
    return text, {k: _markdown(v) for k, v in attrs.items()}


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{_num(seconds)}s"


def yaml_value(value: Any) -> str:
    """A default value written the way it would appear in YAML (flow style)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, timedelta):
        return _duration(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{yaml_value(k)}: {yaml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_value(v) for v in value) + "]"
    return str(value)


# --------------------------------------------------------------------------- types


_SCALARS = {bool, int, float, str}
_NAMES: dict[Any, str] = {
    bool: "bool", int: "int", float: "float", str: "str", type(None): "null",
    timedelta: "duration", datetime: "date-time", Any: "any",
}


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


@dataclass
class _Constraints:
    """Constraints gathered from ``Annotated`` metadata and ``Field(...)`` arguments."""

    ge: Any = None
    gt: Any = None
    le: Any = None
    lt: Any = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    discriminator: str | None = None

    def add(self, items: Iterable[Any]) -> None:
        for item in items:
            if isinstance(item, FieldInfo):
                self.add(item.metadata)
                if isinstance(item.discriminator, str):
                    self.discriminator = item.discriminator
                continue
            for name in ("ge", "gt", "le", "lt", "min_length", "max_length"):
                value = getattr(item, name, None)
                if isinstance(item, at.BaseMetadata | at.GroupedMetadata) and value is not None:
                    setattr(self, name, value)
            pattern = getattr(item, "pattern", None)
            if isinstance(pattern, str):
                self.pattern = pattern


def _unwrap(tp: Any, metadata: Sequence[Any] = ()) -> tuple[Any, _Constraints]:
    """Strip ``Annotated`` layers, collecting their constraints."""
    cons = _Constraints()
    cons.add(metadata)
    while get_origin(tp) is Annotated:
        base, *extra = get_args(tp)
        cons.add(extra)
        tp = base
    return tp, cons


def _literal_tag(model: type[BaseModel], key: str) -> str | None:
    info = model.model_fields.get(key)
    if info is None or get_origin(info.annotation) is not Literal:
        return None
    values = get_args(info.annotation)
    return str(values[0]) if len(values) == 1 else None


def union_discriminator(members: Sequence[type[BaseModel]], given: str | None = None) -> str | None:
    """The key that selects a member of a union of models (given, or a shared one-value Literal)."""
    if given:
        return given
    names = set.intersection(*(set(m.model_fields) for m in members)) if members else set()
    for name in sorted(names):
        if all(_literal_tag(m, name) is not None for m in members):
            return name
    return None


class TypeRenderer:
    """Readable text for annotations; models become links through ``link``.

    Args:
        link: model class -> Markdown link text (e.g. ``[population.file](#populationfile)``).
    """

    def __init__(self, link: Callable[[type[BaseModel]], str],
                 union_link: Callable[[list[type[BaseModel]], str | None], str | None]
                 = lambda members, disc: None) -> None:
        self.link = link
        self.union_link = union_link

    def render(self, tp: Any, metadata: Sequence[Any] = ()) -> str:
        """Render ``tp`` with the constraints in ``metadata`` (e.g. ``[field_info]``)."""
        tp, cons = _unwrap(tp, metadata)
        if _is_union(tp):
            members = [m for m in get_args(tp) if m is not type(None)]
            if len(members) == 1:
                # Optional: the default column says "unset"; constraints apply to the value.
                return self._bounded(members[0], cons)
            return self._union(members, cons)
        return self._bounded(tp, cons)

    def _bounded(self, tp: Any, cons: _Constraints) -> str:
        inner, more = _unwrap(tp)
        for name in ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern",
                     "discriminator"):
            if getattr(cons, name) is None:
                setattr(cons, name, getattr(more, name))
        if _is_union(inner):
            members = [m for m in get_args(inner) if m is not type(None)]
            if len(members) == 1:
                return self._bounded(members[0], cons)
            return self._union(members, cons)
        text = self._plain(inner, cons)
        if inner in (int, float):
            return text + _range(cons)
        if inner is str:
            return _string(cons)
        return text

    def _plain(self, tp: Any, cons: _Constraints) -> str:
        origin, args = get_origin(tp), get_args(tp)
        if tp in _NAMES:
            return _NAMES[tp]
        if isinstance(tp, type) and issubclass(tp, PurePath):
            return "path"
        if origin is Literal:
            values = [yaml_value(v) for v in args]
            if len(values) == 1:
                return f"`{values[0]}`"
            return "one of: " + ", ".join(f"`{v}`" for v in values)
        if _is_model(tp):
            return self.link(tp)
        if origin in (list, tuple, set, frozenset, Sequence) or (
                isinstance(origin, type) and issubclass(origin, list | tuple | set)):
            item = self.render(args[0]) if args else "any"
            return _sized("list of " + item, cons)
        if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, dict)):
            key = self.render(args[0]) if args else "str"
            if key.startswith("one of"):
                key = f"({key})"
            value = self.render(args[1]) if len(args) > 1 else "any"
            return f"mapping of {key} to {value}"
        if isinstance(tp, type):
            return tp.__name__
        return str(tp).replace("typing.", "")

    def _union(self, members: list[Any], cons: _Constraints) -> str:
        plain = [_unwrap(m)[0] for m in members]
        if all(_is_model(m) for m in plain):
            return self.models(plain, union_discriminator(plain, cons.discriminator))
        texts: list[str] = []
        scalars = set(plain) >= _SCALARS
        for tp, raw in zip(plain, members, strict=True):
            if scalars and tp in _SCALARS:
                if "scalar" not in texts:
                    texts.append("scalar")
            else:
                texts.append(self.render(raw))
        if len(texts) == 1:
            return texts[0]
        return ", ".join(texts[:-1]) + " or " + texts[-1]

    def models(self, members: list[type[BaseModel]], disc: str | None) -> str:
        """A union of models: links to each member, and the key that picks one."""
        short = self.union_link(members, disc)
        if short is not None:
            return short
        links = ", ".join(self.link(m) for m in members)
        return f"one of (by `{disc}`): {links}" if disc else f"one of: {links}"


def _range(cons: _Constraints) -> str:
    low = cons.ge if cons.ge is not None else cons.gt
    high = cons.le if cons.le is not None else cons.lt
    if low is not None and high is not None:
        left = "[" if cons.ge is not None else "("
        right = "]" if cons.le is not None else ")"
        return f" in {left}{_num(low)}, {_num(high)}{right}"
    if low is not None:
        return f" {'>=' if cons.ge is not None else '>'} {_num(low)}"
    if high is not None:
        return f" {'<=' if cons.le is not None else '<'} {_num(high)}"
    return ""


def _string(cons: _Constraints) -> str:
    text = "non-empty str" if cons.min_length == 1 else "str"
    extra = []
    if cons.pattern:
        extra.append(f"matching `{cons.pattern}`")
    if cons.min_length and cons.min_length > 1:
        extra.append(f"at least {cons.min_length} characters")
    if cons.max_length is not None:
        extra.append(f"at most {cons.max_length} characters")
    return text + (" " + ", ".join(extra) if extra else "")


def _sized(text: str, cons: _Constraints) -> str:
    lo, hi = cons.min_length, cons.max_length
    if lo is not None and lo == hi:
        return f"{text}, exactly {lo} items"
    if lo == 1 and hi is None:
        return "non-empty " + text
    extra = []
    if lo:
        extra.append(f"at least {lo} items")
    if hi is not None:
        extra.append(f"at most {hi} items")
    return text + (", " + ", ".join(extra) if extra else "")


def _models_in(tp: Any) -> tuple[list[type[BaseModel]], str | None]:
    """Models reachable in an annotation (through unions, lists, dict values), and a union key.

    Returns:
        (models in order of appearance, discriminator of the first union of models or None).
    """
    found: list[type[BaseModel]] = []
    disc: str | None = None

    def walk(t: Any, meta: Sequence[Any] = ()) -> None:
        nonlocal disc
        t, cons = _unwrap(t, meta)
        if _is_model(t):
            if t not in found:
                found.append(t)
            return
        if _is_union(t):
            members = [_unwrap(m)[0] for m in get_args(t) if m is not type(None)]
            models = [m for m in members if _is_model(m)]
            if len(models) > 1 and disc is None:
                disc = union_discriminator(models, cons.discriminator)
            for m in get_args(t):
                walk(m)
            return
        args = get_args(t)
        origin = get_origin(t)
        if origin in (dict, Mapping) and len(args) == 2:
            walk(args[1])
        elif origin is not Literal:
            for a in args:
                walk(a)

    walk(tp)
    return found, disc


# --------------------------------------------------------------------------- document


@dataclass
class _Section:
    """One model's section: its heading and table."""

    model: type[BaseModel]
    heading: str
    level: int
    slug: str


class _Reference:
    """Collects the sections of the reference, then writes them."""

    def __init__(self) -> None:
        self.anchor: dict[type[BaseModel], tuple[str, str]] = {}  # model -> (label, slug)
        self.slugs: set[str] = set()
        self.order: list[_Section | str] = []  # sections, or raw Markdown blocks
        self.types = TypeRenderer(self._link, self._union_link)
        self.unions: list[tuple[list[type[BaseModel]], str, str, str]] = []
        self.suffix = ""

    def _link(self, model: type[BaseModel]) -> str:
        if model not in self.anchor:
            return f"`{model.__name__}`"
        label, slug = self.anchor[model]
        return f"[`{label}`](#{slug})"

    def _union_link(self, members: list[type[BaseModel]], disc: str | None) -> str | None:
        """Most of a documented union: "any `path` variant except `tag`"."""
        for known, path, slug, key in self.unions:
            missing = [m for m in known if m not in members]
            if key == disc and set(members) < set(known) and len(missing) <= 2:
                tags = " or ".join(f"`{key}: {_literal_tag(m, key)}`" for m in missing)
                return f"any [`{path}`](#{slug}) variant except {tags}"
        return None

    def _claim(self, heading: str) -> str:
        slug = slugify(heading)
        if slug in self.slugs:
            raise ValueError(f"two headings share the anchor #{slug}: {heading!r}")
        self.slugs.add(slug)
        return slug

    def add_text(self, text: str) -> None:
        self.order.append(text)

    def add_heading(self, heading: str, level: int) -> str:
        slug = self._claim(heading)
        self.order.append(f"{'#' * level} {heading}")
        return slug

    def add_model(self, model: type[BaseModel], path: str, level: int, *,
                  heading: str | None = None, label: str | None = None,
                  child_level: int | None = None) -> None:
        """Document ``model`` at YAML ``path`` and, below it, every model it contains."""
        if model in self.anchor:
            return
        heading = heading or f"`{path}`{self.suffix}"
        slug = self._claim(heading)
        self.anchor[model] = (label or path, slug)
        section = _Section(model, heading, level, slug)
        self.order.append(section)
        for name, info in model.model_fields.items():
            models, disc = _models_in(info.annotation)
            new = [m for m in models if m not in self.anchor]
            if not new:
                continue
            child_path = _child_path(path, name, info.annotation)
            sub = child_level or min(level + 1, 4)
            if disc and len(models) > 1:
                self.add_union(new, child_path, disc, sub)
            else:
                for m in new:
                    self.add_model(m, child_path, sub)

    def add_union(self, members: list[type[BaseModel]], path: str, disc: str, level: int) -> None:
        """A section for a union chosen by ``disc``, with one subsection per member."""
        slug = self.add_heading(f"`{path}`{self.suffix}", level)
        self.unions.append((members, path, slug, disc))
        tags = ", ".join(f"`{_literal_tag(m, disc)}`" for m in members)
        self.add_text(f"A mapping whose `{disc}` key picks one of: {tags}. Each takes the keys "
                      "listed below.")
        for m in members:
            tag = _literal_tag(m, disc)
            self.add_model(m, path, min(level + 1, 4), heading=f"`{disc}: {tag}`{self.suffix}",
                           label=f"{disc}: {tag}")

    # -- writing --------------------------------------------------------------------------------

    def write(self, extra_notes: Mapping[type[BaseModel], str]) -> str:
        blocks: list[str] = []
        for item in self.order:
            if isinstance(item, str):
                blocks.append(item)
                continue
            blocks.append(f"{'#' * item.level} {item.heading}")
            prose, attrs = _docstring(item.model)
            if prose:
                blocks.append(prose)
            note = NOTES.get(item.model.__name__)
            if note:
                blocks.append(note)
            blocks.append(self._table(item.model, attrs))
            if item.model in extra_notes:
                blocks.append(extra_notes[item.model])
        return "\n\n".join(blocks) + "\n"

    def _table(self, model: type[BaseModel], attrs: Mapping[str, str]) -> str:
        rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
        fields = list(model.model_fields.items())
        # The key that selects a union member reads best first.
        tags = _tag_names(model)
        fields.sort(key=lambda item: item[0] not in tags)
        for name, info in fields:
            # The FieldInfo carries the field's constraints and any union discriminator.
            type_text = self.types.render(info.annotation, [info])
            rows.append("| " + " | ".join([
                f"`{name}`", _cell(type_text), _cell(_default(info)),
                _cell(self._describe(model, name, info, attrs)),
            ]) + " |")
        if model.model_config.get("extra") == "allow":
            rows.append("| *other keys* | | | The chosen scenario's own keys. |")
        return "\n".join(rows)

    def _describe(self, model: type[BaseModel], name: str, info: FieldInfo,
                  attrs: Mapping[str, str]) -> str:
        if info.description:
            return _sentence(_markdown(info.description))
        if name in attrs:
            return _sentence(attrs[name])
        for cls in model.__mro__:
            text = FALLBACK.get((cls.__name__, name))
            if text:
                return text
        if name in _tag_names(model):
            return "Selects this variant."
        models, _ = _models_in(info.annotation)
        if len(models) == 1:
            prose, _ = _docstring(models[0])
            first = prose.split("\n\n")[0]
            return _sentence(first.split(". ")[0])
        return ""


def _tag_names(model: type[BaseModel]) -> set[str]:
    """Required keys whose only allowed value is one literal (the key that picks a variant)."""
    return {name for name, info in model.model_fields.items()
            if get_origin(info.annotation) is Literal and len(get_args(info.annotation)) == 1
            and info.is_required()}


def _child_path(path: str, name: str, annotation: Any) -> str:
    base = f"{path}.{name}" if path else name
    tp, _ = _unwrap(annotation)
    if _is_union(tp):
        others = [a for a in get_args(tp) if a is not type(None)]
        tp = _unwrap(others[0])[0] if len(others) == 1 else tp
    origin = get_origin(tp)
    if origin in (list, tuple, set, frozenset):
        return base + "[]"
    if origin in (dict, Mapping):
        return base + ".<name>"
    return base


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        factory = info.default_factory
        if _is_model(factory):
            return "all defaults"
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "all defaults"
        if value in ({}, []):
            return "empty"
        return f"`{yaml_value(value)}`"
    if info.default is PydanticUndefined or info.is_required():
        return "required"
    if info.default is None:
        return "unset"
    return f"`{yaml_value(info.default)}`"


# --------------------------------------------------------------------------- layout


def render_reference(scenarios: Sequence[str] | None = None) -> str:
    """The YAML reference as Markdown.

    Args:
        scenarios: names of the scenarios to document; default every available scenario.

    Returns:
        The text of docs/yaml-reference.md.
    """
    ref, notes = _build(scenarios)
    return ref.write(notes)


def model_anchors(scenarios: Sequence[str] | None = None) -> dict[type[BaseModel], str]:
    """The heading anchor of each documented model (e.g. ``PopulationFile`` -> ``populationfile``).

    Args:
        scenarios: as for :func:`render_reference`.
    """
    ref, _ = _build(scenarios)
    return {model: slug for model, (_, slug) in ref.anchor.items()}


def _build(scenarios: Sequence[str] | None) -> tuple[_Reference, dict[type[BaseModel], str]]:
    """Lay out every section; return the reference and the notes written after some tables."""
    names = sorted(available_scenarios() if scenarios is None else scenarios)
    ref = _Reference()
    ref.add_text(INTRO.rstrip())
    contents_at = len(ref.order)
    ref.add_model(ExperimentConfig, "", 2, heading="Top level", label="top level",
                  child_level=2)
    ref.add_model(LLMParams, "policy.params", 2, heading="`policy.params` of `type: llm`",
                  label="policy.params (llm)")
    # Each scenario's own sections, with the scenario's name in their headings.
    scenario_links: list[str] = []
    params_links: list[str] = []
    for name in names:
        cls = get_scenario(name)
        ref.suffix = ""
        slug = ref.add_heading(f"The `{name}` scenario", 2)
        ref.add_text(f"`scenario: {{type: {name}}}` selects `{cls.__module__}.{cls.__name__}`, "
                     f"which reads the `scenario` section and `policy.params` below.")
        ref.suffix = f" ({name})"
        ref.add_model(cls.config_model, "scenario", 3)
        ref.add_model(cls.rule_params_model, "policy.params", 3)
        scenario_links.append(f"[{name}](#{slug})")
        params_links.append(f"[{name}](#{ref.anchor[cls.rule_params_model][1]})")
    ref.suffix = ""
    notes = {
        ScenarioSection: "Installed scenarios: " + (", ".join(scenario_links) or "none") + ".",
        PolicyConfig: "`params` of `type: rule` are checked by the scenario's rule-parameter "
        "model: " + (", ".join(params_links) or "none") + "; `params` of `type: llm` by "
        f"[the language-model parameters](#{ref.anchor[LLMParams][1]}).",
        PolicyPart: "`params` are checked like `policy.params`, by the part's `type`.",
    }
    contents = ["## Contents", ""]
    for item in ref.order:
        if isinstance(item, _Section) and item.level == 2:
            contents.append(f"- [{item.heading}](#{item.slug})")
        elif isinstance(item, str) and item.startswith("## "):
            contents.append(f"- [{item[3:]}](#{slugify(item[3:])})")
    ref.order.insert(contents_at, "\n".join(contents))
    return ref, notes


def main(argv: Sequence[str] | None = None) -> int:
    """Print the reference to stdout (``python -m populace.simulator.docgen``)."""
    del argv
    sys.stdout.write(render_reference())
    return 0


__all__ = [
    "COMMAND",
    "TypeRenderer",
    "main",
    "model_anchors",
    "render_reference",
    "slugify",
    "yaml_value",
]

if __name__ == "__main__":
    sys.exit(main())
