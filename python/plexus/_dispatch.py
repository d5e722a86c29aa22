"""Serving calls: method tables, JSON params to Python arguments, results and exceptions to frames."""

from __future__ import annotations

import inspect
import json
import logging
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._codec import Frame, Kind
from .context import CallContext
from .errors import Error, Internal, InvalidParams, NoSuchMethod, error_for

log = logging.getLogger("plexus")

Methods = Dict[str, Callable[..., Any]]
Args = Tuple[Tuple[Any, ...], Dict[str, Any]]


def dumps(value: Any) -> bytes:
    """Compact JSON bytes of `value` (NaN and infinities are refused: they are not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def loads(payload: bytes) -> Any:
    """The JSON value in `payload`; an empty payload is `None`."""
    if not payload:
        return None
    return json.loads(payload)


def methods_of(target: Any) -> Methods:
    """The bus methods of `target`: a mapping of name to function, or an object's public callables."""
    if isinstance(target, Mapping):
        table = dict(target)
    else:
        table = {}
        for attr in dir(target):
            if attr.startswith("_"):
                continue
            value = getattr(target, attr)
            if callable(value):
                table[attr] = value
    for name, fn in table.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"method {name!r} must be a string mapped to a callable")
    return table


CONTEXT_PARAMETER = "ctx"
"""The parameter through which a served method asks for its `CallContext`."""


def arguments(fn: Callable[..., Any], params: Any, ctx: Optional[CallContext] = None) -> Args:
    """Positional and keyword arguments for `fn` from JSON `params`.

    An object gives keyword arguments, an array positional ones, null none, anything else is the
    single argument. `ctx` is passed as the keyword argument `ctx` if `fn` has a parameter of that
    name. Raises `InvalidParams` when they do not fit `fn`'s signature.
    """
    if params is None:
        args: Tuple[Any, ...] = ()
        kwargs: Dict[str, Any] = {}
    elif isinstance(params, dict):
        args, kwargs = (), params
    elif isinstance(params, list):
        args, kwargs = tuple(params), {}
    else:
        args, kwargs = (params,), {}
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return args, kwargs
    if ctx is not None and _takes_context(signature):
        if CONTEXT_PARAMETER in kwargs:
            raise InvalidParams(f"params cannot set '{CONTEXT_PARAMETER}': the method takes the call's context there")
        kwargs = {**kwargs, CONTEXT_PARAMETER: ctx}
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidParams(f"params do not fit the method: {exc}") from None
    return args, kwargs


def _takes_context(signature: inspect.Signature) -> bool:
    parameter = signature.parameters.get(CONTEXT_PARAMETER)
    return parameter is not None and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)


def prepare(
    methods: Mapping[str, Callable[..., Any]], frame: Frame, ctx: CallContext
) -> Tuple[Callable[..., Any], Args]:
    """The function and arguments for an incoming `call` frame; raises `Error` if it cannot run."""
    obj, method = frame.string(0), frame.string(1)
    fn = methods.get(method)
    if fn is None:
        raise NoSuchMethod(f"object '{obj}' has no method '{method}'", {"object": obj, "method": method})
    try:
        params = loads(frame.payload)
    except ValueError as exc:
        raise InvalidParams(f"params are not JSON: {exc}") from None
    return fn, arguments(fn, params, ctx)


def reply_frame(call_id: int, result: Any) -> Frame:
    """The `reply` to call `call_id`, or an `internal` error if `result` is not JSON."""
    try:
        payload = dumps(result)
    except (TypeError, ValueError) as exc:
        return error_frame(call_id, Internal(f"result is not JSON: {exc}"))
    return Frame(Kind.REPLY, call_id, payload=payload)


def error_frame(call_id: int, exc: BaseException) -> Frame:
    """The `error` answer to call `call_id` for an exception raised while serving it.

    A `plexus.Error` keeps its code, message and data; any other exception is `internal`.
    """
    if isinstance(exc, Error) and exc.code > 0:
        code, message, data = exc.code, exc.message, exc.data
    else:
        log.error("a served method raised", exc_info=exc)
        code, message, data = Internal.code, f"{type(exc).__name__}: {exc}", None
    payload = b""
    if data is not None:
        try:
            payload = dumps(data)
        except (TypeError, ValueError):
            payload = dumps(repr(data))
    return Frame(Kind.ERROR, call_id, aux=code, strings=(message,), payload=payload)


def error_from_frame(frame: Frame) -> Error:
    """The exception an `error` frame stands for."""
    try:
        data = loads(frame.payload)
    except ValueError:
        data = frame.payload.decode("utf-8", errors="replace")
    return error_for(frame.aux, frame.string(0), data)
