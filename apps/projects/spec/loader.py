"""Load `.controlplane.yml` as plain YAML and remember where every key and value is.

Only plain tags are allowed, keys must be unique strings, and alias bombs, recursion and deep
nesting are refused before anything is constructed. `NodeIndex` maps each JSON path to its
line and column, so later checks can name the line of the key they complain about.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from apps.projects.spec.parsed import JsonPath, SpecError, SpecIssue

MAX_SPEC_BYTES = 256 * 1024
# Aliases let a small document expand into a huge tree ("billion laughs"); cap the walk.
MAX_NODES = 50_000
MAX_DEPTH = 32

_TAG = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "seq", "map")}
_MERGE_TAG = _TAG + "merge"
_STR_TAG = _TAG + "str"
# Timestamps would turn `2024-01-01` into date objects and `=` has no safe constructor;
# without these resolvers both stay plain strings.
_DROPPED_RESOLVERS = {_TAG + "timestamp", _TAG + "value"}


_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SpecLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    pass


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_RESOLVERS]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def decode(text: str | bytes) -> str:
    size = len(text.encode("utf-8", "surrogatepass")) if isinstance(text, str) else len(text)
    if size > MAX_SPEC_BYTES:
        raise SpecError(
            [SpecIssue("", None, None, f"spec is too large ({size} bytes; limit {MAX_SPEC_BYTES})")]
        )
    if isinstance(text, str):
        return text.removeprefix("\ufeff")
    try:
        return text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = text[: exc.start].count(b"\n") + 1
        raise SpecError([SpecIssue("", line, None, "file is not valid UTF-8")]) from None


def _reader_issue(exc: yaml.reader.ReaderError, source: str) -> SpecIssue:
    line = source[: max(exc.position, 0)].count("\n") + 1
    if isinstance(exc.character, int):
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    else:
        problem = str(exc.reason)
    return SpecIssue("", line, None, f"YAML syntax error: {problem}")


def _yaml_issue(exc: yaml.YAMLError, prefix: str = "YAML syntax error") -> SpecIssue:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    if context and problem.startswith("but "):
        message = f"{prefix}: {context}, {problem}"
    else:
        message = f"{prefix}: {problem}" + (f" ({context})" if context else "")
    if mark is None:
        return SpecIssue("", None, None, message)
    return SpecIssue("", mark.line + 1, mark.column + 1, message)


def compose(source: str) -> tuple[yaml.Node, _SpecLoader]:
    try:
        loader = _SpecLoader(source)  # the pure-Python reader already rejects bad characters
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        raise SpecError([_reader_issue(exc, source)]) from None
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(exc)]) from None
    except RecursionError:
        raise SpecError([SpecIssue("", None, None, "document is nested too deeply")]) from None
    if root is None:
        raise SpecError([SpecIssue("", 1, 1, "spec is empty")])
    if not isinstance(root, yaml.MappingNode):
        line, column = _pos(root)
        raise SpecError([SpecIssue("", line, column, "top level must be a mapping")])
    return root, loader


def construct(root: yaml.Node, loader: _SpecLoader) -> dict[str, Any]:
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(exc, "cannot load value")]) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise SpecError([SpecIssue("", None, None, f"cannot load value: {exc}")]) from None


# --------------------------------------------------------------------------- node index

Position = tuple[int, int]


def _pos(node: yaml.Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


class NodeIndex:
    """JSON path -> source position of keys and values, plus structural YAML problems."""

    def __init__(self) -> None:
        self.keys: dict[JsonPath, Position] = {}
        self.values: dict[JsonPath, Position] = {}
        self.issues: list[SpecIssue] = []
        self.fatal = False
        self._visited = 0
        self._stack: set[int] = set()

    @classmethod
    def build(cls, root: yaml.Node) -> NodeIndex:
        index = cls()
        index._walk(root, ())
        return index

    def locate(self, path: JsonPath) -> Position | None:
        """Position of the key naming `path` (else its value), falling back to ancestors."""
        while True:
            found = self.keys.get(path) or self.values.get(path)
            if found or not path:
                return found
            path = path[:-1]

    def issue(self, path: JsonPath, message: str) -> SpecIssue:
        line, column = self.locate(path) or (None, None)
        return SpecIssue(format_path(path), line, column, message)

    def _add(self, node: yaml.Node, path: JsonPath, message: str, fatal: bool = False) -> None:
        line, column = _pos(node)
        self.issues.append(SpecIssue(format_path(path), line, column, message))
        self.fatal = self.fatal or fatal

    def _enter(self, node: yaml.Node, path: JsonPath) -> bool:
        """Count the node and refuse alias bombs, recursion and absurd nesting."""
        self._visited += 1
        if self._visited > MAX_NODES:
            message = f"document too complex (over {MAX_NODES} nodes once aliases are expanded)"
        elif id(node) in self._stack:
            message = "recursive YAML alias is not allowed"
        elif len(path) > MAX_DEPTH:
            message = f"nested too deeply (more than {MAX_DEPTH} levels)"
        elif node.tag not in _ALLOWED_TAGS:
            message = f"unsupported YAML tag '{_short_tag(node.tag)}'"
        else:
            return True
        self._add(node, path, message, fatal=True)
        return False

    def _walk(self, node: yaml.Node, path: JsonPath) -> None:
        if self.fatal or not self._enter(node, path):
            return
        self.values.setdefault(path, _pos(node))
        self._stack.add(id(node))
        if isinstance(node, yaml.MappingNode):
            self._walk_mapping(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for position, item in enumerate(node.value):
                self._walk(item, (*path, position))
        self._stack.discard(id(node))

    def _walk_mapping(self, node: yaml.MappingNode, path: JsonPath) -> None:
        seen: dict[str, yaml.Node] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged += self._merged_entries(value_node, path)
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                message = f"duplicate key '{key}' (first defined on line {first})"
                self._add(key_node, (*path, key), message)
            seen[key] = key_node
            self.keys[(*path, key)] = _pos(key_node)
            self._walk(value_node, (*path, key))
        for key_node, value_node in merged:  # explicit keys win, then the first merge source
            key = self._key(key_node, path)
            if key is not None and (*path, key) not in self.keys:
                self.keys[(*path, key)] = _pos(key_node)
                self._walk(value_node, (*path, key))

    def _key(self, node: yaml.Node, path: JsonPath) -> str | None:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            return node.value
        if isinstance(node, yaml.ScalarNode):
            message = f"key {node.value!r} is read as {_short_tag(node.tag)}; quote it"
        else:
            message = "keys must be plain strings"
            self.fatal = True  # a list or mapping key cannot even be constructed
        self._add(node, path, message)
        return None

    def _merged_entries(self, node: yaml.Node, path: JsonPath) -> list[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs pulled in by `<<: *anchor`, highest priority first."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        entries: list[tuple[yaml.Node, yaml.Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self._add(
                    source, path, "merge key '<<' needs a mapping or list of mappings", fatal=True
                )
            if self.fatal or not self._enter(source, path):
                return []
            self._stack.add(id(source))
            own = [(k, v) for k, v in source.value if k.tag != _MERGE_TAG]
            nested = [
                entry
                for k, v in source.value
                if k.tag == _MERGE_TAG
                for entry in self._merged_entries(v, path)
            ]
            self._stack.discard(id(source))
            entries += own + nested
        return entries


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def format_path(path: JsonPath) -> str:
    """('jobs', 'build', 'needs', 0) -> 'jobs.build.needs[0]'."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def load(text: str | bytes) -> tuple[dict[str, Any], NodeIndex]:
    """The plain data of the spec and where each part of it is.

    Raises `SpecError` when the file cannot be read as plain YAML at all; problems that still
    leave a usable document (a repeated key, a key read as a boolean) are in `index.issues`.
    """
    source = decode(text)
    root, loader = compose(source)
    index = NodeIndex.build(root)
    if index.fatal:
        raise SpecError(index.issues)
    return construct(root, loader), index
