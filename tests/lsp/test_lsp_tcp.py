"""`codefill lsp --tcp HOST:PORT`: the same server on a socket."""

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.asyncio
async def test_tcp_server_answers_inline_completions(tmp_path):
    port = free_port()
    log_file = tmp_path / "lsp.log"
    proc = subprocess.Popen([sys.executable, "-m", "codefill", "lsp", "--tcp", f"127.0.0.1:{port}",
                             "--log-file", str(log_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    client = LanguageClient("tcp-test", "0")
    try:
        for _ in range(600):  # until it listens
            try:
                await client.start_tcp("127.0.0.1", port)
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()
                await asyncio.sleep(0.1)
        else:
            pytest.fail("the server never listened")
        result = await client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(), initialization_options={"threads": 1, "timeBudgetMs": None,
                                                                     "gateThreshold": 0}))
        assert result.capabilities.inline_completion_provider is not None
        assert result.capabilities.completion_provider is not None  # no inline completion here: the fallback
        client.initialized(types.InitializedParams())
        uri = "file:///tcp/area.py"
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=uri, language_id="python", version=1, text="def area(r):\n    return \n")))
        res = await client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(1, 11),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
        assert res.items and res.items[0].insert_text
        log = log_file.read_text(encoding="utf-8")
        assert "loaded" in log and "Sending data" not in log  # our INFO lines, not pygls' message dumps
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()
    finally:
        proc.kill()
        proc.wait()


def test_bad_tcp_address_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "codefill", "lsp", "--tcp", "nowhere"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "HOST:PORT" in proc.stderr


class RawTcp:
    """A bare JSON-RPC connection (no LSP client library): frames in, frames out."""

    def __init__(self, port, timeout=20.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, msg):
        body = json.dumps(msg).encode()
        self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def read(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        n = next(int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                 if k.strip().lower() == b"content-length")
        while len(rest) < n:
            self._fill()
            head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = rest[n:]
        return json.loads(rest[:n])

    def answer(self, msg_id):
        while True:
            m = self.read()
            if m.get("id") == msg_id and "method" not in m:
                return m

    def close(self):
        self.sock.close()


def _listening(port, proc):
    for _ in range(300):
        try:
            return RawTcp(port)
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
    pytest.fail("the server never listened")


def test_one_client_at_a_time_and_others_cannot_take_over(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "codefill", "lsp", "--tcp", f":{port}"],  # no host: loopback
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        probe = _listening(port, proc)
        probe.close()  # a connection that goes before `initialize` leaves the server listening
        time.sleep(0.3)
        assert proc.poll() is None
        a = RawTcp(port)
        a.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None,
                                                                                "capabilities": {}}})
        assert "result" in a.answer(1)
        b = RawTcp(port)  # a second local connection
        refused = b.read()
        assert refused["method"] == "window/showMessage" and "another client" in refused["params"]["message"]
        with pytest.raises((EOFError, ConnectionError)):
            b.send({"jsonrpc": "2.0", "id": 2, "method": "initialize", "params": {"capabilities": {}}})
            b.read()
        b.close()
        a.send({"jsonrpc": "2.0", "id": 3, "method": "codefill/noSuchMethod", "params": {}})
        assert a.answer(3)["error"]["code"] == -32601  # the first client still gets its answers
        assert proc.poll() is None  # and the second one's closing did not end the server
        a.send({"jsonrpc": "2.0", "id": 4, "method": "shutdown"})
        assert a.answer(4)["result"] is None
        a.send({"jsonrpc": "2.0", "method": "exit"})
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_the_tcp_address_defaults_to_loopback():
    from codefill.cli.serve import _address

    assert _address(":2087") == ("127.0.0.1", 2087) and _address("2087") == ("127.0.0.1", 2087)
    assert _address("0.0.0.0:2087") == ("0.0.0.0", 2087) and _address("[::1]:2087") == ("::1", 2087)
