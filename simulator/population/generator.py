"""Building a population: file agents first, generated agents for the rest.

Core objects:

* :class:`Population` - the agents' attribute table (row position == agent id) plus optional
  follow edges and seed posts from an OASIS file.
* :func:`build_population` - turns a :class:`~.config.PopulationConfig` into a Population.

Randomness: ``build_population`` takes exactly one draw from the caller's generator and derives
an independent stream per attribute from it and the attribute's name. An attribute's values
thus depend only on the seed, its own spec and (for conditionals) its parent's values: adding,
removing or reordering other attributes leaves them unchanged. Attributes are still drawn in a
fixed order (dependencies first, ties by declaration order) so conditionals see their parents.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .config import PopulationConfig, resolve_order
from .distributions import (
    AnyDist,
    ConditionalDist,
    IntegerDist,
    scatter_pieces,
)
from .errors import PopulationFileError
from .files import load_population_file, pad_column
from .tabular import LoadedFile, short_repr


@dataclass
class Population:
    """A built population.

    Attributes:
        attributes: One row per agent (``RangeIndex`` 0..N-1 == agent id), one column per
            attribute; file columns come first, then generated attributes in declaration order.
        follow_edges: ``(src, dst)`` int64 agent ids meaning "src follows dst" (from files).
        seed_posts: Initial posts with columns ``author_id`` (int64) and ``content`` (str).
    """

    attributes: pd.DataFrame
    follow_edges: tuple[np.ndarray, np.ndarray] | None = None
    seed_posts: pd.DataFrame | None = None

    @property
    def size(self) -> int:
        """Number of agents."""
        return len(self.attributes)

    def profiles(self, hidden: set[str]) -> list[dict[str, Any]]:
        """Each agent's attributes as a dict for prompts, without the ``hidden`` columns and
        the bookkeeping columns of a profiles file (``agent_id``, ``error``), and without
        missing values."""
        skip = hidden | {"agent_id", "error"}
        cols = [c for c in self.attributes.columns if c not in skip]
        return [{k: v for k, v in row.items() if v is not None and v == v}
                for row in self.attributes[cols].to_dict("records")]


def attribute_rng(base_seed: int, name: str) -> np.random.Generator:
    """Independent, reproducible random stream for one attribute.

    Args:
        base_seed: The one value drawn from the caller's generator.
        name: Attribute name (hashed with BLAKE2b, which unlike ``hash`` is not salted).

    Returns:
        A fresh generator.
    """
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return np.random.default_rng(
        np.random.SeedSequence([base_seed, int.from_bytes(digest, "little")])
    )


def build_population(
    cfg: PopulationConfig, rng: np.random.Generator, base_dir: Path = Path(".")
) -> Population:
    """Load the population file (if any) and generate the configured attributes.

    File agents take ids ``0..rows-1``; if ``cfg.size`` is larger, the remaining agents are
    generated. A declared attribute that the file also has keeps the file's values on file
    rows; empty cells and generated agents get drawn values. Declared attributes the file
    lacks are drawn for every agent. File columns that are not declared stay missing
    (NaN/None) for generated agents.

    Args:
        cfg: The ``population`` section.
        rng: Source of randomness; exactly one value is drawn from it.
        base_dir: Folder that a relative ``file.path`` is resolved against.

    Returns:
        The population.

    Raises:
        PopulationFileError: If the file is missing/invalid, has a bad value in a declared
            column, or has more rows than ``cfg.size``.
        ValueError: If a conditional attribute names an unknown attribute or meets a parent
            value with no case and no default.
    """
    loaded = load_population_file(cfg.file, base_dir) if cfg.file is not None else None
    n_file = len(loaded.frame) if loaded is not None else 0
    size = cfg.size if cfg.size is not None else n_file
    if loaded is not None and size < n_file:
        # Truncating would silently drop agents and break follow edges, so refuse instead.
        raise PopulationFileError(
            f"population.size is {size} but the file has {n_file} agents",
            path=loaded.path,
            hint=f"remove population.size to use all {n_file}, or set it to at least {n_file}",
        )

    file_columns = list(loaded.frame.columns) if loaded is not None else []
    order = resolve_order(cfg.attributes, external=file_columns)
    columns: dict[str, pd.Series] = (
        {name: pad_column(loaded.frame[name], size) for name in file_columns}
        if loaded is not None
        else {}
    )

    base_seed = int(rng.integers(0, np.iinfo(np.int64).max))
    for name in order:
        spec = cfg.attributes[name]
        stream = attribute_rng(base_seed, name)
        try:
            if loaded is not None and name in file_columns:
                values = _merge_with_file(name, spec, loaded, columns, size, stream)
            else:
                values = _draw(spec, np.arange(size), columns, stream)
        except PopulationFileError:
            raise
        except ValueError as exc:
            hint = _parent_hint(spec, cfg, n_file, size)
            raise ValueError(f"attribute '{name}': {exc}{hint}") from exc
        columns[name] = _as_column(values, spec)

    ordered = file_columns + [n for n in cfg.attributes if n not in file_columns]
    frame = pd.DataFrame({n: columns[n] for n in ordered}, index=pd.RangeIndex(size))
    return Population(
        attributes=frame,
        follow_edges=loaded.follow_edges if loaded is not None else None,
        seed_posts=loaded.seed_posts if loaded is not None else None,
    )


def draw_newcomers(cfg: PopulationConfig, count: int, given: list[dict[str, Any]],
                   rng: np.random.Generator) -> pd.DataFrame:
    """Attributes of ``count`` agents that join a run: the ``given`` values of the first
    ``len(given)`` of them, the rest drawn from the population's distributions in dependency
    order, so that an attribute conditional on a given one is drawn given it. Columns of a
    population file that are not declared stay missing (None/NaN).

    Args:
        cfg: The ``population`` section.
        count: How many agents join (at least ``len(given)``).
        given: One mapping of attribute values per agent, for the first agents.
        rng: Source of randomness; exactly one value is drawn from it.
    """
    fixed = pd.DataFrame(given, index=pd.RangeIndex(len(given))).reindex(pd.RangeIndex(count))
    order = resolve_order(cfg.attributes, external=[c for c in fixed.columns
                                                   if c not in cfg.attributes])
    columns: dict[str, pd.Series] = {c: fixed[c] for c in fixed.columns
                                     if c not in cfg.attributes}
    base_seed = int(rng.integers(0, np.iinfo(np.int64).max))
    for name in order:
        spec = cfg.attributes[name]
        try:
            drawn = _as_column(_draw(spec, np.arange(count), columns, attribute_rng(
                base_seed, name)), spec)
        except ValueError as exc:
            raise ValueError(f"attribute '{name}' of agents that join: {exc}") from exc
        if name in fixed.columns:  # given values win; drawn ones fill the rest
            known = fixed[name].notna().to_numpy()
            values = fixed[name][known]
            try:  # the drawn column's dtype (an integer attribute stays int64)
                values = values.astype(drawn.dtype)
            except (TypeError, ValueError):
                drawn = drawn.astype(object)
            drawn = drawn.copy()
            drawn[known] = values
        columns[name] = drawn
    return pd.DataFrame(columns, index=pd.RangeIndex(count))


def _draw(
    spec: AnyDist,
    rows: np.ndarray,
    columns: dict[str, pd.Series],
    stream: np.random.Generator,
) -> np.ndarray:
    """Draw values for the given row positions."""
    if isinstance(spec, ConditionalDist):
        parent = columns[spec.by].iloc[rows].reset_index(drop=True)
        return spec.sample_given(parent, stream)
    return spec.sample(rows.size, stream)


def _merge_with_file(
    name: str,
    spec: AnyDist,
    loaded: LoadedFile,
    columns: dict[str, pd.Series],
    size: int,
    stream: np.random.Generator,
) -> np.ndarray:
    """Validate a declared attribute's file values and draw the missing ones."""
    n_file = len(loaded.frame)
    file_values = loaded.frame[name]
    if isinstance(spec, ConditionalDist):
        parent = columns[spec.by].iloc[:n_file].reset_index(drop=True)
        coerced, bad, expectations = spec.coerce_given(file_values, parent)
    else:
        coerced, bad, expectation = spec.coerce(file_values)
        expectations = [expectation] * n_file
    if bad.any():
        first = int(np.argmax(bad))
        raise PopulationFileError(
            f"bad value {short_repr(_plain(file_values.iloc[first]))} for attribute '{name}'; "
            f"expected {expectations[first]} ({int(bad.sum())} row(s) affected)",
            path=loaded.path,
            row=loaded.row_label(first),
            column=_source_name(name, loaded),
            hint="fix the value, leave the cell empty to have it generated, or adjust "
            f"population.attributes.{name}",
        )
    present = ~coerced.isna().to_numpy()
    file_rows = np.flatnonzero(present)
    need = np.concatenate([np.flatnonzero(~present), np.arange(n_file, size)])
    pieces = [(file_rows, coerced.to_numpy()[file_rows])]
    if need.size:
        pieces.append((need, _draw(spec, need, columns, stream)))
    return scatter_pieces(size, pieces)


def _as_column(values: np.ndarray, spec: AnyDist) -> pd.Series:
    """Give a finished attribute its natural dtype (int64 for integers, inferred otherwise)."""
    if isinstance(spec, IntegerDist) and values.dtype.kind == "f" and not np.isnan(values).any():
        values = values.astype(np.int64)
    series = pd.Series(values)
    return series.infer_objects() if series.dtype == object else series


def _source_name(name: str, loaded: LoadedFile) -> str:
    """Name a column as the file spells it (before ``mapping``)."""
    return loaded.renamed_from.get(name, name)


def _parent_hint(spec: AnyDist, cfg: PopulationConfig, n_file: int, size: int) -> str:
    """Explain missing parent values for agents generated beyond a file's rows."""
    if (
        isinstance(spec, ConditionalDist)
        and spec.by not in cfg.attributes
        and size > n_file
        and n_file > 0
    ):
        return (
            f"; agents {n_file}..{size - 1} are generated and have no '{spec.by}' because it "
            f"only comes from the file: declare '{spec.by}' in population.attributes or add a "
            "'default' case"
        )
    return ""


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value
