"""JSON values drawn from a JSON schema: valid answers, and answers a schema rejects.

``jsonschema`` validates but does not generate, so a small sampler draws a value for the keywords
pydantic v2 emits (see ``sample_instance``); ``jsonschema`` then checks every drawn value, so a
keyword the sampler does not follow (``pattern``, ``not``, ``if``, ...) costs a redraw, never an
invalid answer.

Core objects:
    sample_instance: a value valid under a schema, drawn from an rng.
    wrong_instance: valid JSON that a schema rejects (like a model ignoring the schema).
    conforms: whether a value validates against a schema (``jsonschema``).
    check_schema: refuse a schema ``jsonschema`` rejects or whose ``$ref`` are not local.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import random
import re
import uuid
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

__all__ = ["check_schema", "conforms", "sample_instance", "wrong_instance"]

# Vocabulary of sampled strings (short lowercase words, like a terse model would write).
_WORDS = (
    "agree", "post", "like", "share", "news", "vote", "tax", "health", "city", "friend",
    "market", "policy", "school", "sport", "trust", "rumor", "local", "green", "debate",
    "price", "job", "family", "music", "travel", "science", "climate", "safety", "data",
)

# Recursive schemas (trees, linked lists) stop growing past this depth.
_MAX_DEPTH = 8
# Draws of a whole value before giving up on a schema whose samples jsonschema keeps rejecting.
_DRAWS = 20


@functools.lru_cache(maxsize=256)
def _cached_validator(schema_text: bytes) -> Validator:
    schema = orjson.loads(schema_text)  # the validator's own copy: callers may change theirs
    cls = validator_for(schema, default=Draft202012Validator)  # its "$schema", else 2020-12
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    return cls(schema)


def _validator(schema: Any) -> Validator:
    """A validator of ``schema``, built once per distinct schema (requests repeat theirs)."""
    return _cached_validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))


def conforms(schema: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` validates against ``schema``.

    ``format`` is not asserted (``jsonschema``'s default); the dialect is the schema's
    ``$schema``, else draft 2020-12 (what pydantic v2 emits).

    Raises:
        ValueError: ``schema`` is not a valid JSON schema.
    """
    return _validator(schema).is_valid(value)


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """Follow local ``$ref`` pointers (``#/$defs/Name``, ``#/definitions/Name``, ``#``)."""
    for _ in range(64):
        if not (isinstance(schema, dict) and "$ref" in schema):
            return schema
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"only local $ref are supported, got {ref!r}")
        target: Any = root
        for part in [p for p in ref[1:].split("/") if p]:
            part = part.replace("~1", "/").replace("~0", "~")
            target = target[int(part)] if isinstance(target, list) else target[part]
        # Siblings of $ref (a field's description, default, ...) win over the target's.
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **extra} if extra and isinstance(target, dict) else target
    raise ValueError(f"$ref cycle at {schema.get('$ref')!r}")


def check_schema(schema: dict[str, Any]) -> None:
    """Refuse a schema that cannot be answered, before anything is drawn from it.

    Raises:
        ValueError: ``jsonschema`` rejects the schema, or a ``$ref`` is not local or leads
            nowhere.
    """
    _validator(schema)
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                try:
                    _resolve({"$ref": node["$ref"]}, schema)
                except (ValueError, KeyError, IndexError, TypeError) as exc:
                    raise ValueError(f"bad $ref {node['$ref']!r} ({exc})") from None
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


# --------------------------------------------------------------------------------------------
# Sampling. The order of rng draws is part of the test server's answers (same seed, same
# answers), so a change here changes recorded results.


