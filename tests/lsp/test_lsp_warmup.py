"""Idle-time work through the language server (issue 14), with the real embedded model over stdio: a cursor
notification warms the place it names, a shown suggestion gets its next completion decoded ahead of Tab, the
budget and the setting bound it, and bad notifications are ignored."""

import asyncio
import sys
import textwrap as textwrap_module

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import make_test_lsp_client

from test_lsp_server import CAPS, isolated_env

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SERVER = [sys.executable, "-m", "codefill", "lsp"]
OPTIONS = {"threads": 1, "timeBudgetMs": None, "gateThreshold": 0, "adaptiveSamples": 0}
SOURCE = open(textwrap_module.__file__, encoding="utf-8").read()
URI = "file:///work/textwrap_copy.py"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory):
    c = make_test_lsp_client()
    await c.start_io(*SERVER, env=isolated_env(tmp_path_factory))
    await c.initialize_session(types.InitializeParams(capabilities=CAPS, initialization_options=OPTIONS))
    c.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=URI, language_id="python", version=1, text=SOURCE)))
    yield c
    await c.shutdown_session()


async def stats(client) -> dict:
    s = await client.protocol.send_request_async("codefill/backgroundStats", None)
    return s._asdict() if hasattr(s, "_asdict") else dict(s)


async def until(client, pred, timeout=60.0) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        s = await stats(client)
        if pred(s) or loop.time() > end:
            return s
        await asyncio.sleep(0.1)


async def test_a_cursor_notification_warms_the_place(client):
    s = await until(client, lambda s: s.get("enabled"))  # the model has loaded
    assert s["enabled"]
    before = s.get("cursor_tokens", 0)
    line = 300
    client.protocol.notify("codefill/didChangeCursor", {"textDocument": {"uri": URI},
                                                        "position": {"line": line, "character": 8}})
    s = await until(client, lambda s: s.get("cursor_runs", 0) >= 1)
    assert s["cursor_tokens"] - before > 100  # a fresh place: most of its prompt window
    assert s["spentLastMinute"] >= s["cursor_tokens"] - before


async def test_a_shown_suggestion_gets_its_next_completion_ahead(client):
    s0 = await stats(client)
    line = SOURCE.split("\n")[350]
    col = len(line) - len(line.lstrip()) + 4  # inside the line's first word: something is always left to complete
    got = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=URI), position=types.Position(line=350, character=col),
        context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
    assert got.items  # shown
    s = await until(client, lambda s: s.get("next_runs", 0) > s0.get("next_runs", 0))
    assert s.get("next_runs", 0) > s0.get("next_runs", 0)


async def test_bad_cursor_notifications_are_ignored(client):
    for params in (None, {}, {"textDocument": {"uri": URI}}, {"textDocument": {"uri": URI},
                   "position": {"line": -1, "character": 0}}, {"textDocument": {"uri": "file:///nope.py"},
                   "position": {"line": 0, "character": 0}}, {"textDocument": {"uri": URI},
                   "position": {"line": 10 ** 9, "character": 0}}):
        client.protocol.notify("codefill/didChangeCursor", params)
    s = await stats(client)  # still answering
    assert s["enabled"]


async def test_warmup_off_and_the_budget(client):
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"warmup": False}))
    s0 = await stats(client)
    assert not s0["enabled"]
    client.protocol.notify("codefill/didChangeCursor", {"textDocument": {"uri": URI},
                                                        "position": {"line": 100, "character": 4}})
    await asyncio.sleep(1.0)
    assert (await stats(client)).get("cursor_runs", 0) == s0.get("cursor_runs", 0)
    # on, with a budget already spent: the job is skipped
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"warmup": True, "warmupTokensPerMinute": 1}))
    client.protocol.notify("codefill/didChangeCursor", {"textDocument": {"uri": URI},
                                                        "position": {"line": 160, "character": 4}})
    s = await until(client, lambda s: s.get("cursor_over_budget", 0) > s0.get("cursor_over_budget", 0), 10)
    assert s.get("cursor_over_budget", 0) > s0.get("cursor_over_budget", 0)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"warmup": True,
                                                                                       "warmupTokensPerMinute": 6000}))
