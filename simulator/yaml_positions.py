"""YAML loading for experiment files that keeps where every key and value was written.

- :func:`load_yaml` / :func:`load_yaml_text`: parse YAML (SafeLoader semantics) into plain Python
  data plus :class:`Marks`; syntax errors, duplicate keys, missing files, oversized or too deeply
  nested documents and non-mapping documents become a :class:`~.config_problems.ConfigError`.
- :class:`Marks`: the 1-based (line, column) of each key and value of the loaded document, so
  that a problem found later (by pydantic, by a check) can point into the file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from .config_problems import ConfigError, Problem, format_path, show_value

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "MAX_TEXT", "Loc", "Marks", "Position",
           "load_yaml", "load_yaml_text"]

#: A path into the document: mapping keys and list indices.
Loc = tuple[Any, ...]
#: A 1-based (line, column) position.
Position = tuple[int, int]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"


# --------------------------------------------------------------------------- marks


@dataclass(eq=False)
class _Node:
    """Position information for one node of the YAML document."""

    kind: Literal["map", "seq", "leaf"]
    mark: Position | None  # None: set by an override, not written in the file
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


def _shape(data: Any) -> _Node:
    """The node tree of plain data, without positions."""
    if isinstance(data, dict):
        return _Node("map", None, keys=dict.fromkeys(data), children={  # type: ignore[arg-type]
            k: _shape(v) for k, v in data.items()})
    if isinstance(data, list | tuple):
        return _Node("seq", None, items=[_shape(v) for v in data])
    return _Node("leaf", None)


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

    @classmethod
    def of(cls, data: Any) -> Marks:
        """Marks for data built in Python: no positions, but its shape, so that problems name
        the keys of the data and not pydantic's union labels (``events[0].at``, not
        ``events[0].set.at``)."""
        return cls(_shape(data))

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

    def is_mapping(self, loc: Sequence[Any]) -> bool:
        """Whether ``loc`` names a mapping written in the document."""
        node = self._node(loc)
        return node is not None and node.kind == "map"

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
                result = (value, _Node("leaf", mark))
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
                f"top level must be a mapping of settings, got {show_value(data)}",
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


