"""Config errors, located: pydantic's validation errors translated into one `ConfigError` that names the file and
line (or the --set override), the key path, and what is allowed."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from bnexp.errors import BnexpError

Locate = Callable[[str], str]  # key path -> "file:line" (or "--set ...")


class ConfigError(BnexpError):
    """A config problem, located: `where` is "file:line" or "--set key=value"."""

    def __init__(self, where: str, key: str, message: str):
        self.where, self.key, self.message = where, key, message
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def type_name(tp: Any) -> str:
    """A type as a config's reader would say it: 'an integer', 'one of sgd, adam', 'a list of a number'."""
    origin = get_origin(tp)
    if origin is Annotated:
        return type_name(get_args(tp)[0])
    if origin is Literal:
        return "one of " + ", ".join(map(str, get_args(tp)))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_name(a) for a in get_args(tp))
    if origin is list:
        return f"a list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {type_name(get_args(tp)[0])} to {type_name(get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping with keys " + ", ".join(tp.model_fields)
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, "a value")


def _strip(tp: Any) -> Any:
    """The type without Annotated's metadata and without an Optional's None (pydantic does not tag those)."""
    while True:
        if get_origin(tp) is Annotated:
            tp = get_args(tp)[0]
        elif get_origin(tp) in (Union, types.UnionType) and len(_alternatives(tp)) == 1:
            tp = _alternatives(tp)[0]
        else:
            return tp


def _alternatives(tp: Any) -> list[Any]:
    return [a for a in get_args(tp) if a is not type(None)]


class _Walk:
    """An error's location followed through the schema: the key path a reader knows, the type there, and whether
    it lies inside a union of several types (pydantic then reports one error per alternative)."""

    def __init__(self, root: type[BaseModel], loc: tuple[str | int, ...]):
        self.path, self.type, self.union_at, self.union_type = "", root, None, None
        self.parent: Any = None
        rest = list(loc)
        while rest:
            tp = _strip(self.type)
            origin = get_origin(tp)
            if origin in (Union, types.UnionType):  # several alternatives: the next element is pydantic's tag
                if self.union_at is None:
                    self.union_at, self.union_type = self.path, self.type
                tag = str(rest.pop(0))
                self.type = next(
                    (a for a in _alternatives(tp) if getattr(get_origin(_strip(a)), "__name__", "") == tag[:4]),
                    next((a for a in _alternatives(tp) if get_origin(_strip(a)) not in (list, dict)), tp),
                )
                continue
            part = rest.pop(0)
            self.parent = tp
            index = origin is list  # a list's position is [i]; a mapping's key (even an integer) is .key
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                field = tp.model_fields.get(str(part))
                self.type = field.annotation if field else Any
                if field and field.metadata:
                    self.type = Annotated[(field.annotation, *field.metadata)]
            elif origin is list:
                self.type = get_args(tp)[0]
            elif origin is dict:
                if rest and rest[0] == "[key]":
                    rest.pop(0)
                    self.type = get_args(tp)[0]
                else:
                    self.type = get_args(tp)[1]
            else:
                self.type = Any
            self.path = join(self.path, part if index else str(part))


TYPE_ERRORS = ("_type", "_parsing", "literal_error", "union_tag", "model_attributes_type", "is_instance_of")


def _is_type_error(kind: str) -> bool:
    return any(k in kind for k in TYPE_ERRORS)


def _number(x: Any) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def message(error: dict[str, Any], walk: _Walk) -> str:
    """What went wrong, in bnexp's words."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "extra_forbidden":
        allowed = list(walk.parent.model_fields) if isinstance(walk.parent, type) else []
        key = walk.path.rsplit(".", 1)[-1]
        close = difflib.get_close_matches(key, allowed, n=1)
        return f"unknown key; {f'did you mean {close[0]!r}? ' if close else ''}allowed: {', '.join(allowed)}"
    if kind == "missing":
        return f"missing required key ({type_name(walk.type)})"
    if kind == "literal_error":
        return f"unknown value {value!r}; allowed: {', '.join(map(str, get_args(_strip(walk.type))))}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {sign} {_number(bound)} (got {value})"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else f"at least {ctx['min_length']} values"
    if kind == "too_long":
        return f"at most {ctx['max_length']} values (got {ctx['actual_length']})"
    if kind == "finite_number":
        return f"must be a finite number (got {value})"
    if kind == "bnexp_rule":
        return ctx["message"]
    if _is_type_error(kind):
        return f"expected {type_name(walk.type)}, got {value!r}"
    return error["msg"]


def translate(error: ValidationError, root: type[BaseModel], locate: Locate, data: Any = None) -> ConfigError:
    """The first of pydantic's errors as a ConfigError. Inside a union (`at: NUMBER or MODE`), an alternative whose
    type fits but whose value does not (a layer out of range) is reported; where no type fits, the union's."""
    errors = error.errors(include_url=False)
    # an unknown key before a missing key of the same mapping: it is often that key misspelt
    missing = {e["loc"][:-1] for e in errors if e["type"] == "missing"}
    first = next((e for e in errors if e["type"] == "extra_forbidden" and e["loc"][:-1] in missing), errors[0])
    walk = _Walk(root, first["loc"])
    if walk.union_at is not None:
        inside = [e for e in errors if _Walk(root, e["loc"]).union_at == walk.union_at]
        fitting = [e for e in inside if not _is_type_error(e["type"])]
        if fitting:
            first, walk = fitting[0], _Walk(root, fitting[0]["loc"])
        else:
            value = _value_at(data, walk.union_at) if data is not None else first.get("input")
            return ConfigError(
                locate(walk.union_at), walk.union_at, f"expected {type_name(walk.union_type)}, got {value!r}"
            )
    path = walk.path
    if first["type"] == "bnexp_rule":
        ctx = first["ctx"]
        at = join(path, ctx["at"]) if ctx.get("at") else path
        return ConfigError(locate(at), join(path, ctx["key"]) if ctx.get("key") else at, ctx["message"])
    if first["type"] == "missing":
        return ConfigError(locate(path.rpartition(".")[0] if "." in path else ""), path, message(first, walk))
    return ConfigError(locate(path), path, message(first, walk))


def _value_at(data: Any, path: str) -> Any:
    node = data
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node
