"""JSON-RPC framing: the loop that reads `Content-Length` frames and hands messages to the protocol (in place of
pygls's `run_async`, which reads a body of whatever size a header announces — 1 TiB raises MemoryError and the
server exits — and answers nothing to a body it cannot parse, so the client waits forever).

- A header line is at most 8 KiB; a body at most `MAX_MESSAGE_BYTES` (64 MiB, eight times the largest document the
  engine completes). A larger body is answered with -32600 Invalid Request (id null) and skipped in chunks, so the
  next frame is read as a frame.
- A body that is not UTF-8 or not JSON: -32700 Parse error; one that is not a JSON object (a batch, a string):
  -32600 Invalid Request; both with id null, as JSON-RPC 2.0 says.
- stdin is read on a daemon thread, so a read blocked on a silent client never holds up the process's exit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from typing import Any, BinaryIO, Callable

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 << 20
MAX_HEADER_LINE = 8192
DISCARD_CHUNK = 1 << 20
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


class StreamFrames:
    """Reads from an asyncio StreamReader (TCP)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._r = reader

    async def readline(self, limit: int) -> bytes:
        try:
            return await self._r.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial
        except asyncio.LimitOverrunError as exc:  # no line break within the reader's limit: hand out a piece
            return await self._r.read(max(1, min(limit, exc.consumed)))

    async def read(self, n: int) -> bytes:
        try:
            return await self._r.readexactly(n)
        except asyncio.IncompleteReadError as exc:
            return exc.partial


class ThreadFrames:
    """Reads from a blocking binary stream (stdin) on one daemon thread."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="codefill-stdin", daemon=True).start()

    def _run(self) -> None:
        while True:
            fn, arg, fut, loop = self._jobs.get()
            try:
                result, exc = fn(arg), None
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                result, exc = None, e
            try:
                loop.call_soon_threadsafe(_settle, fut, result, exc)
            except RuntimeError:  # the loop is closed: the server is gone
                return

    def _call(self, fn, arg) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._jobs.put((fn, arg, fut, loop))
        return fut

    async def readline(self, limit: int) -> bytes:
        return await self._call(self._stream.readline, limit)

    async def read(self, n: int) -> bytes:
        return await self._call(self._read_fully, n)

    def _read_fully(self, n: int) -> bytes:
        parts, left = [], n
        while left:
            b = self._stream.read(left)
            if not b:
                break
            parts.append(b)
            left -= len(b)
        return b"".join(parts)


def _settle(fut: asyncio.Future, result, exc) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


_EOF = object()


async def _read_headers(frames) -> Any:
    """The Content-Length of the next frame (None: the headers had none or a bad one, already logged), or _EOF."""
    length: int | None = None
    problem = None
    seen = False
    while True:
        line = await frames.readline(MAX_HEADER_LINE)
        if not line:
            return _EOF
        if not line.endswith(b"\n"):  # an overlong header line: skip to its end
            while line and not line.endswith(b"\n"):
                line = await frames.readline(MAX_HEADER_LINE)
            if not line:
                return _EOF
            problem, seen = f"a header line longer than {MAX_HEADER_LINE} bytes", True
            continue
        field = line.strip()
        if not field:
            if not seen:
                continue  # stray blank lines between frames
            if length is None:
                log.warning("frame without a usable Content-Length: %s", problem or "none given")
            return length
        seen = True
        name, _, value = field.partition(b":")
        if name.strip().lower() == b"content-length":
            value = value.strip()
            if value.isdigit():
                length = int(value)
            else:
                problem = f"Content-Length {value[:40]!r} is not a number"


async def serve(frames, protocol, stopped: Callable[[], bool], on_error: Callable[[Exception], None]) -> None:
    """Read frames until end of input or `stopped()` (checked after every message); hand each message to
    `protocol.structure_message` and `protocol.handle_message`."""
    while not stopped():
        length = await _read_headers(frames)
        if length is _EOF:
            return
        if length is None:
            send_error(protocol, PARSE_ERROR, "Parse error: a frame without a valid Content-Length header")
            continue
        if length > MAX_MESSAGE_BYTES:
            log.warning("message of %d bytes refused (limit %d); skipping it", length, MAX_MESSAGE_BYTES)
            send_error(protocol, INVALID_REQUEST, f"Invalid Request: message too large ({length} bytes; the limit "
                                                  f"is {MAX_MESSAGE_BYTES >> 20} MiB)")
            left = length
            while left:
                got = await frames.read(min(left, DISCARD_CHUNK))
                if not got:
                    return
                left -= len(got)
            continue
        body = await frames.read(length)
        if len(body) < length:
            return  # the client went away mid-message
        handle_body(protocol, body, on_error)


def handle_body(protocol, body: bytes, on_error: Callable[[Exception], None]) -> None:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        log.warning("message is not UTF-8: %s", exc)
        send_error(protocol, PARSE_ERROR, f"Parse error: the message is not UTF-8 ({exc.reason} at byte {exc.start})")
        return
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        log.warning("message is not JSON: %s", exc)
        send_error(protocol, PARSE_ERROR, f"Parse error: {exc}")
        return
    if not isinstance(data, dict):
        what = "a batch (an array); LSP has none" if isinstance(data, list) else type(data).__name__
        log.warning("message is not a JSON object: %s", what)
        send_error(protocol, INVALID_REQUEST, f"Invalid Request: a message must be a JSON object, got {what}")
        return
    if data.get("jsonrpc") != "2.0":
        msg_id = data.get("id")
        if "method" in data and "id" in data:  # a request we will not run: say so
            send_error(protocol, INVALID_REQUEST, 'Invalid Request: "jsonrpc" must be "2.0"',
                       msg_id if _is_id(msg_id) else None)
        log.warning("message without jsonrpc 2.0 ignored: %s", str(data)[:200])
        return
    is_response = "id" in data and ("result" in data or "error" in data)
    if not is_response and not isinstance(data.get("method"), str):
        # Neither a request, a notification nor a response: nothing pygls could route (it answered nothing).
        msg_id = data.get("id")
        send_error(protocol, INVALID_REQUEST, 'Invalid Request: no "method" string',
                   msg_id if _is_id(msg_id) else None)
        log.warning("message without a method ignored: %s", str(data)[:200])
        return
    if not is_response and "id" in data and not _is_id(data["id"]):
        # LSP request ids are integers or strings; with any other (null, a float, a list …) pygls ran the request and
        # answered echoing the id, or with no id member at all.
        send_error(protocol, INVALID_REQUEST, "Invalid Request: an id must be an integer or a string")
        log.warning("request with an invalid id ignored: %s", str(data)[:200])
        return
    try:
        message = protocol.structure_message(data)
        protocol.handle_message(message)
    except Exception as exc:  # a bug in a handler: logged, and the server reads on
        log.exception("cannot handle message")
        on_error(exc)


def _is_id(value) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def send_error(protocol, code: int, message: str, msg_id=None) -> None:
    protocol._send_data({"jsonrpc": "2.0", "id": msg_id, "error": {"code": code, "message": message}})