def _merge_all_of(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Fold ``allOf`` parts into one schema (pydantic emits ``allOf: [{$ref}]`` for fields)."""
    merged = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        part = _resolve(part, root)
        if isinstance(part, dict) and "allOf" in part:
            part = _merge_all_of(part, root)
        for key, value in part.items() if isinstance(part, dict) else ():
            if key == "properties":
                merged["properties"] = {**merged.get("properties", {}), **value}
            elif key == "required":
                merged["required"] = sorted(set(merged.get("required", [])) | set(value))
            else:
                merged.setdefault(key, value)
    return merged


def _schema_type(schema: dict[str, Any], rng: random.Random) -> str | None:
    """The declared type (one drawn from a list), else the one its keywords imply."""
    declared = schema.get("type")
    if isinstance(declared, list):
        return rng.choice(declared) if declared else None
    if declared is not None:
        return declared
    implied = {"object": ("properties", "additionalProperties", "required"),
               "array": ("items", "prefixItems"),
               "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"),
               "string": ("minLength", "maxLength", "pattern", "format")}
    return next((kind for kind, keys in implied.items() if any(k in schema for k in keys)), None)


def _words(rng: random.Random, low: int, high: int) -> str:
    """One to three lowercase words, cut or padded to ``low`` .. ``high`` characters."""
    text = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))
    while len(text) < low:
        text += " " + rng.choice(_WORDS)
    text = text[:high].rstrip()
    while len(text) < low:  # the cut may have left a trailing space, now stripped
        text += rng.choice("abcdefghijklmnopqrstuvwxyz")
    return text


def _sample_string(schema: dict[str, Any], rng: random.Random) -> str:
    # jsonschema does not assert formats, but pydantic does on the client: honour its usual ones.
    fmt = schema.get("format")
    if fmt == "date-time":
        return f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}T1{rng.randint(0, 9)}:00:00Z"
    if fmt == "date":
        return f"2024-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
    if fmt == "time":
        return f"1{rng.randint(0, 9)}:{rng.randint(10, 59)}:00"
    if fmt == "uuid":
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if fmt == "email":
        return f"{rng.choice(_WORDS)}@example.org"
    if fmt in ("uri", "url"):
        return f"https://example.org/{rng.choice(_WORDS)}"
    low = int(schema.get("minLength", 0))
    # Short answers by default: a word or a few, never more than the schema allows.
    high = min(int(schema.get("maxLength", max(low, 24))), max(low, 24))
    if high <= 0:
        return ""
    pattern = schema.get("pattern")
    if isinstance(pattern, str):
        # Patterns are not generated from; a few drawn words may happen to match.
        with contextlib.suppress(re.error):
            for _ in range(50):
                text = _words(rng, low, high)
                if re.search(pattern, text):
                    return text
    return _words(rng, low, high)


def _bounds(schema: dict[str, Any]) -> tuple[float | None, bool, float | None, bool]:
    """(low, low_exclusive, high, high_exclusive): the tighter of each pair of bounds."""
    low, high = schema.get("minimum"), schema.get("maximum")
    ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
    low_ex = ex_low is not None and (low is None or ex_low >= low)
    high_ex = ex_high is not None and (high is None or ex_high <= high)
    return (ex_low if low_ex else low), low_ex, (ex_high if high_ex else high), high_ex


def _sample_integer(schema: dict[str, Any], rng: random.Random) -> int:
    low, low_ex, high, high_ex = _bounds(schema)
    lo = None if low is None else (math.floor(low) + 1 if low_ex else math.ceil(low))
    hi = None if high is None else (math.ceil(high) - 1 if high_ex else math.floor(high))
    if lo is None and hi is None:
        lo, hi = 0, 100
    elif lo is None:
        lo = hi - 100
    elif hi is None:
        hi = lo + 100
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if first <= last:
            return rng.randint(first, last) * step
    return rng.randint(lo, hi)  # ValueError when the bounds leave no integer


def _sample_number(schema: dict[str, Any], rng: random.Random) -> float:
    low, low_ex, high, high_ex = _bounds(schema)
    lo = -100.0 if low is None else float(low)
    hi = lo + 100.0 if high is None else float(high)
    if low is None and high is not None:
        lo = hi - 100.0
    step = schema.get("multipleOf")
    if isinstance(step, (int, float)) and step > 0:
        first, last = math.ceil(lo / step), math.floor(hi / step)
        if low_ex and first * step <= lo:
            first += 1
        if high_ex and last * step >= hi:
            last -= 1
        if first <= last:
            return float(rng.randint(first, last) * step)
    value = round(rng.uniform(lo, hi), 3)
    if value < lo or value > hi or (low_ex and value <= lo) or (high_ex and value >= hi):
        value = (lo + hi) / 2.0  # rounding hit an (exclusive) bound
    return value


def _sample_array(schema: dict[str, Any], root: dict[str, Any], rng: random.Random,
                  depth: int) -> list[Any]:
    prefix = schema.get("prefixItems") or []
    items = schema.get("items", {})
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(low, len(prefix), 3)))
    if items is False:  # closed tuple
        high = min(high, len(prefix))
    count = low if depth >= _MAX_DEPTH else rng.randint(low, max(low, high))
    count = max(count, min(len(prefix), high))  # tuples come whole
    unique = bool(schema.get("uniqueItems"))
    out: list[Any] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < count and tries < count * 20 + 20:
        tries += 1
        index = len(out)
        sub = prefix[index] if index < len(prefix) else (items if isinstance(items, dict) else {})
        value = _sample(sub, root, rng, depth + 1)
        key = json.dumps(value, sort_keys=True)
        if unique and key in seen:
            continue
        seen.add(key)
        out.append(value)
    return out


def _sample_object(schema: dict[str, Any], root: dict[str, Any], rng: random.Random,
                   depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    out: dict[str, Any] = {}
    for name, sub in properties.items():
        # Optional properties appear half of the time (never deep in a recursive schema).
        if name in required or (depth < _MAX_DEPTH and rng.random() < 0.5):
            out[name] = _sample(sub, root, rng, depth + 1)
    for name in required - out.keys():  # required but not described: anything will do
        out[name] = rng.choice(_WORDS)
    extra = schema.get("additionalProperties")
    wanted = int(schema.get("minProperties", 0))
    if isinstance(extra, dict) and not properties and depth < _MAX_DEPTH:  # a dict[str, X]
        wanted = rng.randint(wanted, max(wanted, int(schema.get("maxProperties", 3))))
    while len(out) < wanted:
        key = rng.choice(_WORDS) + str(len(out))
        out[key] = _sample(extra if isinstance(extra, dict) else {}, root, rng, depth + 1)
    return out


def _sample_union(schema: dict[str, Any], key: str, root: dict[str, Any], rng: random.Random,
                  depth: int) -> Any:
    """A value of one ``oneOf`` / ``anyOf`` branch, with a discriminator that names it."""
    branches = schema[key]
    if depth >= _MAX_DEPTH:  # stop recursion: prefer a branch that can be null
        branches = [b for b in branches if _resolve(b, root).get("type") == "null"] or branches
    branch = rng.choice(branches)
    rest = {k: v for k, v in schema.items() if k not in (key, "discriminator")}
    value = _sample({**rest, **_resolve(branch, root)} if rest else branch, root, rng, depth)
    disc = schema.get("discriminator")
    if isinstance(disc, dict) and isinstance(value, dict):
        ref = branch.get("$ref") if isinstance(branch, dict) else None
        for tag, target in (disc.get("mapping") or {}).items():
            if target == ref:
                value[disc["propertyName"]] = tag
    return value


def _sample(schema: Any, root: dict[str, Any], rng: random.Random, depth: int) -> Any:
    if schema is True or schema == {}:
        return rng.choice(_WORDS)
    if not isinstance(schema, dict):
        raise ValueError(f"not a JSON schema: {schema!r}")
    schema = _resolve(schema, root)
    if "allOf" in schema:
        schema = _merge_all_of(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return _sample_union(schema, key, root, rng, depth)
    kind = _schema_type(schema, rng)
    if kind == "object":
        return _sample_object(schema, root, rng, depth)
    if kind == "array":
        return _sample_array(schema, root, rng, depth)
    if kind == "string":
        return _sample_string(schema, rng)
    if kind == "integer":
        return _sample_integer(schema, rng)
    if kind == "number":
        return _sample_number(schema, rng)
    if kind == "boolean":
        return rng.random() < 0.5
    return None if kind == "null" else rng.choice(_WORDS)


def sample_instance(schema: dict[str, Any], rng: random.Random) -> Any:
    """Draw a JSON value that validates against ``schema`` (checked with ``jsonschema``).

    The sampler follows the keywords pydantic v2 emits: objects (``properties``, ``required``,
    ``additionalProperties``, ``minProperties``), local ``$ref``, ``allOf``, ``oneOf`` /
    ``anyOf`` (one branch is picked), discriminated unions (``discriminator`` with
    ``propertyName`` / ``mapping``), ``const``, ``enum``, strings (``minLength`` /
    ``maxLength``, the ``date-time``, ``date``, ``time``, ``uuid``, ``email`` and ``uri``
    formats; short lowercase words), integers and numbers (``minimum``, ``maximum``, exclusive
    bounds, ``multipleOf``), booleans, null and arrays (``minItems``, ``maxItems``, ``items``,
    ``prefixItems``, ``uniqueItems``). A value that ``jsonschema`` still rejects (a ``pattern``
    no drawn words match, ``not``, ...) is drawn again, up to 20 times.

    Args:
        schema: the JSON schema (its ``$defs`` are resolved against this root).
        rng: the source of every choice; the same rng state gives the same value.

    Returns:
        A JSON-serialisable value.

    Raises:
        ValueError: the schema is not valid, has a non-local ``$ref`` or a ``$ref`` cycle, or
            gave no valid value in 20 draws.
    """
    validator = _validator(schema)
    for _ in range(_DRAWS):
        value = _sample(schema, schema, rng, 0)
        if validator.is_valid(value):
            return value
    raise ValueError(f"no valid value of this schema in {_DRAWS} draws (first error: "
                     f"{next(validator.iter_errors(value)).message})")


def _required_of(schema: dict[str, Any], value: dict[str, Any]) -> set[str]:
    """The required properties of the (union branch of the) schema that ``value`` follows."""
    node = _resolve(schema, schema)
    validator = _validator(schema)
    for key in ("oneOf", "anyOf"):
        for branch in node.get(key, []):
            # evolve() keeps the root's $ref resolution for the branch.
            if validator.evolve(schema=branch).is_valid(value):
                return set(_resolve(branch, schema).get("required", []))
    return set(node.get("required", []))


def wrong_instance(schema: dict[str, Any] | None, rng: random.Random) -> Any:
    """Valid JSON that does not validate against ``schema`` (like a model ignoring it).

    A valid value is drawn and spoilt (an unknown action, a required property left out, a
    number turned into a word or a string into a number); the first spoilt candidate that
    ``jsonschema`` rejects is returned, else one of a few values no decision schema accepts.

    Args:
        schema: the JSON schema, or None (no schema: an unknown action).
        rng: the source of every choice.

    Returns:
        A JSON-serialisable value; ``{"action": "teleport"}`` if the schema accepts anything.
    """
    if schema is None:
        return {"action": "teleport"}
    valid = sample_instance(schema, rng)
    candidates: list[Any] = []
    if isinstance(valid, dict):
        if "action" in valid:
            candidates.append({**valid, "action": "teleport"})
        required = _required_of(schema, valid)
        if required:
            drop = rng.choice(sorted(required))
            candidates.append({k: v for k, v in valid.items() if k != drop})
        for name, item in valid.items():
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                candidates.append({**valid, name: "lots"})
            elif isinstance(item, str) and name != "action":
                candidates.append({**valid, name: 10**9})
    rng.shuffle(candidates)
    candidates += [{"action": "teleport"}, ["teleport"], "teleport", 123456789, None]
    return next((c for c in candidates if not conforms(schema, c)), {"action": "teleport"})
