"""Issue 12: the server's life cycle as the LSP specification has it. Requests before `initialize` are answered
-32002 ServerNotInitialized and notifications then are dropped (`exit` excepted); a client that closes stdin
without `exit` ends the process with the code `exit` would have given (0 after `shutdown`, else 1), and a model
call that cannot stop (an inference server that never answers) does not keep it alive."""

import socket
import time

import pytest

NOT_INITIALIZED, NOT_FOUND, PARAMS = -32002, -32601, -32602
OPEN = {"textDocument": {"uri": "file:///early/a.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}
INLINE = {"textDocument": {"uri": "file:///early/a.py"}, "position": {"line": 0, "character": 1},
          "context": {"triggerKind": 1}}


@pytest.mark.parametrize("method, params", [
    ("textDocument/inlineCompletion", INLINE),
    ("textDocument/completion", {"textDocument": {"uri": "file:///early/a.py"}, "position": {"line": 0, "character": 1}}),
    ("shutdown", None),
    ("codefill/noSuchMethod", {}),
    ("textDocument/inlineCompletion", [1, 2]),  # bad params: not initialized comes first
])
def test_a_request_before_initialize_is_server_not_initialized(raw, method, params):
    msg = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        msg["params"] = params
    raw.send(msg)
    assert raw.answer(1)["error"]["code"] == NOT_INITIALIZED
    raw.initialize()  # the server was not harmed: initialize still works, and so does shutdown afterwards
    assert raw.request(2, "shutdown")["result"] is None
    raw.notify("exit")
    assert raw.proc.wait(30) == 0


def test_notifications_before_initialize_are_dropped(raw):
    raw.notify("textDocument/didOpen", OPEN)
    raw.notify("$/cancelRequest", {"id": 1})
    raw.notify("workspace/didChangeConfiguration", {"settings": {"codefill": {"maxTokens": 3}}})
    raw.initialize()
    res = raw.request(1, "textDocument/inlineCompletion", INLINE)
    assert res["error"]["code"] == PARAMS and "unknown document" in res["error"]["message"], res


def test_exit_before_initialize_ends_the_process_with_one(raw):
    raw.notify("exit")
    assert raw.proc.wait(30) == 1


def test_stdin_closed_without_shutdown_ends_with_one(raw):
    raw.initialize()
    raw.proc.stdin.close()
    assert raw.proc.wait(30) == 1


def test_stdin_closed_after_shutdown_ends_with_zero(raw):
    raw.initialize()
    assert raw.request(1, "shutdown")["result"] is None
    raw.proc.stdin.close()
    assert raw.proc.wait(30) == 0


def test_stdin_closed_before_initialize_ends_with_one(raw):
    raw.proc.stdin.close()
    assert raw.proc.wait(30) == 1


def test_a_model_call_that_cannot_stop_does_not_keep_the_process_alive(raw):
    """An inference server that accepts connections and never answers: the model load waits 30 s for it (and a
    request 30 s more). The editor closing stdin ends the process within seconds all the same (was: 59 s, code 0)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        raw.initialize({"server": f"http://127.0.0.1:{silent.getsockname()[1]}"})
        raw.notify("initialized", {})
        raw.notify("textDocument/didOpen", OPEN)
        time.sleep(0.5)  # the load is under way on the worker
        t0 = time.monotonic()
        raw.proc.stdin.close()
        assert raw.proc.wait(20) == 1
        assert time.monotonic() - t0 < 15
