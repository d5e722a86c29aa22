"""The codec against the shared test vectors, and its refusals of malformed frames."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from plexus import BadFrame, FrameTooLarge, UnsupportedVersion
from plexus._codec import HEADER_LEN, Frame, Kind, decode, encode

VECTORS_PATH = Path(__file__).resolve().parent / ".." / ".." / "crates" / "plexus-proto" / "tests" / "vectors.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))


def frame_of(vector: dict[str, Any]) -> Frame:
    """The frame a vector describes."""
    return Frame(
        kind=Kind(vector["kind_code"]),
        id=vector["id"],
        aux=vector["aux"],
        flags=vector["flags"],
        strings=tuple(vector["strings"]),
        payload=vector["payload"].encode("utf-8"),
    )


def test_vectors_cover_every_kind() -> None:
    assert {v["kind_code"] for v in VECTORS} == {int(k) for k in Kind}


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_encode_matches_vector(vector: dict[str, Any]) -> None:
    assert encode(frame_of(vector)).hex() == vector["hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["name"] for v in VECTORS])
def test_decode_matches_vector(vector: dict[str, Any]) -> None:
    frame = decode(bytes.fromhex(vector["hex"]))
    assert frame == frame_of(vector)
    assert frame.kind.name.lower() == vector["kind"]


def header(kind: int = 0x13, nstr: int = 0, body_len: int = 0, version: int = 1, reserved: int = 0) -> bytes:
    """A raw header with chosen fields."""
    return struct.pack("<2sBBBBHIIQ", b"PX", version, kind, 0, nstr, reserved, body_len, 0, 1)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"XX" + header()[2:], BadFrame),
        (header(version=2), UnsupportedVersion),
        (header(kind=0x7F), BadFrame),
        (header(nstr=5), BadFrame),
        (header(reserved=1), BadFrame),
        (header(kind=0x12, nstr=1, body_len=2) + b"\x01\x00", BadFrame),
        (header(kind=0x14, nstr=1, body_len=3) + b"\x05\x00a", BadFrame),
        (header(kind=0x14, nstr=1, body_len=3) + b"\x01\x00\xff", BadFrame),
        (header(kind=0x12, nstr=1, body_len=3) + b"\x01\x00a", BadFrame),
        (header(body_len=5) + b"abc", BadFrame),
    ],
    ids=[
        "magic",
        "version",
        "kind",
        "too-many-strings",
        "reserved",
        "string-overrun",
        "string-past-body",
        "not-utf8",
        "call-needs-two-strings",
        "short-body",
    ],
)
def test_decode_refuses(data: bytes, error: type) -> None:
    with pytest.raises(error):
        decode(data)


def test_decode_refuses_oversized_frame_from_header() -> None:
    with pytest.raises(FrameTooLarge):
        decode(header(body_len=1000), max_frame=HEADER_LEN + 999)


def test_long_string_is_cut_at_a_character_boundary() -> None:
    text = "é" * 40000
    frame = decode(encode(Frame(Kind.ERROR, 1, 12, strings=(text,))))
    assert len(frame.string(0).encode("utf-8")) == 65534
    assert frame.string(0) == "é" * 32767
