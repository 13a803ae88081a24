"""The language server over stdio (`python -m codefill lsp`, as in test_lsp_server.py): what other open documents add
to a completion, closing and reopening a document, and a document too large to complete."""

import os
import sys

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp.client import make_test_lsp_client

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SERVER = [sys.executable, "-m", "codefill", "lsp"]
OPTIONS = {"threads": 1, "timeBudgetMs": None, "gateThreshold": 0, "adaptiveSamples": 0, "maxTokens": 16}
CAPS = types.ClientCapabilities(text_document=types.TextDocumentClientCapabilities(
    inline_completion=types.InlineCompletionClientCapabilities()))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory):
    base = tmp_path_factory.mktemp("lsp-context-user")
    env = dict(os.environ, CODEFILL_CONFIG_DIR=str(base / "config"), CODEFILL_CACHE_DIR=str(base / "cache"),
               HF_HUB_OFFLINE="1", HF_HOME=str(base / "hf"))
    env.pop("CODEFILL_MODEL", None)
    c = make_test_lsp_client()
    await c.start_io(*SERVER, env=env)
    await c.initialize_session(types.InitializeParams(capabilities=CAPS, initialization_options=OPTIONS))
    yield c
    await c.shutdown_session()
    await c.stop()


def did_open(client, uri, text, version=1):
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=version, text=text)))


def did_close(client, uri):
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri)))


async def complete(client, uri, line, character):
    return await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))


CONVERT = "def convert(x):\n    return x * ZORB"
UNITS = "ZORBLAX_CONVERSION_FACTOR = 3.7\n"


async def test_an_identifier_from_another_open_document_reaches_the_completion(client, tmp_path):
    """Only units.py, open beside convert.py, defines ZORBLAX_CONVERSION_FACTOR: with it open the model completes
    the name; with it closed it cannot know it."""
    conv, units = (tmp_path / "convert.py").as_uri(), (tmp_path / "units.py").as_uri()
    cursor = (1, len("    return x * ZORB"))
    did_open(client, conv, CONVERT)
    try:
        alone = await complete(client, conv, *cursor)
        did_open(client, units, UNITS)
        try:
            beside = await complete(client, conv, *cursor)
        finally:
            did_close(client, units)
        after = await complete(client, conv, *cursor)
    finally:
        did_close(client, conv)
    texts = [[i.insert_text for i in r.items] for r in (alone, beside, after)]
    assert len(beside.items) == 1 and beside.items[0].insert_text.startswith("LAX_CONVERSION_FACTOR"), texts
    assert not any("LAX_CONVERSION_FACTOR" in t for t in texts[0] + texts[2]), texts  # closed: no longer context


async def test_a_closed_document_is_unknown_and_answers_again_once_reopened(client, tmp_path):
    uri = (tmp_path / "area.py").as_uri()
    text = "import math\n\n\ndef circle_area(radius):\n    return \n"
    did_open(client, uri, text)
    first = await complete(client, uri, 4, 11)
    did_close(client, uri)
    assert len(first.items) == 1 and first.items[0].insert_text.strip()
    with pytest.raises(JsonRpcException) as closed:
        await complete(client, uri, 4, 11)
    assert closed.value.code == -32602 and "unknown document" in str(closed.value)

    did_open(client, uri, text)  # the same document again, its versions start over
    try:
        again = await complete(client, uri, 4, 11)
        assert [i.insert_text for i in again.items] == [first.items[0].insert_text]
        # it follows edits as before: type the first character of the answer
        ch = first.items[0].insert_text[0]
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(4, 11), end=types.Position(4, 11)), text=ch)]))
        typed = await complete(client, uri, 4, 12)
    finally:
        did_close(client, uri)
    assert len(typed.items) == 1 and typed.items[0].insert_text.strip()
    pos = types.Position(4, 12)
    assert typed.items[0].range == types.Range(start=pos, end=pos)


async def test_a_document_too_large_is_an_error_and_the_server_lives_on(client, tmp_path):
    big = (tmp_path / "big.py").as_uri()
    line = "x = 1  # 0123456789\n"
    n = 8_000_000 // len(line) + 1  # over the engine's 8,000,000 characters
    did_open(client, big, line * n)
    try:
        with pytest.raises(JsonRpcException) as exc:
            await complete(client, big, n - 1, 5)
        assert exc.value.code == -32602 and "too large" in str(exc.value)
    finally:
        did_close(client, big)
    ok_uri = (tmp_path / "ok.py").as_uri()
    did_open(client, ok_uri, "def add(a, b):\n    return \n")
    try:
        ok = await complete(client, ok_uri, 1, 11)
    finally:
        did_close(client, ok_uri)
    assert len(ok.items) == 1 and ok.items[0].insert_text.strip()
    assert not [m for m in client.messages if m.type == types.MessageType.Error]
