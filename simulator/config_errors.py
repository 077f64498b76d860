"""Located, human-readable errors for experiment configuration files.

``populace validate`` and ``populace run`` report *every* problem in a config at once, each
with the YAML line and column, the dotted field path, what was expected and, for misspelt keys
and choice values, a "did you mean" suggestion.

Core objects:

- :class:`Problem`: one problem (path, message, line/column, expected, suggestion).
- :class:`ConfigError`: the exception carrying all problems; ``str()`` renders a
  compiler-style report sorted by position.
- :class:`Marks`: where each key and value of a loaded YAML document sits.
- :func:`load_yaml` / :func:`load_yaml_text`: parse YAML into plain Python data plus
  :class:`Marks`; syntax errors, duplicate keys, missing files and non-mapping documents become
  :class:`ConfigError`.
- :func:`problems_from_validation_error`, :func:`check`, :func:`validate`: turn a pydantic
  ``ValidationError`` into problems that point into the YAML file.

Typical use::

    data, marks = load_yaml("exp.yaml")
    config = validate(ExperimentConfig, data, marks, source="exp.yaml")
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Discriminator, RootModel, ValidationError
from pydantic.fields import FieldInfo
from yaml.nodes import MappingNode, Node, SequenceNode

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

#: A path into the document: mapping keys and list indices.
Loc = tuple[Any, ...]
#: A 1-based (line, column) position.
Position = tuple[int, int]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One problem found in a configuration.

    Attributes:
        path: Dotted field path with list indices as ``[i]``, e.g.
            ``"population.attributes.age.sd"``; ``""`` for whole-file problems.
        message: Human sentence, e.g. ``"unknown key 'stpes'"``.
        line: 1-based line in the YAML file, if known.
        column: 1-based column in the YAML file, if known.
        expected: What would have been valid, e.g. ``"one of: random, hot"``.
        suggestion: Closest valid alternative to what was written (rendered as
            ``did you mean '...'?``).
    """

    path: str
    message: str
    line: int | None = None
    column: int | None = None
    expected: str | None = None
    suggestion: str | None = None

    def render(self, source: str | None = None) -> str:
        """Render as ``source:line:col: path: message (expected: ...); did you mean '...'?``.

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
        # Type errors already say "expected X" in the message; don't repeat it.
        if self.expected and f"expected {self.expected}" not in self.message:
            # "(expected one of: a, b)" but "(expected: a number > 0)".
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


# --------------------------------------------------------------------------- marks


@dataclass(eq=False)
class _Node:
    """Position information for one node of the YAML document."""

    kind: Literal["map", "seq", "leaf"]
    mark: Position | None  # None: set by an override, not written in the file
    value: Any = None
    keys: dict[Any, Position] = field(default_factory=dict)
    children: dict[Any, _Node] = field(default_factory=dict)
    items: list[_Node] = field(default_factory=list)

    def lookup(self, element: Any) -> tuple[_Node, Position | None] | None:
        """Return (child, key position) for a key or index, or None if absent."""
        if self.kind == "seq":
            if type(element) is int and 0 <= element < len(self.items):
                return self.items[element], None
            return None
        if self.kind != "map":
            return None
        try:
            if element in self.children:
                return self.children[element], self.keys[element]
        except TypeError:  # unhashable loc element
            return None
        # pydantic may report non-string YAML keys (e.g. 1) as strings, or vice versa.
        for key, child in self.children.items():
            if str(key) == str(element):
                return child, self.keys[key]
        return None


class Marks:
    """Where each node of a loaded YAML document sits.

    Locations are tuples of mapping keys and list indices, e.g.
    ``("population", "attributes", "age", "sd")``. Positions are 1-based ``(line, column)``.

    Attributes:
        problems: Load-time problems that were deferred rather than raised (duplicate keys
            when :func:`load_yaml` is called with ``defer_duplicates=True``).
    """

    def __init__(self, root: _Node | None = None, problems: Iterable[Problem] = ()) -> None:
        """Create marks for a document tree (``None`` for data without positions)."""
        self._root = root
        self.problems: list[Problem] = list(problems)

    @classmethod
    def empty(cls) -> Marks:
        """Marks for data that did not come from YAML: every lookup returns ``None``."""
        return cls()

    def _node(self, loc: Sequence[Any]) -> _Node | None:
        node = self._root
        for element in loc:
            if node is None:
                return None
            found = node.lookup(element)
            node = found[0] if found else None
        return node

    def overridden(self, loc: Sequence[Any]) -> None:
        """Record that ``loc`` was set after loading (an override): it has no position, and
        mappings missing on the way are added so that problems keep their full path."""
        if self._root is None or not loc:
            return
        node = self._root
        for index, element in enumerate(loc):
            last = index == len(loc) - 1
            found = node.lookup(element)
            if found is None or last:
                child = _Node("leaf" if last else "map", None)
                if node.kind == "seq" and type(element) is int and found is not None:
                    node.items[element] = child
                elif node.kind == "map":
                    node.children[element] = child
                    node.keys.setdefault(element, None)  # type: ignore[arg-type]
                else:
                    return
                node = child
            else:
                node = found[0]

    def exists(self, loc: Sequence[Any]) -> bool:
        """Whether ``loc`` names a node present in the document."""
        return self._node(loc) is not None

    def locate(self, loc: Sequence[Any], *, key: bool = False) -> Position | None:
        """Find the position of a location in the document.

        Args:
            loc: Path of keys/indices.
            key: For an existing mapping entry, return the position of its key (used for
                unknown-key errors) instead of its value (used for value errors). List
                items have no key; their value position is returned.

        Returns:
            The position, or for a location absent from the document (e.g. a missing
            field) the position of the closest existing parent: its key if it is a
            mapping entry, else its value. ``None`` when the marks are empty.
        """
        node = self._root
        if node is None:
            return None
        key_pos: Position | None = None
        for element in loc:
            found = node.lookup(element)
            if found is None:
                # Missing field: point at where the enclosing entry starts.
                return key_pos or node.mark
            node, key_pos = found
        return (key_pos or node.mark) if key else node.mark

    def locate_key(self, loc: Sequence[Any]) -> Position | None:
        """Position of the key of ``loc`` (see :meth:`locate` with ``key=True``)."""
        return self.locate(loc, key=True)

    def locate_value(self, loc: Sequence[Any]) -> Position | None:
        """Position of the value of ``loc`` (see :meth:`locate`)."""
        return self.locate(loc, key=False)


# --------------------------------------------------------------------------- YAML loading


def _pos(mark: yaml.Mark) -> Position:
    return (mark.line + 1, mark.column + 1)


class _Builder:
    """Builds plain Python data and a :class:`_Node` tree from composed YAML nodes."""

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.duplicates: list[Problem] = []
        self.errors: list[Problem] = []
        # Aliases reuse node objects: build each once (as PyYAML does), detect cycles.
        self._built: dict[int, tuple[Any, _Node]] = {}
        self._active: set[int] = set()

    def build(self, node: Node, loc: Loc) -> tuple[Any, _Node]:
        node_id = id(node)
        if node_id in self._built:
            return self._built[node_id]
        mark = _pos(node.start_mark)
        if node_id in self._active:
            self.errors.append(Problem(format_path(loc), "recursive alias is not supported", *mark))
            return None, _Node("leaf", mark)
        self._active.add(node_id)
        try:
            if isinstance(node, MappingNode) and node.tag == _MAP_TAG:
                result = self._mapping(node, loc, mark)
            elif isinstance(node, SequenceNode) and node.tag == _SEQ_TAG:
                data: list[Any] = []
                seq = _Node("seq", mark)
                for index, item in enumerate(node.value):
                    value, child = self.build(item, (*loc, index))
                    data.append(value)
                    seq.items.append(child)
                result = (data, seq)
            else:
                # Scalars and special collections (!!set, !!omap): SafeLoader semantics.
                try:
                    value = self.loader.construct_object(node, deep=True)
                except (ValueError, OverflowError) as err:
                    # e.g. a timestamp with month 13: PyYAML's constructor raises ValueError.
                    text = node.value if isinstance(node.value, str) else "this value"
                    self.errors.append(Problem(format_path(loc), f"cannot read {text!r}: {err}",
                                               *mark))
                    value = None
                result = (value, _Node("leaf", mark, value))
        finally:
            self._active.discard(node_id)
        self._built[node_id] = result
        return result

    def _mapping(self, node: MappingNode, loc: Loc, mark: Position) -> tuple[Any, _Node]:
        own = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
        # Resolves '<<' merge keys in place: merged pairs come first, own pairs override them.
        self.loader.flatten_mapping(node)
        data: dict[Any, Any] = {}
        mapping = _Node("map", mark)
        first_seen: dict[Any, Position] = {}
        for key_node, value_node in node.value:
            key, _ = self.build(key_node, loc)
            key_pos = _pos(key_node.start_mark)
            try:
                hash(key)
            except TypeError:
                self.errors.append(
                    Problem(format_path(loc), "mapping keys must be scalars", *key_pos)
                )
                continue
            if id(key_node) in own:
                if key in first_seen:
                    self.duplicates.append(
                        Problem(
                            format_path((*loc, key)),
                            f"duplicate key '{key}' (first defined at line {first_seen[key][0]})",
                            *key_pos,
                        )
                    )
                else:
                    first_seen[key] = key_pos
            value, child = self.build(value_node, (*loc, key))
            data[key] = value  # later wins, like PyYAML
            mapping.children[key] = child
            mapping.keys[key] = key_pos
        return data, mapping


def _yaml_problem(err: yaml.YAMLError) -> Problem:
    if isinstance(err, yaml.MarkedYAMLError):
        message = err.problem or err.context or "invalid YAML"
        mark = err.problem_mark or err.context_mark
        context_mark = err.context_mark
        if err.context and err.problem and not err.context.startswith("while"):
            # e.g. "expected a single document in the stream" + "but found another document"
            message = f"{err.context}, {err.problem}"
        elif err.context and err.problem and context_mark is not None:
            if mark is None or context_mark.line != mark.line:
                where = f"line {context_mark.line + 1}, column {context_mark.column + 1}"
                message += f" ({err.context} at {where})"
            else:
                message += f" ({err.context})"
        position = _pos(mark) if mark is not None else (None, None)
        return Problem("", f"invalid YAML: {message}", *position)
    return Problem("", f"invalid YAML: {err}")


#: Deepest nesting of mappings and lists accepted. A real experiment nests about 6 levels;
#: PyYAML's composer (and pydantic after it) recurse once per level, so a deeply nested
#: document would otherwise end in Python's RecursionError instead of a message.
MAX_DEPTH = 64
#: Most YAML nodes a document may hold once its aliases are expanded. Aliases share nodes
#: while loading, but everything after (validation, the run row's JSON copy of the config)
#: walks the expanded tree, so an alias bomb ("billion laughs") must stop here. Real
#: experiments hold a few hundred nodes; 100,000 leaves room for long categorical lists.
MAX_NODES = 100_000
#: Most characters of scalar text a document may hold once its aliases are expanded (10 MB).
MAX_TEXT = 10_000_000
#: Largest experiment file read (bytes).
MAX_FILE_BYTES = 20_000_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than :data:`MAX_DEPTH` while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _TooDeep(_pos(mark))
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1


class _TooDeep(Exception):
    """Nesting beyond :data:`MAX_DEPTH` (carries the position where it happened)."""

    def __init__(self, position: Position) -> None:
        super().__init__(position)
        self.position = position


def _expanded_size(root: Node) -> tuple[int, int]:
    """(nodes, scalar characters) of the document with every alias expanded.

    Aliased nodes are shared, so each node's subtree size is computed once (memoised) and
    the walk costs the size of the file, not of its expansion. A recursive alias (a cycle)
    counts once here; the builder reports it.
    """
    sizes: dict[int, tuple[int, int]] = {}
    active: set[int] = set()

    def walk(node: Node) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            return (0, 0)
        active.add(key)
        nodes, chars = 1, 0
        if isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, SequenceNode):
            children = list(node.value)
        else:
            children = []
            chars = len(node.value) if isinstance(node.value, str) else 0
        for child in children:
            sub_nodes, sub_chars = walk(child)
            # Saturate: past the limits the exact count no longer matters and would
            # otherwise grow without bound (9**40 for a deep bomb).
            nodes = min(nodes + sub_nodes, MAX_NODES + 1)
            chars = min(chars + sub_chars, MAX_TEXT + 1)
        active.discard(key)
        sizes[key] = (nodes, chars)
        return nodes, chars

    return walk(root)


def _reader_problem(err: yaml.reader.ReaderError, text: str) -> Problem:
    """A located problem for a character PyYAML refuses (control characters, NUL...)."""
    where = text[: max(err.position, 0)]
    line = where.count("\n") + 1
    column = len(where) - (where.rfind("\n") + 1) + 1
    char = err.character
    code = f"#x{ord(char):04x}" if isinstance(char, str) else f"#x{int(char):02x}"
    return Problem("", f"invalid YAML: the character {code} is not allowed "
                   "(control characters other than tab and newline cannot appear in YAML)",
                   line, column)


def load_yaml_text(
    text: str, source: str = "<string>", *, defer_duplicates: bool = False
) -> tuple[Any, Marks]:
    """Parse YAML text into plain Python data plus the position of every node.

    Args:
        text: The YAML document.
        source: Name shown in error messages.
        defer_duplicates: If true, duplicate keys do not raise; they are stored in
            ``marks.problems`` so the caller can report them with validation problems.

    Returns:
        ``(data, marks)`` where ``data`` is a dict built with SafeLoader semantics.

    Raises:
        ConfigError: Invalid YAML, duplicate keys, more than one document, or a top level
            that is not a mapping.
    """
    try:
        # The reader checks every character when it is created: inside the try.
        loader = _Loader(text)
    except yaml.reader.ReaderError as err:
        raise ConfigError([_reader_problem(err, text)], source) from None
    try:
        root = loader.get_single_node()
        if root is None:
            raise ConfigError(
                [Problem("", "the file is empty; expected a mapping of settings")], source
            )
        nodes, chars = _expanded_size(root)
        if nodes > MAX_NODES or chars > MAX_TEXT:
            raise ConfigError([Problem(
                "", f"the document is too large once its aliases (*name) are expanded: more "
                f"than {MAX_NODES:,} values or {MAX_TEXT:,} characters; write large data to a "
                "file (population.file, network edge_list) instead", *_pos(root.start_mark))],
                source)
        builder = _Builder(loader)
        data, tree = builder.build(root, ())
    except yaml.reader.ReaderError as err:
        raise ConfigError([_reader_problem(err, text)], source) from None
    except yaml.YAMLError as err:
        raise ConfigError([_yaml_problem(err)], source) from None
    except _TooDeep as err:
        raise ConfigError([Problem(
            "", f"invalid YAML: nested more than {MAX_DEPTH} levels deep", *err.position)],
            source) from None
    finally:
        loader.dispose()
    problems = list(builder.errors)
    if not isinstance(data, dict):
        problems.append(
            Problem(
                "",
                f"top level must be a mapping of settings, got {_describe(data)}",
                *tree.mark,
                expected="a mapping (key: value)",
            )
        )
    if not defer_duplicates:
        problems.extend(builder.duplicates)
    if problems:
        if defer_duplicates:
            problems.extend(builder.duplicates)
        raise ConfigError(problems, source)
    return data, Marks(tree, builder.duplicates)


def load_yaml(path: str | Path, *, defer_duplicates: bool = False) -> tuple[Any, Marks]:
    """Read and parse a YAML config file (see :func:`load_yaml_text`).

    Args:
        path: The file; also the source name shown in messages.
        defer_duplicates: Store duplicate keys in ``marks.problems`` instead of raising.

    Returns:
        ``(data, marks)``.

    Raises:
        ConfigError: The file cannot be read, or its content is invalid.
    """
    source = str(path)
    file = Path(path)
    try:
        with file.open("rb") as stream:
            # A bounded read: /dev/zero or a huge file must not fill the memory.
            raw = stream.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError([Problem("", f"file is larger than {MAX_FILE_BYTES // 10**6} MB; "
                                       "an experiment file is a few KB (put large data in "
                                       "population or edge files)")], source)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError([Problem("", f"file not found: {file.absolute()}")], source) from None
    except IsADirectoryError:
        raise ConfigError([Problem("", f"not a file: {file.absolute()}")], source) from None
    except PermissionError:
        raise ConfigError([Problem("", f"permission denied: {file.absolute()}")], source) from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            [Problem("", f"file is not valid UTF-8 (byte offset {err.start})")], source
        ) from None
    return load_yaml_text(text, source, defer_duplicates=defer_duplicates)


# --------------------------------------------------------------------------- model walking

# A candidate type at some location, with the discriminator of its enclosing union (if any).
_Cand = tuple[Any, "str | None"]


def _disc_name(disc: Any) -> str | None:
    if isinstance(disc, str):
        return disc
    if isinstance(disc, Discriminator) and isinstance(disc.discriminator, str):
        return disc.discriminator
    return None


def _expand(tp: Any, disc: str | None = None) -> list[_Cand]:
    """Flatten Annotated/Optional/Union wrappers into candidate types."""
    if isinstance(tp, getattr(typing, "TypeAliasType", ())):  # `type X = ...` (3.12+)
        return _expand(tp.__value__, disc)
    if hasattr(tp, "__supertype__"):  # typing.NewType
        return _expand(tp.__supertype__, disc)
    origin = get_origin(tp)
    if origin is Annotated:
        base, *metadata = get_args(tp)
        for meta in metadata:
            if isinstance(meta, FieldInfo):
                disc = _disc_name(meta.discriminator) or disc
            elif isinstance(meta, Discriminator):
                disc = _disc_name(meta) or disc
        return _expand(base, disc)
    if origin is Union or origin is types.UnionType:
        return [c for arg in get_args(tp) if arg is not type(None) for c in _expand(arg, disc)]
    return [(tp, disc)]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _model_field(model: type[BaseModel], name: Any) -> FieldInfo | None:
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias, info.validation_alias):
            return info
    return None


def _input_names(tp: Any) -> list[str]:
    """Keys accepted in the input for a model / dataclass / TypedDict."""
    if _is_model(tp):
        by_name = tp.model_config.get("populate_by_name") or tp.model_config.get("validate_by_name")
        names = []
        for name, info in tp.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            alias = alias or info.alias
            names.append(alias or name)
            if alias and by_name:
                names.append(name)
        return names
    if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
        return list(_hints(tp))
    return []


def _hints(tp: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(tp, include_extras=True)
    except Exception:  # unresolved forward references: give up on this branch
        return {}


def _choices(cands: Iterable[_Cand]) -> list[Any]:
    """Allowed values of Literal / Enum candidates, in declaration order."""
    values: list[Any] = []
    for tp, _ in cands:
        if get_origin(tp) is Literal:
            new = list(get_args(tp))
        elif isinstance(tp, type) and issubclass(tp, enum.Enum):
            new = [member.value for member in tp]
        else:
            continue
        values.extend(v for v in new if v not in values)
    return values


def _tag_values(tp: Any, disc: str) -> list[Any]:
    info = _model_field(tp, disc) if _is_model(tp) else None
    return _choices(_expand(info.annotation)) if info is not None else []


def _select(cands: list[_Cand], node: _Node | None) -> list[_Cand]:
    """Keep the discriminated-union member selected by the tag written in the document."""
    if node is None or node.kind != "map":
        return cands
    kept = []
    for tp, disc in cands:
        if disc and _is_model(tp):
            found = node.lookup(disc)
            if found is None:
                kept.append((tp, disc))
                continue
            tag = found[0].value
            if any(tag == v or str(tag) == str(v) for v in _tag_values(tp, disc)):
                kept.append((tp, disc))
        else:
            kept.append((tp, disc))
    return kept or cands


def _step(cand: _Cand, element: Any) -> list[_Cand]:
    """Candidate types one level below ``cand`` along key/index ``element``."""
    tp, _ = cand
    if _is_model(tp):
        if issubclass(tp, RootModel):
            root = tp.model_fields["root"].annotation
            return [c for inner in _expand(root) for c in _step(inner, element)]
        info = _model_field(tp, element)
        if info is None:
            return []
        return _expand(info.annotation, _disc_name(info.discriminator))
    if dataclasses.is_dataclass(tp) or typing.is_typeddict(tp):
        hints = _hints(tp)
        return _expand(hints[element]) if element in hints else []
    origin, args = get_origin(tp), get_args(tp)
    if not isinstance(origin, type):
        return []
    if issubclass(origin, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return _expand(args[0])
        if type(element) is int and 0 <= element < len(args):
            return _expand(args[element])
        return []
    if issubclass(origin, collections.abc.Mapping) and len(args) == 2:
        return _expand(args[1])
    if issubclass(origin, collections.abc.Iterable) and len(args) == 1:
        return _expand(args[0])
    return []


def _resolve(model: Any, loc: Sequence[Any], node: _Node | None) -> list[_Cand]:
    """Walk ``model`` along ``loc`` (following the document for union members)."""
    cands = _expand(model)
    for element in loc:
        cands = [c for cand in _select(cands, node) for c in _step(cand, element)]
        found = node.lookup(element) if node is not None else None
        node = found[0] if found else None
        if not cands:
            return []
    return _select(cands, node)


# --------------------------------------------------------------------------- pydantic errors

# Pydantic's internal validator labels that can appear in an error's loc.
_LABEL = re.compile(
    r"^(function-(after|before|wrap|plain)|json-or-python|lax-or-strict|chain|is-instance|"
    r"tagged-union|union|nullable|default|definition-ref|model|dataclass|typed-dict)\["
)
# Error types whose last loc element legitimately does not exist in the input.
_ABSENT_OK = {
    "missing",
    "missing_argument",
    "missing_keyword_only_argument",
    "missing_positional_only_argument",
}
_TYPE_EXPECTED = {
    **dict.fromkeys(
        ("int_type", "int_parsing", "int_from_float", "int_parsing_size"), "an integer"
    ),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    **dict.fromkeys(("string_type", "string_unicode", "string_sub_type", "bytes_type"), "a string"),
    **dict.fromkeys(
        (
            "dict_type",
            "model_type",
            "model_attributes_type",
            "dataclass_type",
            "dataclass_exact_type",
            "mapping_type",
        ),
        "a mapping",
    ),
    **dict.fromkeys(
        ("list_type", "tuple_type", "set_type", "frozen_set_type", "iterable_type"), "a list"
    ),
    "none_required": "null",
    **dict.fromkeys(
        ("date_type", "date_parsing", "date_from_datetime_parsing", "date_from_datetime_inexact"),
        "a date (YYYY-MM-DD)",
    ),
    **dict.fromkeys(
        (
            "datetime_type",
            "datetime_parsing",
            "datetime_from_date_parsing",
            "datetime_object_invalid",
        ),
        "a date-time",
    ),
    **dict.fromkeys(("time_type", "time_parsing"), "a time (HH:MM[:SS])"),
    **dict.fromkeys(("time_delta_type", "time_delta_parsing"), "a duration"),
    **dict.fromkeys(("decimal_type", "decimal_parsing"), "a decimal number"),
    **dict.fromkeys(("uuid_type", "uuid_parsing"), "a UUID"),
    **dict.fromkeys(("url_type", "url_parsing", "url_syntax_violation"), "a URL"),
    "callable_type": "a callable",
}
_BOUNDS = {
    "greater_than": ("gt", "greater than", ">"),
    "greater_than_equal": ("ge", "greater than or equal to", ">="),
    "less_than": ("lt", "less than", "<"),
    "less_than_equal": ("le", "less than or equal to", "<="),
}


def _describe(value: Any) -> str:
    """Show an input value the way a YAML author wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if isinstance(value, int | float):
        return repr(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _show_choice(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_listing(text: Any) -> list[str]:
    """Parse pydantic's ``"'a', 'b' or 'c'"`` listings (fallback when no model is given)."""
    if not isinstance(text, str) or not text:
        return []
    return [part.strip().strip("'\"") for part in re.split(r", | or ", text) if part.strip()]


def _closest(word: Any, options: Iterable[Any]) -> str | None:
    names = [_show_choice(o) for o in options]
    text = _show_choice(word)
    lowered = {name.lower(): name for name in names}
    if text.lower() in lowered and text not in names:
        return lowered[text.lower()]  # only the case differs
    matches = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _soften(msg: str) -> str:
    # "Input should be X" reads better in a config report as "must be X".
    for prefix, repl in (
        ("Value error, ", ""),
        ("Assertion failed, ", ""),
        ("Input should ", "must "),
    ):
        if msg.startswith(prefix):
            msg = repl + msg[len(prefix) :]
    return msg[:1].lower() + msg[1:] if msg[:2] != msg[:2].upper() else msg


@dataclass
class _Converted:
    problem: Problem
    branch: bool  # a union-branch label was dropped from the loc
    got: str | None = None  # set for plain type errors, used to merge union branches


def _clean_loc(loc: Sequence[Any], kind: str, node: _Node | None) -> tuple[Loc, bool, bool]:
    """Drop pydantic's tag / branch / validator labels from ``loc`` by following the document.

    Returns:
        (cleaned loc, whether a union label was dropped, whether the error is about a key).
    """
    out: list[Any] = []
    branch = is_key = False
    last = len(loc) - 1
    for index, element in enumerate(loc):
        found = node.lookup(element) if node is not None else None
        if found is not None:
            out.append(element)
            node = found[0]
        elif element == "[key]":
            is_key = True
        elif isinstance(element, str) and _LABEL.match(element):
            continue
        elif node is None or (index == last and kind in _ABSENT_OK):
            # Outside the document (or a missing field): nothing to check against.
            out.append(element)
            node = None
        elif node.kind == "seq" and type(element) is int:
            out.append(element)
            node = None
        else:
            # Absent from the document: a discriminator tag or union member name.
            branch = True
    return tuple(out), branch, is_key


def _convert(error: Any, prefix: Loc, marks: Marks, model: Any, base: _Node | None) -> _Converted:
    kind: str = error["type"]
    ctx: dict[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    rel, branch, is_key = _clean_loc(error["loc"], kind, base)
    loc = prefix + rel
    expected = suggestion = got = None
    at_key = is_key

    def cands(at: Loc) -> list[_Cand]:
        return _resolve(model, at, base) if model is not None else []

    if kind == "extra_forbidden":
        name = rel[-1] if rel else ""
        message = f"unknown key '{name}'"
        allowed = list(dict.fromkeys(n for tp, _ in cands(rel[:-1]) for n in _input_names(tp)))
        suggestion = _closest(name, allowed)
        if suggestion is None and allowed:
            expected = "one of: " + ", ".join(allowed)
        at_key = True
    elif kind in _ABSENT_OK:
        message = f"required field '{rel[-1] if rel else ''}' is missing"
    elif kind in ("literal_error", "enum"):
        options = _choices(cands(rel)) or _parse_listing(ctx.get("expected"))
        expected = "one of: " + ", ".join(_show_choice(o) for o in options)
        if isinstance(value, dict | list):
            message = f"expected a single value, got {_describe(value)}"
        else:
            message = f"invalid value {_describe(value)}"
            suggestion = _closest(value, options)
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        disc = str(ctx.get("discriminator", "")).strip("'\"")
        here = cands(rel)
        tags = [t for tp, d in here if d for t in _tag_values(tp, d)]
        tags = list(dict.fromkeys(tags)) or _parse_listing(ctx.get("expected_tags"))
        expected = "one of: " + ", ".join(_show_choice(t) for t in tags) if tags else None
        if disc.isidentifier():
            loc += (disc,)  # point at the tag itself, not the whole mapping
        if kind == "union_tag_invalid":
            tag = ctx.get("tag")
            message = f"invalid value {_describe(tag)}"
            suggestion = _closest(tag, tags)
        else:
            message = f"required field '{disc}' is missing"
    elif kind in _TYPE_EXPECTED:
        expected = _TYPE_EXPECTED[kind]
        got = _describe(value)
        message = f"expected {expected}, got {got}"
    elif kind in _BOUNDS:
        key, words, symbol = _BOUNDS[kind]
        bound = ctx.get(key)
        # pydantic reports gt=0 on a float field as 0.0; show it as written.
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        message = f"must be {words} {bound}"
        expected = f"a number {symbol} {bound}"
    elif kind in ("too_short", "too_long", "string_too_short", "string_too_long"):
        limit = ctx.get("min_length" if kind.endswith("short") else "max_length")
        bound = "at least" if kind.endswith("short") else "at most"
        unit = "character" if kind.startswith("string") else "item"
        message = f"must have {bound} {limit} {unit}{'' if limit == 1 else 's'}"
        if "actual_length" in ctx:
            message += f", got {ctx['actual_length']}"
    elif kind == "string_pattern_mismatch":
        message = f"must match the pattern '{ctx.get('pattern')}'"
    elif kind == "multiple_of":
        message = f"must be a multiple of {ctx.get('multiple_of')}"
    else:
        message = _soften(str(error.get("msg", kind)))
    if is_key:
        message = f"invalid key '{rel[-1] if rel else ''}': {message}"
    node = marks._node(loc)
    if node is not None and node.kind == "map":
        at_key = True  # a block mapping's value starts at its first child; point at its key
    position = marks.locate(loc, key=at_key) or (None, None)
    problem = Problem(format_path(loc), message, *position, expected, suggestion)
    return _Converted(problem, branch, got)


def _merge(converted: list[_Converted]) -> list[Problem]:
    """Merge the per-branch type errors of a plain union; drop exact duplicates."""
    groups: dict[str, list[_Converted]] = {}
    for item in converted:
        if item.branch and item.got is not None:
            groups.setdefault(item.problem.path, []).append(item)
    problems: list[Problem] = []
    done: set[str] = set()
    for item in converted:
        problem = item.problem
        group = groups.get(problem.path) if item.branch and item.got is not None else None
        if group is not None and len(group) > 1:
            if problem.path in done:
                continue
            done.add(problem.path)
            options = list(dict.fromkeys(g.problem.expected or "" for g in group))
            expected = " or ".join(options)
            problem = dataclasses.replace(
                problem, message=f"expected {expected}, got {item.got}", expected=expected
            )
        if problem not in problems:
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
        model: The model that was validated; enables "did you mean" for unknown keys and
            exact choice lists. Without it, choices come from pydantic's message.

    Returns:
        One problem per error (branch errors of a plain ``Union`` merged), in error order.
    """
    prefix = tuple(loc_prefix)
    base = marks._node(prefix)
    converted = [
        _convert(error, prefix, marks, model, base) for error in err.errors(include_url=False)
    ]
    return _merge(converted)


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
