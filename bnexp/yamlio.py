"""Strict YAML reading for configs and `--set` values.

PyYAML's safe loader is lenient in ways that hurt a config: a repeated key silently wins, `1e-4` is read as
a string, and aliases can expand a few lines into gigabytes or into a cycle. `parse` refuses all of that with
a `YamlProblem` carrying the 1-based line and column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_NODES = 20_000  # after alias expansion: far above any real config, far below a memory problem
MAX_DEPTH = 40

# YAML 1.1 needs a dot in a float (1.0e-4); a config writer expects 1e-4 to be a number too
FLOAT = re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$|^[-+]?\d[\d_]*\.\d*$|^[-+]?\.\d+$")


@dataclass
class YamlProblem(Exception):
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        return self.message


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and reads 1e-4 as a float."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise YamlProblem(
                    f"duplicate key {key!r} (first at line {seen[key]}); each key may appear once",
                    key_node.start_mark.line + 1,
                    key_node.start_mark.column + 1,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def check_size(node: yaml.Node | None) -> None:
    """Refuse recursive aliases, alias bombs and deep nesting before anything is constructed."""
    if node is None:
        return
    count = 0
    stack: list[tuple[yaml.Node, int, frozenset[int]]] = [(node, 1, frozenset())]
    while stack:
        current, depth, ancestors = stack.pop()
        count += 1
        mark = current.start_mark
        if count > MAX_NODES:
            raise YamlProblem(f"the document expands to more than {MAX_NODES} values (alias bomb?)", mark.line + 1)
        if depth > MAX_DEPTH:
            raise YamlProblem(f"nesting deeper than {MAX_DEPTH} levels", mark.line + 1, mark.column + 1)
        if id(current) in ancestors:
            raise YamlProblem("an alias refers to a value that contains it (recursive alias)", mark.line + 1)
        if isinstance(current, yaml.MappingNode):
            children = [n for pair in current.value for n in pair]
        elif isinstance(current, yaml.SequenceNode):
            children = list(current.value)
        else:
            continue
        inner = ancestors | {id(current)}
        stack.extend((child, depth + 1, inner) for child in children)


def parse(text: str) -> tuple[Any, yaml.Node | None]:
    """The document's data and its node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=StrictLoader)
        check_size(node)
        return yaml.load(text, Loader=StrictLoader), node
    except YamlProblem:
        raise
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        where = (mark.line + 1, mark.column + 1) if mark else ()
        raise YamlProblem(f"YAML syntax error: {problem}", *where) from None
    except RecursionError:
        raise YamlProblem("nesting too deep to read") from None
    except ValueError as e:  # a scalar YAML reads as a date or time that does not exist, e.g. 2026-13-01
        raise YamlProblem(f"a value YAML cannot read: {e} (a date is YYYY-MM-DD)") from None


def parse_value(text: str) -> Any:
    """One `--set` value."""
    return parse(text)[0]
