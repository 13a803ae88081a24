"""JSON-RPC frame fuzzing of `codefill lsp` over stdio: thousands of malformed frames (random bytes, truncated JSON,
wrong types for jsonrpc/method, unknown methods, bad Content-Length headers, params of the wrong shape for known
methods) sent to one server. Every request with an id gets exactly one response with the code JSON-RPC and LSP
prescribe, every unreadable frame exactly one error with id null, notifications nothing; afterwards the server
still works and `shutdown` + `exit` ends it with 0. Seeded (random.Random(0)). The cases the fuzzer found wrong
are pinned at the end."""

import json
import os
import random
import time

import pytest
from lsp_helpers import RawClient

FRAMES = 3000
PARSE, INVALID, NOT_FOUND, PARAMS = -32700, -32600, -32601, -32602


def expected_for_body(body: bytes):
    """The null-id error code for a body that is not a message (None: it is a JSON object, not fuzzed here)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return PARSE
    return None if isinstance(data, dict) else INVALID


def frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def enc(msg) -> bytes:
    return json.dumps(msg).encode()


def barrage(rng: random.Random):
    """(bytes to send, expected) pairs; expected is ("id", id, code), ("null", code) or None (no answer)."""
    ids = iter(range(1000, 10**9))
    good_open = {"textDocument": {"uri": "file:///fuzz/a.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}
    yield frame(enc({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": good_open})), None
    for _ in range(FRAMES):
        kind = rng.randrange(12)
        if kind == 0:  # random bytes
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
            code = expected_for_body(body)
            if code is None:
                continue
            yield frame(body), ("null", code)
        elif kind == 1:  # truncated JSON of a real request
            i = next(ids)
            full = enc({"jsonrpc": "2.0", "id": i, "method": "textDocument/inlineCompletion", "params": {
                "textDocument": {"uri": "file:///fuzz/a.py"}, "position": {"line": 0, "character": 1},
                "context": {"triggerKind": 1}}})
            yield frame(full[: rng.randrange(1, len(full))]), ("null", PARSE)
        elif kind == 2:  # a request whose jsonrpc is not "2.0"
            i = next(ids)
            bad = rng.choice(["1.0", 2, 2.0, None, [], {}, "2"])
            yield frame(enc({"jsonrpc": bad, "id": i, "method": "codefill/fuzz", "params": {}})), ("id", i, INVALID)
        elif kind == 3:  # ... and notifications without it: ignored
            msg = {"method": "textDocument/didOpen", "params": good_open}
            if rng.random() < 0.5:
                msg["jsonrpc"] = rng.choice(["1.0", 2, None])
            yield frame(enc(msg)), None
        elif kind == 4:  # a method that is not a string
            i = next(ids)
            yield frame(enc({"jsonrpc": "2.0", "id": i, "method": rng.choice([42, None, [], {}, True]),
                             "params": {}})), ("id", i, INVALID)
        elif kind == 5:  # unknown requests (with or without params) get MethodNotFound, with int or string ids
            i = next(ids)
            msg_id = i if rng.random() < 0.7 else f"s{i}"
            params = rng.choice([{}, {"a": 1}, {"textDocument": {"uri": "file:///fuzz/a.py"}}, [1, 2], None, "absent"])
            msg = {"jsonrpc": "2.0", "id": msg_id, "method": rng.choice(["codefill/fuzz", "$/fuzz", "x"]) + str(rng.randrange(99)),
                   "params": params}
            if params == "absent":
                del msg["params"]
            yield frame(enc(msg)), ("id", msg_id, NOT_FOUND)
        elif kind == 6:  # unknown notifications ($/… and others): nothing
            method = rng.choice(["$/fuzz", "$/setTrace", "codefill/fuzzNote", "workspace/fuzz"])
            yield frame(enc({"jsonrpc": "2.0", "method": method, "params": {"x": rng.random()}})), None
        elif kind == 7:  # known requests with params of the wrong shape
            i = next(ids)
            method, params = rng.choice([
                ("textDocument/inlineCompletion", {"textDocument": {"uri": "file:///fuzz/a.py"},
                                                   "context": {"triggerKind": 1}}),  # no position
                ("textDocument/inlineCompletion", {"position": {"line": 0, "character": 0}}),
                ("textDocument/inlineCompletion", {"textDocument": {"uri": 5}, "position": {"line": "a"}}),
                ("textDocument/inlineCompletion", [1, 2]),
                ("textDocument/inlineCompletion", "x"),
                ("textDocument/completion", {"textDocument": 5}),
                ("textDocument/completion", {"textDocument": {"uri": "file:///fuzz/a.py"},
                                             "position": {"line": 0}}),
            ])
            yield frame(enc({"jsonrpc": "2.0", "id": i, "method": method, "params": params})), ("id", i, PARAMS)
        elif kind == 8:  # notifications of the wrong shape for known methods: nothing
            method, params = rng.choice([
                ("textDocument/didChange", {"textDocument": {"uri": "file:///fuzz/b.py"}, "contentChanges": 5}),
                ("textDocument/didOpen", {"textDocument": 7}),
                ("textDocument/didClose", []),
                ("workspace/didChangeConfiguration", "nope"),
            ])
            yield frame(enc({"jsonrpc": "2.0", "method": method, "params": params})), None
        elif kind == 9:  # bad or missing Content-Length (no body follows, so the next frame is read as a frame)
            header = rng.choice([b"Content-Length: -5", b"Content-Length: abc", b"Content-Length:",
                                 b"Content-Length: 1e3", b"Content-Length: 0x10", b"Content-Type: text/plain",
                                 b"X: " + bytes(rng.randrange(33, 127) for _ in range(20))])
            yield header + b"\r\n\r\n", ("null", PARSE)
        elif kind == 10:  # stray blank lines between frames: nothing
            yield b"\r\n" * rng.randrange(1, 4), None
        else:  # a large body that is only whitespace, or a JSON scalar / array
            body = rng.choice([b" " * rng.randrange(1, 300_000), b"123", b'"str"', b"[]", b"null", b"true"])
            yield frame(body), ("null", expected_for_body(body))


def test_thousands_of_malformed_frames_each_get_exactly_the_answer_they_should(raw):
    t0 = time.monotonic()
    raw.initialize({"model": "/nonexistent/missing.gguf"})
    rng = random.Random(0)
    want_ids, want_null, sent = {}, [], 0
    chunk = []
    for data, expected in barrage(rng):
        sent += 1
        chunk.append(data)
        if expected and expected[0] == "id":
            assert expected[1] not in want_ids
            want_ids[expected[1]] = expected[2]
        elif expected:
            want_null.append(expected[1])
        if len(chunk) >= 50:
            raw.send_bytes(b"".join(chunk))
            chunk = []
    raw.send_bytes(b"".join(chunk))
    sentinel = raw.request(1, "codefill/fuzzSentinel", {})
    assert sentinel["error"]["code"] == NOT_FOUND
    got = [m for m in raw.skipped]
    raw.skipped.clear()
    deadline = time.monotonic() + 10
    answered = {m["id"] for m in got if "method" not in m and "id" in m}
    while not set(want_ids) <= answered and time.monotonic() < deadline:  # async handlers may answer late
        m = raw.next(10)
        got.append(m)
        answered.add(m.get("id"))
    time.sleep(0.5)
    while not raw.messages.empty():
        got.append(raw.messages.get())
    responses = [m for m in got if "method" not in m]
    by_id = {}
    for m in responses:
        assert "id" in m, m
        if m["id"] is not None:
            by_id.setdefault(m["id"], []).append(m)
    assert set(by_id) == set(want_ids), (set(by_id) ^ set(want_ids))
    for msg_id, ms in by_id.items():
        assert len(ms) == 1, ms  # exactly one answer
        assert ms[0].get("error", {}).get("code") == want_ids[msg_id], (ms[0], want_ids[msg_id])
    nulls = [m["error"]["code"] for m in responses if m["id"] is None]
    assert nulls == want_null  # one error per unreadable frame, in order
    assert len(want_ids) + len(want_null) > 1500 and sent > FRAMES // 2
    # alive and correct afterwards
    assert raw.proc.poll() is None, raw.stderr()[-2000:]
    raw.notify("textDocument/didOpen", {"textDocument": {"uri": "file:///fuzz/after.py", "languageId": "python",
                                                         "version": 1, "text": "def f():\n    \n"}})
    res = raw.request(2, "textDocument/inlineCompletion", {"textDocument": {"uri": "file:///fuzz/after.py"},
                                                           "position": {"line": 1, "character": 4},
                                                           "context": {"triggerKind": 1}})
    assert res.get("result") == {"items": []}, res
    assert raw.request(3, "shutdown")["result"] is None
    raw.notify("exit")
    assert raw.proc.wait(30) == 0
    print(f"{sent} frames, {len(want_ids)} requests, {len(want_null)} null-id errors, {time.monotonic() - t0:.1f}s")


# ------------------------------------------------------------------ what the specification prescribes differently


@pytest.mark.parametrize("method", ["codefill/noSuchMethod", "$/noSuchMethod"])
def test_an_unknown_request_without_params_is_method_not_found(raw, method):
    # Was -32603 Internal Error: pygls's generic request type requires a params member, which JSON-RPC makes optional.
    raw.initialize()
    raw.send({"jsonrpc": "2.0", "id": 5, "method": method})
    assert raw.answer(5)["error"]["code"] == NOT_FOUND
    raw.notify("codefill/noSuchNotification")  # and a notification without params is simply ignored
    assert raw.request(6, "shutdown")["result"] is None


@pytest.mark.parametrize("bad_id", [[1], {"a": 1}, 1.5, True])
def test_a_request_with_an_id_of_the_wrong_type_is_an_invalid_request(raw, bad_id):
    raw.initialize()
    raw.send({"jsonrpc": "2.0", "id": bad_id, "method": "codefill/noSuchMethod", "params": {}})
    (err,) = raw.errors_with_null_id(1, timeout=2)
    assert err["error"]["code"] == INVALID


def test_every_response_has_an_id_member(raw):
    raw.initialize()
    raw.send({"jsonrpc": "2.0", "id": None, "method": "codefill/noSuchMethod", "params": {}})
    raw.request(7, "codefill/other", {})
    for m in raw.skipped:
        assert "method" in m or "id" in m, m
