"""Helpers for the robustness tests of the language server (issue 12): a raw stdio client that speaks bytes to
`python -m codefill lsp`, an in-process server fed parsed messages, and a fake engine (no model) that, like the real
one, cannot encode lone surrogates."""

import asyncio
import json
import queue
import subprocess
import sys
import threading

import pytest

SERVER = [sys.executable, "-m", "codefill", "lsp"]


# `codefill lsp` as the CLI starts it, plus one test-only request, `codefillTest/documentText` ({"uri": ...} ->
# {"text": ..., "stale": ...} or null), so that tests over stdio can read the server's copy of a document.
PROBE_SCRIPT = r"""
import sys
import codefill.lsp as lsp

_create = lsp.create_server


def create_server(*args, **kwargs):
    server = _create(*args, **kwargs)

    @server.feature("codefillTest/documentText")
    def document_text(ls, params):
        uri = params["uri"] if isinstance(params, dict) else params.uri
        doc = ls.documents.get(uri)
        return None if doc is None else {"text": doc.text, "stale": doc.stale}

    return server


lsp.create_server = create_server
sys.argv = ["codefill", "lsp"]
from codefill.cli.main import main

main()
"""
PROBE_SERVER = [sys.executable, "-c", PROBE_SCRIPT]


class RawClient:
    """`codefill lsp` over pipes, spoken to in bytes; answers are parsed into dicts on a reader thread."""

    def __init__(self, env=None, cmd=None):
        self.proc = subprocess.Popen(cmd or SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.messages: queue.Queue = queue.Queue()
        self.skipped: list[dict] = []  # read while waiting for an answer
        threading.Thread(target=self._read, daemon=True).start()
        self._stderr = []
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()

    def _read(self):
        out = self.proc.stdout
        while True:
            length = None
            while True:
                line = out.readline()
                if not line:
                    return
                if not line.strip():
                    break
                name, _, value = line.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            self.messages.put(json.loads(out.read(length)))

    def send_bytes(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send_body(self, body: bytes):
        self.send_bytes(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send(self, msg: dict):
        self.send_body(json.dumps(msg).encode())

    def request(self, msg_id, method, params=None):
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return self.answer(msg_id)

    def notify(self, method, params=None):
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def next(self, timeout=30.0) -> dict:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no answer within {timeout}s; stderr: {self.stderr()[-2000:]}") from None

    def answer(self, msg_id, timeout=30.0) -> dict:
        """The response to `msg_id`, skipping notifications and requests from the server."""
        while True:
            m = self.next(timeout)
            if "method" not in m and m.get("id") == msg_id:
                return m
            self.skipped.append(m)

    def errors_with_null_id(self, n, timeout=30.0) -> list[dict]:
        got = []
        while len(got) < n:
            m = self.next(timeout)
            if "method" not in m and m.get("id", "absent") is None:
                got.append(m)
        return got

    def stderr(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    def initialize(self, options=None):
        res = self.request(0, "initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                             "initializationOptions": options})
        assert "result" in res, res
        return res

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


class Wire:
    """The server's output, as parsed messages."""

    def __init__(self):
        self.out: list[dict] = []

    def write(self, data: bytes):
        head, _, body = data.partition(b"\r\n\r\n")
        self.out.append(json.loads(body))

    def close(self):
        pass

    def shown(self):
        return [m["params"]["message"] for m in self.out if m.get("method") in ("window/showMessage", "window/logMessage")]


class InProcess:
    def __init__(self, options=None):
        from codefill.lsp import create_server

        self.server = create_server()
        self.wire = Wire()
        self.server.protocol.set_writer(self.wire)
        self.feed({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                   "params": {"processId": None, "rootUri": None, "capabilities": {}, "initializationOptions": options}})

    def feed(self, msg: dict):
        proto = self.server.protocol
        proto.handle_message(proto.structure_message(json.loads(json.dumps(msg))))

    def open(self, uri, text, version=1):
        self.feed({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
            "uri": uri, "languageId": "python", "version": version, "text": text}}})

    def change(self, uri, version, *changes):
        self.feed({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": version}, "contentChanges": list(changes)}})

    def text(self, uri):
        doc = self.server.documents.get(uri)
        return None if doc is None else doc.text


def edit(sl, sc, el, ec, text):
    return {"range": {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}}, "text": text}


def in_loop(fn):
    """Run `fn()` inside a running event loop (the server's initialize handler wants one)."""

    async def main():
        return fn()

    return asyncio.run(main())


class FakeEngine:
    accelerated = False

    def __init__(self):
        self.ids = set()
        self.forgotten = []

    def prepare(self, req):
        return req

    def complete(self, req, cancel=None):
        from codefill.engine import Completion, Position, Range, StopReason

        self.ids.add(req.document_id)
        req.text.encode("utf-8")  # what tokenizing does first: a lone surrogate cannot pass
        for snippet in req.snippets:
            snippet.text.encode("utf-8")
        at = Position(req.line, req.character)
        return Completion(text="pass", range=Range(at, at), stop_reason=StopReason.EOS, mode="line")

    def forget(self, document_id):
        self.forgotten.append(document_id)


def fake_completion_ok():
    try:
        FakeEngine().complete(_Req())
    except Exception as exc:  # the engine's types moved: say so instead of failing obscurely
        pytest.skip(f"FakeEngine does not fit the engine's types: {exc}")


class _Req:
    document_id = "x"
    text = "a"
    snippets = ()
    line = 0
    character = 0


async def answers(s, ids, tries=300):
    for _ in range(tries):
        got = {m["id"]: m for m in s.wire.out if m.get("id") in ids and "method" not in m}
        if len(got) == len(ids):
            return got
        await asyncio.sleep(0.01)
    raise AssertionError(f"no answers to {ids}: {s.wire.out[-5:]}")
