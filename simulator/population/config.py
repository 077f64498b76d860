"""Configuration models for the ``population`` section of an experiment YAML.

Core objects:

* :class:`PopulationConfig` - size, generated attributes and an optional population file.
* :class:`PopulationFile` - where a "bring your own population" file lives and how to read it.
* :func:`resolve_order` - the order in which attributes are drawn (dependencies first).

Example::

    population:
      size: 10000
      file: {path: data/users.csv, mapping: {user_name: username}}
      attributes:
        age: {dist: truncnormal, mean: 38, sd: 14, low: 18, high: 90, round: 0}
        occupation: {dist: categorical, values: {student: 2, engineer: 1, retired: 1}}
        income:
          dist: conditional
          by: occupation
          cases:
            student: {dist: lognormal, mean: 9.0, sigma: 0.4}
          default: {dist: lognormal, mean: 10.5, sigma: 0.5}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .distributions import AttributeSpec, ConditionalDist, canonical_key, possible_values

#: Largest population: ten times the 100-million-agent cluster runs the engine aims at. One
#: int64 column of a billion agents is already 8 GB; far larger sizes (10**12) would only fail
#: later, allocating terabytes.
MAX_AGENTS = 1_000_000_000

FileFormat = Literal["auto", "csv", "json", "parquet", "oasis_twitter", "oasis_reddit"]


class PopulationFile(BaseModel):
    """A file of agents to load before generating the rest.

    Attributes:
        path: File path; relative paths are resolved against the experiment YAML's folder.
        format: ``auto`` picks csv/json/parquet by extension; OASIS formats must be named.
        mapping: ``{file_column: attribute_name}`` renames; unmapped columns keep their names.
        columns: Columns that must exist and be filled on every row (file or attribute names).
    """

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1)
    format: FileFormat = "auto"
    mapping: dict[str, str] = Field(default_factory=dict)
    columns: list[str] = Field(default_factory=list)

    @field_validator("mapping")
    @classmethod
    def _unique_targets(cls, mapping: dict[str, str]) -> dict[str, str]:
        targets = list(mapping.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"several file columns are mapped to the same name: {dupes}")
        if any(not t for t in targets):
            raise ValueError("mapping targets must be non-empty attribute names")
        return mapping


class PopulationConfig(BaseModel):
    """The ``population`` section: how many agents and how their profiles are made.

    Attributes:
        size: Number of agents. Required unless ``file`` is given, in which case it defaults to
            the file's row count; it may exceed the row count ("file first, generated rest")
            but not be smaller.
        attributes: Generated attributes, by name, in any order (dependencies are resolved).
        file: Optional population file (a bare string is shorthand for ``{path: ...}``).
    """

    model_config = ConfigDict(extra="forbid")

    size: int | None = Field(default=None, ge=1, le=MAX_AGENTS,
                             description="number of agents. Required unless `file` is "
                             "given, in which case it defaults to the file's row count; it may "
                             "exceed the row count (\"file first, generated rest\") but not be "
                             "smaller. At most 1,000,000,000")
    attributes: dict[str, AttributeSpec] = Field(default_factory=dict)
    file: PopulationFile | None = None

    @field_validator("file", mode="before")
    @classmethod
    def _file_shorthand(cls, value: Any) -> Any:
        return {"path": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> PopulationConfig:
        if self.size is None and self.file is None:
            raise ValueError(
                "population.size is required unless population.file supplies the agents"
            )
        if any(not name.strip() for name in self.attributes):
            raise ValueError("attribute names must be non-empty")
        # Without a file every 'by' must name a declared attribute; with one, file columns are
        # only known at build time, so only cycles can be checked here.
        resolve_order(self.attributes, external=None if self.file is None else _ANY)
        self._check_cases()
        return self

    def _check_cases(self) -> None:
        """A conditional attribute without ``default`` must have a case for every value its
        parent can take (known when the parent is a generated categorical, constant or small
        integer attribute; file columns are checked when the file is read)."""
        for name, spec in self.attributes.items():
            if not isinstance(spec, ConditionalDist) or spec.default is not None:
                continue
            parent = self.attributes.get(spec.by)
            if parent is None:
                continue
            values = possible_values(parent)
            if values is None:
                continue
            cases = {canonical_key(k) for k in spec.cases}
            missing = [v for v in values if canonical_key(v) not in cases]
            if missing:
                shown = ", ".join(repr(v) for v in missing[:10])
                raise ValueError(
                    f"attribute '{name}' has no case for {shown} of '{spec.by}' and no "
                    "'default'; add those cases or a default")


class _AnyName:
    """Sentinel container that claims to hold every name (unknown file columns)."""

    def __contains__(self, item: object) -> bool:
        return True


_ANY = _AnyName()


def resolve_order(
    attributes: Mapping[str, Any],
    external: Iterable[str] | _AnyName | None = None,
) -> list[str]:
    """Order attributes so that each conditional attribute comes after the one it uses.

    Ties are broken by declaration order, so the result is deterministic.

    Args:
        attributes: Attribute specs by name, in declaration order.
        external: Names that exist without being generated (population-file columns).

    Returns:
        Attribute names in drawing order.

    Raises:
        ValueError: If a ``by`` names an unknown attribute, or attributes form a cycle.
    """
    names = list(attributes)
    known = external if isinstance(external, _AnyName) else set(external or ())
    deps: dict[str, str | None] = {}
    for name, spec in attributes.items():
        by = spec.by if isinstance(spec, ConditionalDist) else None
        if by is not None and by not in attributes and by not in known:
            listing = sorted(set(names) | (set() if isinstance(known, _AnyName) else known))
            raise ValueError(
                f"attribute '{name}' is conditioned on '{by}', which is not defined; "
                f"known: {', '.join(listing) or '(none)'}"
            )
        # A 'by' satisfied only by a file column imposes no ordering among attributes.
        deps[name] = by if by in attributes else None

    order: list[str] = []
    done: set[str] = set()
    pending = list(names)
    while pending:
        ready = next((n for n in pending if deps[n] is None or deps[n] in done), None)
        if ready is None:
            raise ValueError(
                f"attributes form a dependency cycle: {_describe_cycle(deps, pending)}"
            )
        order.append(ready)
        done.add(ready)
        pending.remove(ready)
    return order


def _describe_cycle(deps: Mapping[str, str | None], pending: list[str]) -> str:
    """Follow ``by`` links from the first stuck attribute until a name repeats."""
    path = [pending[0]]
    while True:
        nxt = deps[path[-1]]
        assert nxt is not None  # every pending attribute waits on another pending one
        if nxt in path:
            cycle = path[path.index(nxt) :] + [nxt]
            return " -> ".join(cycle)
        path.append(nxt)
