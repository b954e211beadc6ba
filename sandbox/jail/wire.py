"""Framing between a `Jail` and its fork server: length-prefixed frames over a unix socketpair.

A frame is a 4-byte big-endian length then that many bytes. JSON frames carry a JSON object; raw
frames carry a child's answer as it wrote it. Every read states the largest frame it accepts, so a
confused or compromised peer cannot make the reader allocate without bound. No pickle: the fork
server never receives code, only data.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

_LENGTH = struct.Struct(">I")

# Largest JSON frame either side sends: a request (event, cache, source of at most 100 KiB, ...) or a
# report. Events are bounded by `Limits.event_max_bytes` (1 MiB) upstream; this leaves room.
JSON_FRAME_MAX_BYTES = 8 * 1024 * 1024


class WireError(Exception):
    """The peer closed the connection, sent an oversized frame, or sent something that is not JSON."""


def send_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame. Raises OSError when the peer is gone."""
    sock.sendall(_LENGTH.pack(len(payload)) + payload)


def send_view(sock: socket.socket, payload: memoryview) -> None:
    """Send one frame from a view of a buffer the caller will wipe (no copy of its contents)."""
    sock.sendall(_LENGTH.pack(len(payload)))
    sock.sendall(payload)


def send_json(sock: socket.socket, message: dict[str, Any]) -> None:
    """Send one JSON frame. Raises OSError when the peer is gone."""
    send_frame(sock, json.dumps(message, separators=(",", ":")).encode("utf-8"))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise WireError(f"peer closed the connection ({received} of {size} bytes received)")
        received += count
    return bytes(buffer)


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
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = sock.recv_into(view[received:], size - received)
        if count == 0:
            raise WireError(f"peer closed the connection ({received} of {size} bytes received)")
        received += count
    return buffer


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
