"""YAML that remembers where each key and item was, so every schema error names ``file:line``."""
from __future__ import annotations

import difflib
from typing import Any, Iterable

import yaml


class LineDict(dict):
    """A YAML mapping that remembers its own line and each key's line (1-based)."""

    line: int = 0
    lines: dict


class LineList(list):
    line: int = 0
    lines: list


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Located(line, f"keys must be strings (got {key!r})")
        if key in out:
            raise _Located(line, f"duplicate key {key!r} (first at line {out.lines[key]})")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


class _Located(Exception):
    """A schema problem at a line; `load_space` turns it into ``UserError("file:line: ...")``."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line, self.message = line, message


def _line(container: Any, key: Any = None) -> int:
    if key is not None and isinstance(container, LineDict) and key in container.lines:
        return container.lines[key]
    if key is not None and isinstance(container, LineList) and isinstance(key, int) and key < len(container.lines):
        return container.lines[key]
    return getattr(container, "line", 0)


def _check_keys(mapping: Any, allowed: Iterable[str], where: str, line: int) -> None:
    if not isinstance(mapping, dict):
        raise _Located(line, f"{where} must be a mapping (got {_kind(mapping)})")
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise _Located(_line(mapping, key), f"unknown key {key!r} in {where}{_did_you_mean(key, allowed)}; "
                                                 f"allowed: {', '.join(allowed)}")


def _did_you_mean(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    return {dict: "a mapping", LineDict: "a mapping", list: "a list", LineList: "a list"}.get(
        type(value), f"{type(value).__name__} {value!r}")
