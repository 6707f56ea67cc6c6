"""Line-aware YAML for the files humans edit: ``config.yaml`` and ``mappings/*.yaml``.

PyYAML's ``safe_load`` forgets where each value was written and silently keeps the last of two
equal keys. Messages that say "config.yaml:12: broker.prefetch: ..." need both, so this module
composes the document into PyYAML nodes (SafeLoader, so no arbitrary tags) and converts them into
:class:`Node` objects that keep their line. Duplicate keys become problems instead of vanishing.
"""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

import yaml

from syncd.errors import Problem

Scalar: TypeAlias = str | int | float | bool | bytes | datetime.date | None
Value: TypeAlias = Scalar | dict[str, "Node"] | list["Node"]

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Node:
    """One YAML value and the 1-based line it belongs to.

    ``value`` is a plain scalar (str, int, float, bool, None, ...), a ``dict[str, Node]`` for a
    mapping or a ``list[Node]`` for a sequence. Mapping keys are their text as written (so
    ``yes:`` is the key ``"yes"``, never ``True``). A mapping value's line is the line of its key,
    which is where a reader looks for "broker.prefetch"; a list item's line is its own.
    """

    value: Value
    line: int

    @property
    def mapping(self) -> dict[str, Node] | None:
        """The entries if this node is a mapping, else None."""
        return self.value if isinstance(self.value, dict) else None

    @property
    def sequence(self) -> list[Node] | None:
        """The items if this node is a list, else None."""
        return self.value if isinstance(self.value, list) else None

    def describe(self) -> str:
        """What was found, for "expected X, found Y" messages."""
        return describe(self.value)


def describe(value: object) -> str:
    """Say what a value is in a way a person editing YAML recognises."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if isinstance(value, int | float):
        return str(value)
    return repr(value)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """ "; did you mean 'x'?" when one of ``choices`` is close to ``word``, else ""."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_key(key: str, allowed: Sequence[str]) -> str:
    """The message for a key that is not one of ``allowed``."""
    return f"unknown key{did_you_mean(key, allowed)} (allowed: {', '.join(allowed)})"


def parse_yaml(text: str, file: str) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML document into a :class:`Node` tree.

    Returns the root (None for an empty document or when the text is not valid YAML) and the
    problems found, each naming ``file`` and a line. Duplicate keys are problems but do not stop
    the tree from being built, so callers can go on and report every other mistake too.
    """
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_problem(exc, file)]
    except yaml.YAMLError as exc:
        return None, [Problem(file, None, f"not valid YAML: {exc}")]
    finally:
        loader.dispose()
    if root is None:
        return None, []
    builder = _Builder(loader, file)
    node = builder.build(root, _line(root), "")
    return node, builder.problems


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    message = f"not valid YAML: {exc.problem or exc.context}"
    if exc.context and exc.context_mark is not None and exc.problem:
        message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
    if "\\t" in message or "\t" in message:
        message += "; indent with spaces, YAML does not allow tabs"
    return Problem(file, mark.line + 1 if mark is not None else None, message)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Builder:
    """Turns composed PyYAML nodes into :class:`Node` trees, collecting problems on the way."""

    def __init__(self, loader: yaml.SafeLoader, file: str):
        self.loader = loader
        self.file = file
        self.problems: list[Problem] = []
        self._open: set[int] = set()  # nodes being built: an alias back to one is a cycle
        self._checked: set[int] = set()  # mappings already checked for duplicates and merged

    def build(self, node: yaml.Node, line: int, path: str) -> Node:
        if id(node) in self._open:
            self._problem(line, f"{path or 'document'}: an alias refers to the value it is in")
            return Node(None, line)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return Node(self._mapping(node, path), line)
            if isinstance(node, yaml.SequenceNode):
                items = [self.build(n, _line(n), f"{path}[{i}]") for i, n in enumerate(node.value)]
                return Node(items, line)
            return Node(self._scalar(node, line, path), line)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, Node]:
        if id(node) not in self._checked:
            # Duplicates are looked for before merging: keys that `<<: *base` brings in may be
            # overridden on purpose, two keys written in the same mapping may not.
            self._checked.add(id(node))
            self._report_duplicates(node, path)
            try:
                self.loader.flatten_mapping(node)
            except yaml.YAMLError as exc:
                # Only the problem: the full text quotes the line, which may hold a secret.
                reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
                self._problem(_line(node), f"{path or 'document'}: {reason}")
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # left over only when merging failed, which is reported above
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(_line(key_node), f"{path or 'document'}: a key must be a plain name")
                continue
            key = str(key_node.value)
            entries[key] = self.build(value_node, _line(key_node), _join(path, key))
        return entries

    def _report_duplicates(self, node: yaml.MappingNode, path: str) -> None:
        first_line: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = str(key_node.value)
            if key in first_line:
                self._problem(
                    _line(key_node),
                    f"{_join(path, key)}: duplicate key, also set at line {first_line[key]}; "
                    "YAML would silently keep only the last one, so remove one of them",
                )
            else:
                first_line[key] = _line(key_node)

    def _scalar(self, node: yaml.Node, line: int, path: str) -> Scalar:
        try:
            value: Scalar = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            reason = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
            self._problem(line, f"{path or 'document'}: {reason}")
            return None
        except (ValueError, TypeError, OverflowError):
            # A tag the text does not fit (`!!int abc`). PyYAML's reason quotes the text, which
            # may be a password: it is not repeated.
            self._problem(line, f"{path or 'document'}: not a valid {node.tag}; remove the tag")
            return None
        return value

    def _problem(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))
