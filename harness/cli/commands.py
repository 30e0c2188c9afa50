"""The command registry of ``run_bench.py`` and the flags built from the run options table.

Each command module (`jobs`, `sweep`, `results`) registers ``(configure parser, run)`` pairs with
`command`; `harness.cli.main` builds the parser from them. Run flags are not written here:
`add_option_group` makes them from `harness.job.options.OPTIONS`, the table YAML sweeps read too.
"""
from __future__ import annotations

import argparse
from typing import Any, Callable

from harness.job.options import GROUPS, Option, parse_float_list, parse_int_list, parse_str_tuple
from harness.registry import Registry

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]
COMMANDS: Registry[tuple[Configure, Run]] = Registry("command")

GROUP_TITLES = {
    "data": "data",
    "training": "training (defaults: the authors' recipe for the model family)",
    "pruning": "pruning schedule (defaults: the authors' recipe for the model family)",
}


def command(name: str, help: str) -> Callable[[tuple[Configure, Run]], tuple[Configure, Run]]:
    def wrap(pair: tuple[Configure, Run]) -> tuple[Configure, Run]:
        COMMANDS.register(name, help=help)(pair)
        return pair
    return wrap


def int_list(text: str) -> tuple[int, ...]:
    try:
        return parse_int_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def float_list(text: str) -> tuple[float, ...]:
    try:
        return parse_float_list(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "int_list": int_list,
                                           "float_list": float_list, "str_tuple": parse_str_tuple}


def add_option(group: Any, o: Option) -> None:
    kw: dict[str, Any] = {"help": o.help}
    if o.kind == "bool":
        kw.update(action="store_true", default=o.default)
    elif o.kind == "list":
        kw.update(action="append", default=list(o.default))
    else:
        kw.update(default=o.default)
        if o.kind in _TYPES:
            kw["type"] = _TYPES[o.kind]
    if o.choices:
        kw["choices"] = o.choices
    if o.required:
        kw["required"] = True
    if o.metavar:
        kw["metavar"] = o.metavar
    group.add_argument(o.flag, **kw)


def add_option_group(p: argparse.ArgumentParser, name: str, *, with_output: bool = True) -> None:
    """The flags of one options group; training also gets --out and --quiet (``with_output``)."""
    g = p.add_argument_group(GROUP_TITLES[name])
    for o in GROUPS[name]:
        add_option(g, o)
    if name == "training" and with_output:
        for o in GROUPS["output"]:
            add_option(g, o)
