"""Frame encoding and decoding for the native protocol (pure functions, no I/O)."""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from .errors import BadFrame, FrameTooLarge, UnsupportedVersion

MAGIC = b"PX"
VERSION = 1
HEADER_LEN = 24
MAX_STRINGS = 4
MAX_STRING_BYTES = 0xFFFF
DEFAULT_MAX_FRAME = 16 * 1024 * 1024 + 64 * 1024

FLAG_SHARED = 0x01
FLAG_QUEUE = 0x01
FLAG_ACK = 0x01

_HEADER = struct.Struct("<2sBBBBHIIQ")
_U16 = struct.Struct("<H")


class Kind(enum.IntEnum):
    """The header's kind byte."""

    HELLO = 0x01
    WELCOME = 0x02
    REGISTER = 0x10
    UNREGISTER = 0x11
    CALL = 0x12
    REPLY = 0x13
    ERROR = 0x14
    CANCEL = 0x15
    SUBSCRIBE = 0x20
    UNSUBSCRIBE = 0x21
    PUBLISH = 0x22
    EVENT = 0x23
    PING = 0x30
    PONG = 0x31


_STRINGS_NEEDED = {
    Kind.HELLO: 1,
    Kind.WELCOME: 1,
    Kind.REGISTER: 1,
    Kind.UNREGISTER: 1,
    Kind.CALL: 2,
    Kind.REPLY: 0,
    Kind.ERROR: 1,
    Kind.CANCEL: 0,
    Kind.SUBSCRIBE: 1,
    Kind.UNSUBSCRIBE: 0,
    Kind.PUBLISH: 1,
    Kind.EVENT: 1,
    Kind.PING: 0,
    Kind.PONG: 0,
}


@dataclass(frozen=True)
class Header:
    """The fixed 24-byte part of a frame."""

    kind: Kind
    flags: int
    nstr: int
    body_len: int
    aux: int
    id: int


@dataclass(frozen=True)
class Frame:
    """One frame: kind, id, aux, flags, up to four strings and the payload bytes."""

    kind: Kind
    id: int = 0
    aux: int = 0
    flags: int = 0
    strings: tuple[str, ...] = ()
    payload: bytes = b""

    def string(self, i: int) -> str:
        """String `i`, or `""` if the frame has fewer strings."""
        return self.strings[i] if i < len(self.strings) else ""


def _truncate(text: str) -> bytes:
    """UTF-8 bytes of `text`, cut to at most 65,535 bytes at a character boundary."""
    raw = text.encode("utf-8")
    if len(raw) <= MAX_STRING_BYTES:
        return raw
    return raw[:MAX_STRING_BYTES].decode("utf-8", errors="ignore").encode("utf-8")


def encode(frame: Frame) -> bytes:
    """The wire bytes of `frame`. Strings over 65,535 bytes are cut at a character boundary."""
    if len(frame.strings) > MAX_STRINGS:
        raise ValueError(f"a frame carries at most {MAX_STRINGS} strings, not {len(frame.strings)}")
    parts: list[bytes] = []
    for text in frame.strings:
        raw = _truncate(text)
        parts.append(_U16.pack(len(raw)))
        parts.append(raw)
    parts.append(bytes(frame.payload))
    body = b"".join(parts)
    head = _HEADER.pack(
        MAGIC, VERSION, int(frame.kind), frame.flags, len(frame.strings), 0, len(body), frame.aux, frame.id
    )
    return head + body


def decode_header(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Header:
    """Parses a 24-byte header and checks it, including the frame size against `max_frame`."""
    if len(data) != HEADER_LEN:
        raise BadFrame(f"a header is {HEADER_LEN} bytes, got {len(data)}")
    magic, version, kind, flags, nstr, reserved, body_len, aux, ident = _HEADER.unpack(data)
    if magic != MAGIC:
        raise BadFrame(f"bad magic bytes {magic!r}: expected b'PX'")
    if version != VERSION:
        raise UnsupportedVersion(f"unsupported protocol version {version} (this side speaks version 1)")
    try:
        kind = Kind(kind)
    except ValueError:
        raise BadFrame(f"unknown frame kind 0x{kind:02x}") from None
    if nstr > MAX_STRINGS:
        raise BadFrame(f"frame declares {nstr} strings; at most {MAX_STRINGS} are allowed")
    if reserved != 0:
        raise BadFrame("reserved header bytes are not zero")
    size = HEADER_LEN + body_len
    if size > max_frame:
        raise FrameTooLarge(f"frame of {size} bytes exceeds the limit of {max_frame} bytes")
    return Header(kind, flags, nstr, body_len, aux, ident)


def decode_body(header: Header, body: bytes) -> Frame:
    """The frame made of `header` and its `body` (strings, then payload)."""
    need = _STRINGS_NEEDED[header.kind]
    if header.nstr < need:
        raise BadFrame(f"a {header.kind.name.lower()} frame needs {need} strings, this one has {header.nstr}")
    strings: list[str] = []
    pos = 0
    for i in range(header.nstr):
        if pos + 2 > len(body):
            raise BadFrame(f"string {i} runs past the end of the frame body")
        (length,) = _U16.unpack_from(body, pos)
        start = pos + 2
        if start + length > len(body):
            raise BadFrame(f"string {i} runs past the end of the frame body")
        try:
            strings.append(bytes(body[start : start + length]).decode("utf-8"))
        except UnicodeDecodeError:
            raise BadFrame(f"string {i} is not valid UTF-8") from None
        pos = start + length
    return Frame(header.kind, header.id, header.aux, header.flags, tuple(strings), bytes(body[pos:]))


def decode(data: bytes, max_frame: int = DEFAULT_MAX_FRAME) -> Frame:
    """Decodes exactly one whole frame from `data`."""
    header = decode_header(bytes(data[:HEADER_LEN]), max_frame)
    body = data[HEADER_LEN:]
    if len(body) != header.body_len:
        raise BadFrame(f"header announces a {header.body_len}-byte body, got {len(body)} bytes")
    return decode_body(header, body)

