"""`codefill lsp --tcp HOST:PORT`: the same server on a socket."""

import asyncio
import socket
import subprocess
import sys

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
