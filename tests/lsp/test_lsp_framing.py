"""JSON-RPC framing, shutdown and exit (issue 12 #2), spoken in raw bytes to `python -m codefill lsp` over stdio.
Nothing here sends `initialized`, so no model loads and each server starts in about a second."""

# ------------------------------------------------------------------ 2. framing, shutdown, exit


def test_a_huge_content_length_is_an_error_and_the_server_lives_on(raw):
    raw.initialize()
    raw.send_bytes(b"Content-Length: 1099511627776\r\n\r\n{}")  # 1 TiB announced
    (err,) = raw.errors_with_null_id(1)
    assert err["error"]["code"] == -32600 and "too large" in err["error"]["message"]
    assert raw.proc.poll() is None, raw.stderr()


def test_an_oversized_body_is_skipped_and_framing_stays_in_sync(raw):
    from codefill.lsp.framing import MAX_MESSAGE_BYTES

    raw.initialize()
    n = MAX_MESSAGE_BYTES + 1
    raw.send_bytes(b"Content-Length: %d\r\n\r\n" % n)
    chunk = b" " * (1 << 20)
    left = n
    while left:
        raw.send_bytes(chunk[: min(left, len(chunk))])
        left -= min(left, len(chunk))
    (err,) = raw.errors_with_null_id(1)
    assert err["error"]["code"] == -32600
    res = raw.request(7, "codefill/noSuchMethod", {})  # the next message is read as a message
    assert res["error"]["code"] == -32601


def test_unreadable_bodies_get_parse_and_invalid_request_errors(raw):
    raw.initialize()
    raw.send_body(b'{"jsonrpc": "2.0", "id": 3, "method": "shut')  # truncated JSON
    raw.send_body(b'{"jsonrpc": "2.0", "id": 4, "method": "\xff\xfe"}')  # not UTF-8
    raw.send_body(b'[{"jsonrpc": "2.0", "id": 5, "method": "shutdown"}]')  # a batch: LSP has none
    raw.send_body(b'"just a string"')
    raw.send_body(b'{"jsonrpc": "2.0"}')  # neither request, notification nor response
    errs = raw.errors_with_null_id(5)
    assert [e["error"]["code"] for e in errs] == [-32700, -32700, -32600, -32600, -32600]
    assert all(e["jsonrpc"] == "2.0" and e["id"] is None for e in errs)
    assert raw.request(6, 42)["error"]["code"] == -32600  # a method that is not a string: answered, with its id
    res = raw.request(8, "codefill/noSuchMethod", {})
    assert res["error"]["code"] == -32601 and raw.proc.poll() is None


def test_requests_after_shutdown_are_invalid_and_exit_then_is_zero(raw):
    raw.initialize()
    assert raw.request(1, "shutdown")["result"] is None
    after = raw.request(2, "textDocument/inlineCompletion", {
        "textDocument": {"uri": "file:///x.py"}, "position": {"line": 0, "character": 0},
        "context": {"triggerKind": 1}})
    assert after["error"]["code"] == -32600
    raw.notify("exit")
    assert raw.proc.wait(30) == 0


def test_exit_without_shutdown_is_exit_code_one(raw):
    raw.initialize()
    raw.notify("exit")
    assert raw.proc.wait(30) == 1
