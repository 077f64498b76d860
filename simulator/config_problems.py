"""Problems found in an experiment configuration, and the error that reports them all.

- :class:`Problem`: one problem: dotted path, message, YAML line and column, the offending value,
  what was expected and a "did you mean" suggestion.
- :class:`ConfigError`: the exception carrying every problem; ``str()`` renders a compiler-style
  report sorted by position (``exp.yaml:3:1: stpes: ...``).
- :func:`format_path`: a location tuple as a dotted path (``agents[0].name``).
- :func:`show_value`: a value shown briefly, as a YAML author would write it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["ConfigError", "Problem", "format_path", "show_value"]


@dataclass(frozen=True)
class Problem:
    """One problem found in a configuration.

    Attributes:
        path: Dotted field path with list indices as ``[i]``, e.g.
            ``"population.attributes.age.sd"``; ``""`` for whole-file problems.
        message: What is wrong; for a validation error, pydantic's own message, e.g.
            ``"Input should be greater than 0"``.
        line: 1-based line in the YAML file, if known.
        column: 1-based column in the YAML file, if known.
        expected: What would have been valid, e.g. ``"one of: random, hot"``, when the
            message does not say it.
        suggestion: Closest valid alternative to what was written (rendered as
            ``did you mean '...'?``).
        value: The offending value as written, shortened (rendered as ``(got ...)``).
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    expected: str | None = None
    suggestion: str | None = None
    value: str | None = None

    def render(self, source: str | None = None) -> str:
        """Render as ``source:line:col: path: message (got ...) (expected ...); did you mean '...'?``.

        Args:
            source: File name to prefix, if any.

        Returns:
            One line of text.
        """
        where = [source] if source else []
        if self.line is not None:
            where.append(str(self.line))
            if self.column is not None:
                where.append(str(self.column))
        text = ":".join(where) + ": " if where else ""
        if self.path:
            text += f"{self.path}: "
        text += self.message
        if self.value is not None:
            text += f" (got {self.value})"
        if self.expected:
            # "(expected one of: a, b)" but "(expected: a mapping)".
            sep = " " if self.expected.startswith("one of:") else ": "
            text += f" (expected{sep}{self.expected})"
        if self.suggestion is not None:
            text += f"; did you mean '{self.suggestion}'?"
        return text


def _sort_key(problem: Problem) -> tuple[bool, int, int]:
    # Problems without a position go last, keeping their original order.
    return (problem.line is None, problem.line or 0, problem.column or 0)


class ConfigError(Exception):
    """A configuration has one or more problems.

    Attributes:
        problems: All problems, sorted by (line, column); those without a position last.
        source: File name shown in the message, if any.
    """

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        """Create the error.

        Args:
            problems: The problems found (any order).
            source: File path shown in the rendered message.
        """
        problems = list(problems)
        # Pass the constructor arguments up so the exception pickles and copies.
        super().__init__(problems, source)
        self.problems: list[Problem] = sorted(problems, key=_sort_key)
        self.source = source

    def __str__(self) -> str:
        """Render a header line then one line per problem, e.g. ``exp.yaml:3:1: stpes: ...``."""
        count = len(self.problems)
        header = f"{count} problem{'' if count == 1 else 's'} found"
        if self.source:
            header = f"{self.source}: {header}"
        return "\n".join([header, *(p.render(self.source) for p in self.problems)])


def format_path(loc: Iterable[Any]) -> str:
    """Format a location tuple as a dotted path with ``[i]`` for list indices.

    Args:
        loc: Keys and indices, e.g. ``("agents", 0, "name")``.

    Returns:
        The path, e.g. ``"agents[0].name"``.
    """
    text = ""
    for element in loc:
        # bool is an int subclass, but a True key is a mapping key, not an index.
        if type(element) is int:
            text += f"[{element}]"
        else:
            text += f".{element}" if text else str(element)
    return text


def show_value(value: Any, limit: int = 40) -> str:
    """Show a value briefly, the way a YAML author wrote it.

    Args:
        value: Any loaded value.
        limit: Longest text shown; a longer one is cut and ends with ``...``.

    Returns:
        ``null``, ``true``/``false``, ``.inf``, ``a mapping`` for a mapping (its entries are reported on
        their own), else the value's repr, e.g. ``'ten'``, ``1.5``, ``[3]``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else ("-.inf" if value < 0 else ".inf")
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
