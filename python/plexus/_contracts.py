"""Contracts: the register description with JSON Schema 2020-12 schemas per method and topic,
and schemas derived from a function's type hints."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

from ._dispatch import CONTEXT_PARAMETER

Entry = Dict[str, Any]
"""What a method declares: `params` and `result` schemas, a `description`, `deprecated`."""

_KEYS = ("params", "result", "description", "deprecated")

_SIMPLE: Dict[Any, Dict[str, Any]] = {
    bool: {"type": "boolean"},
    int: {"type": "integer"},
    float: {"type": "number"},
    str: {"type": "string"},
    type(None): {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
}


def entry(params: Any = None, result: Any = None, description: Optional[str] = None, deprecated: bool = False) -> Entry:
    """A method's declaration from the decorator's arguments; `None` leaves a part out."""
    out: Entry = {}
    if params is not None:
        out["params"] = params
    if result is not None:
        out["result"] = result
    if description is not None:
        out["description"] = description
    if deprecated:
        out["deprecated"] = True
    return out


def checked_entry(method: str, declared: Any) -> Entry:
    """`declared` as a method's entry, refusing keys the broker does not know."""
    if not isinstance(declared, Mapping):
        raise TypeError(f"schemas[{method!r}] must be a dict with params, result, description or deprecated")
    unknown = sorted(set(declared) - set(_KEYS))
    if unknown:
        raise TypeError(f"schemas[{method!r}] has unknown keys {unknown}; it takes {list(_KEYS)}")
    return dict(declared)


def description(methods: Iterable[str], entries: Mapping[str, Entry], topics: Mapping[str, Any]) -> Dict[str, Any]:
    """The register description: every method (with its entry, if any) and the topics' payload schemas."""
    out: Dict[str, Any] = {"methods": {m: dict(entries.get(m, {})) for m in sorted(methods)}}
    if topics:
        out["topics"] = {t: {"payload": schema} for t, schema in topics.items()}
    return out


def _schema_of(hint: Any) -> Dict[str, Any]:
    """The JSON Schema of a type hint; `{}` (anything) for what it cannot express."""
    if hint is inspect.Parameter.empty or hint is Any:
        return {}
    if hint in _SIMPLE:
        return dict(_SIMPLE[hint])
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        return {"anyOf": [_schema_of(a) for a in args]}
    if origin in (list, tuple, set, frozenset):
        schema: Dict[str, Any] = {"type": "array"}
        if args and origin is list:
            schema["items"] = _schema_of(args[0])
        return schema
    if origin is dict:
        schema = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = _schema_of(args[1])
        return schema
    if origin is typing.Literal:
        return {"enum": list(args)}
    return {}


def schemas_from_hints(fn: Callable[..., Any]) -> Entry:
    """`params` and `result` schemas from `fn`'s type hints: params an object of its named
    arguments (those without a default required; `ctx` left out), result the return type."""
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn)
    except (TypeError, ValueError, NameError):
        return {}
    properties: Dict[str, Any] = {}
    required = []
    for name, parameter in signature.parameters.items():
        if name == CONTEXT_PARAMETER or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        properties[name] = _schema_of(hints.get(name, inspect.Parameter.empty))
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
    out: Entry = {"params": {"type": "object", "properties": properties, "required": required}}
    if "return" in hints:
        out["result"] = _schema_of(hints["return"])
    return out
