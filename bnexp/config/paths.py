"""Key paths into a config's plain data ('models[0].norm', 'optimizer.lr'), as --set, smoke profiles and grids
name the keys they change."""

from __future__ import annotations

import re
from typing import Any

from bnexp.config.errors import ConfigError, join


def split_path(key: str) -> list[str | int]:
    return [int(p) if p.isdigit() else p for p in re.split(r"\.|\[(\d+)\]\.?", key) if p]


def set_path(data: dict, key: str, value: Any, where: str) -> str:
    """Set `data[a][b][0]...` for the key path 'a.b[0]' (or 'a.b.0'); returns the normalized path."""
    parts = split_path(key)
    if not parts:
        raise ConfigError(where, key, "empty key path")
    node: Any = data
    path = ""
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if not isinstance(part, int) or not 0 <= part < len(node):
                raise ConfigError(where, path, f"index {part!r} is not in 0..{len(node) - 1}")
        elif not isinstance(node, dict) or isinstance(part, int):
            raise ConfigError(where, path or key, "cannot index into a non-list value")
        path = join(path, part)
        if i == len(parts) - 1:
            node[part] = value
        else:
            if isinstance(node, dict) and node.get(part) is None:
                node[part] = {}
            node = node[part]
    return path


def prefixes(path: str) -> list[str]:
    """'a.b[0].c' -> ['a.b[0].c', 'a.b[0]', 'a.b', 'a', '']."""
    out = [path]
    while path:
        path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        out.append(path)
    return out


def grid_assignments(key: str, value: Any) -> list[tuple[str, Any]]:
    """A grid key and one of its values as (key path, value) pairs: a key "a,b" varies a and b together."""
    keys = [k.strip() for k in key.split(",")]
    if len(keys) == 1:
        return [(key, value)]
    return list(zip(keys, value, strict=True))
