"""Validation of object names, topics and subscription patterns (the broker's rules)."""

from __future__ import annotations

from .errors import InvalidParams

MAX_LEN = 255
_PLAIN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-:")


def _check(what: str, text: str, wildcards: bool) -> str:
    if not isinstance(text, str):
        raise InvalidParams(f"{what} must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidParams(f"{what} is empty")
    size = len(text.encode("utf-8"))
    if size > MAX_LEN:
        raise InvalidParams(f"{what} is {size} bytes long; at most {MAX_LEN} are allowed")
    segments = text.split(".")
    last = len(segments) - 1
    for i, seg in enumerate(segments):
        if not seg:
            raise InvalidParams(f"{what} {text!r} has an empty segment")
        if seg == "*" or (seg == ">" and i == last):
            if wildcards:
                continue
            raise InvalidParams(f"{what} {text!r}: wildcards are not allowed here")
        bad = next((ch for ch in seg if ch not in _PLAIN), None)
        if bad in ("*", ">"):
            raise InvalidParams(f"{what} {text!r}: '*' must be a whole segment and '>' only the last segment")
        if bad is not None:
            raise InvalidParams(
                f"{what} {text!r} contains {bad!r}; allowed are letters, digits, '_', '-', ':' and '.'"
            )
    return text


def validate_name(name: str) -> str:
    """Returns `name` if it is a valid object name, else raises `InvalidParams`."""
    return _check("object name", name, False)


def validate_topic(topic: str) -> str:
    """Returns `topic` if it is a valid topic (no wildcards), else raises `InvalidParams`."""
    return _check("topic", topic, False)


def validate_pattern(pattern: str) -> str:
    """Returns `pattern` if it is a valid subscription pattern, else raises `InvalidParams`."""
    return _check("pattern", pattern, True)
