"""Framing between a `Jail` and its fork server: length-prefixed frames over a unix socketpair.

A frame is a 4-byte big-endian length then that many bytes. JSON frames carry a JSON object; raw
frames carry a request's payload. A request is two frames (a JSON header, the payload) sent in one
call; the fork server's answer is one *report*: two lengths (JSON, raw), a JSON object (the facts, or
an error) and the child's answer as it wrote it, also sent in one call. Every read states the largest
frame it accepts, so a confused or compromised peer cannot make the reader allocate without bound.
No pickle: the fork server never receives code, only data.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_LENGTH = struct.Struct(">I")
_REPORT_LENGTHS = struct.Struct(">II")
# Largest JSON part of a report (the facts of one child, or an error message).
REPORT_JSON_MAX_BYTES = 64 * 1024

# Largest JSON frame either side sends: a request (event, cache, source of at most 100 KiB, ...) or a
# report. Events are bounded by `Limits.event_max_bytes` (1 MiB) upstream; this leaves room.
JSON_FRAME_MAX_BYTES = 8 * 1024 * 1024


class WireError(Exception):
    """The peer closed the connection, sent an oversized frame, or sent something that is not JSON."""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame. Raises OSError when the peer is gone."""
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def _send_parts(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send `parts` back to back, in one sendmsg when the socket takes it all (no joined copy)."""
    sent = sock.sendmsg(parts)
    for part in parts:  # a partial send (a timeout socket, a large answer): finish part by part
        if sent >= len(part):
            sent -= len(part)
            continue
        with memoryview(part) as view:
            sock.sendall(view[sent:])
        sent = 0


def send_frames(sock: socket.socket, *payloads: bytes) -> None:
    """Send several frames in one call. Raises OSError when the peer is gone."""
    parts: list[bytes | memoryview] = []
    for payload in payloads:
        parts += [_LENGTH.pack(len(payload)), payload]
    _send_parts(sock, parts)


def send_report(sock: socket.socket, message: dict[str, Any], answer: bytes | memoryview) -> None:
    """Send one report: a JSON object and a raw answer (a view of a buffer the caller wipes; sent
    without copying its contents when the socket takes it in one call). Raises OSError."""
    encoded = json.dumps(message, separators=(",", ":")).encode("utf-8")
    _send_parts(sock, [_REPORT_LENGTHS.pack(len(encoded), len(answer)), encoded, answer])


def recv_report(sock: socket.socket, max_answer_bytes: int) -> tuple[dict[str, Any], bytes]:
    """Receive one report: (its JSON object, the raw answer of at most `max_answer_bytes`).

    Raises WireError on EOF, an oversized part or a JSON part that is not an object; OSError.
    """
    json_size, answer_size = _REPORT_LENGTHS.unpack(_recv_exactly(sock, _REPORT_LENGTHS.size))
    if json_size > REPORT_JSON_MAX_BYTES:
        raise WireError(f"report of {json_size} bytes exceeds {REPORT_JSON_MAX_BYTES}-byte maximum")
    if answer_size > max_answer_bytes:
        raise WireError(f"answer of {answer_size} bytes exceeds the {max_answer_bytes}-byte maximum")
    data = _recv_exactly(sock, json_size + answer_size)
    try:
        message = json.loads(data[:json_size])
    except ValueError as exc:
        raise WireError(f"report is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise WireError(f"report is a JSON {type(message).__name__}, not an object")
    return message, data[json_size:]


def send_json(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one JSON frame. Raises OSError when the peer is gone."""
    send_frame(sock, json.dumps(message, separators=(",", ":")).encode("utf-8"))


def _recv_filled(sock: socket.socket, size: int) -> bytearray:
    """A fresh bytearray of exactly `size` bytes from `sock`; WireError on EOF first."""
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise WireError(f"peer closed the connection ({received} of {size} bytes received)")
        received += count
    return buffer


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    return bytes(_recv_filled(sock, size))


def recv_frame(sock: socket.socket, max_bytes: int) -> bytes:
    """Receive one frame of at most `max_bytes`.

    Raises WireError on EOF or an oversized frame, OSError (socket.timeout included) from the socket.
    """
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    if size > max_bytes:
        raise WireError(f"frame of {size} bytes exceeds the {max_bytes}-byte maximum")
    return _recv_exactly(sock, size) if size else b""


def recv_frame_buffer(sock: socket.socket, max_bytes: int) -> bytearray:
    """Receive one frame into a fresh bytearray the caller wipes (`wipe`) once done with it.

    Raises WireError on EOF or an oversized frame, OSError from the socket.
    """
    (size,) = _LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))
    if size > max_bytes:
        raise WireError(f"frame of {size} bytes exceeds the {max_bytes}-byte maximum")
    return _recv_filled(sock, size)


def wipe(buffer: bytearray) -> None:
    """Overwrite a buffer with zeros, in place (freed memory keeps its bytes otherwise)."""
    buffer[:] = bytes(len(buffer))


def recv_json(sock: socket.socket, max_bytes: int = JSON_FRAME_MAX_BYTES) -> dict[str, Any]:
    """Receive one JSON-object frame. Raises WireError (EOF, oversize, not a JSON object), OSError."""
    payload = recv_frame(sock, max_bytes)
    try:
        message = json.loads(payload)
    except ValueError as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise WireError(f"frame is a JSON {type(message).__name__}, not an object")
    return message
