"""The language server end to end: `python -m codefill lsp` over stdio, driven by pytest-lsp's LanguageClient.

The server runs the real embedded model with one thread (fast and deterministic on a shared two-core machine) and no
decoding time limit, so its answers are comparable with `codefill complete --threads 1 --time-budget 0`.
"""

import asyncio
import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager

import pytest
import pytest_asyncio
import pytest_lsp
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import ClientServerConfig, LanguageClient
from pytest_lsp.client import make_test_lsp_client

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SERVER = [sys.executable, "-m", "codefill", "lsp"]
# The confidence gate and adaptive samples are off here so that answers compare with `codefill complete`;
# test_the_gate_hides_what_it_judges_likely_wrong switches them on.
OPTIONS = {"threads": 1, "timeBudgetMs": None, "gateThreshold": 0, "adaptiveSamples": 0}
CAPS = types.ClientCapabilities(
    window=types.WindowClientCapabilities(work_done_progress=True),
    text_document=types.TextDocumentClientCapabilities(
        inline_completion=types.InlineCompletionClientCapabilities(),
        completion=types.CompletionClientCapabilities(
            completion_item=types.ClientCompletionItemOptions(documentation_format=[types.MarkupKind.Markdown])
        ),
    ),
)


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def isolated_env(tmp_path_factory) -> dict:
    """The server's environment: its own config and cache directories, offline (a module-scoped server starts before
    the function-scoped autouse fixture of tests/conftest.py has set these)."""
    base = tmp_path_factory.mktemp("lsp-user")
    env = dict(os.environ, CODEFILL_CONFIG_DIR=str(base / "config"), CODEFILL_CACHE_DIR=str(base / "cache"),
               HF_HUB_OFFLINE="1", HF_HOME=str(base / "hf"))
    env.pop("CODEFILL_MODEL", None)
    return env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory):
    lsp_client = make_test_lsp_client()
    await lsp_client.start_io(*SERVER, env=isolated_env(tmp_path_factory))
    lsp_client.init_result = await lsp_client.initialize_session(
        types.InitializeParams(capabilities=CAPS, initialization_options=OPTIONS))
    yield lsp_client
    await lsp_client.shutdown_session()
    await lsp_client.stop()


@asynccontextmanager
async def opened(client, path, text, language="python"):
    uri = path.as_uri() if hasattr(path, "as_uri") else path
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)))
    try:
        yield uri
    finally:
        client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri)))


def inline_params(uri, line, character, invoked=False, selected=None):
    kind = types.InlineCompletionTriggerKind.Invoked if invoked else types.InlineCompletionTriggerKind.Automatic
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(trigger_kind=kind, selected_completion_info=selected),
    )


def cli_complete(path, line0, col_codepoints):
    proc = subprocess.run(
        [*SERVER[:-1], "complete", f"{path}:{line0 + 1}:{col_codepoints + 1}", "--json", "--time-budget", "0",
         "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def test_capabilities_and_progress(client: LanguageClient, tmp_path):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None  # `{}` on the wire: present means supported
    assert caps.completion_provider is None  # this client has inline completion: no popup fallback advertised
    assert caps.position_encoding == types.PositionEncodingKind.Utf16  # the client offered nothing else
    sync = caps.text_document_sync
    assert sync.change == types.TextDocumentSyncKind.Incremental and sync.open_close
    async with opened(client, tmp_path / "a.py", "def f():\n    return \n") as uri:
        await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
    tokens = [t for t, reports in client.progress_reports.items() if reports]
    assert tokens, "no $/progress while the model loaded"
    reports = client.progress_reports[tokens[0]]
    assert reports[0].kind == "begin" and reports[-1].kind == "end"
    assert "loaded" in (reports[-1].message or "")
    assert not [m for m in client.messages if m.type == types.MessageType.Error]


async def test_incremental_edits_in_utf16_agree_with_the_cli(client: LanguageClient, tmp_path):
    final = (
        "import math\n"
        "\n"
        "\n"
        "def circle_area(radius):  # π r² 😀\n"
        '    """Fläche 😀 eines Kreises."""\n'
        "    label = '😀é'; return \n"
    )
    start = "import math\n\n\ndef circle_area(radius):\n    return \n"
    path = tmp_path / "geometry.py"
    path.write_text(final, encoding="utf-8")
    async with opened(client, path, start) as uri:
        edits = [  # (line, utf16 start, utf16 end, text) applied in order, each on the current text
            (3, 24, 24, "  # π r² 😀"),
            (4, 4, 4, '"""Fläche 😀 eines Kreises."""\n    '),
            (5, 4, 4, "label = '😀é'; "),
        ]
        version = 1
        for line, a, b, text in edits:
            version += 1
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line, a), end=types.Position(line, b)), text=text)],
            ))
        cursor_line = final.split("\n")[5]
        res = await client.text_document_inline_completion_async(inline_params(uri, 5, utf16(cursor_line)))
    cli = cli_complete(path, 5, len(cursor_line))
    assert cli["text"], cli
    assert len(res.items) == 1
    item = res.items[0]
    assert item.insert_text == cli["text"]
    pos = types.Position(5, utf16(cursor_line))  # 2 more than the code points: the emoji is a surrogate pair
    assert item.range == types.Range(start=pos, end=pos)


async def test_invoked_offers_distinct_alternatives_led_by_the_automatic_one(client: LanguageClient, tmp_path):
    """With `suffixRanking: "off"` the greedy (automatic) answer leads; by default (the embedded model has no FIM
    tokens) the alternatives and it are ranked by the text after the cursor (tests/lsp/test_inline_suffix.py)."""
    text = "import math\n\n\ndef circle_area(radius):\n    return \n"

    def configure(**kw):
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"codefill": kw}))

    try:
        async with opened(client, tmp_path / "circle.py", text) as uri:
            auto = await client.text_document_inline_completion_async(inline_params(uri, 4, 11))
            configure(suffixRanking="off")
            invoked = await client.text_document_inline_completion_async(inline_params(uri, 4, 11, invoked=True))
            configure(suffixRanking="invoked")
            ranked = await client.text_document_inline_completion_async(inline_params(uri, 4, 11, invoked=True))
    finally:
        configure(suffixRanking="invoked")
    assert len(auto.items) == 1
    for res in (invoked, ranked):
        texts = [i.insert_text for i in res.items]
        assert len(texts) >= 2 and len(set(t.rstrip() for t in texts)) == len(texts)
    assert invoked.items[0].insert_text == auto.items[0].insert_text


async def test_selected_completion_item_is_extended_and_replaced(client: LanguageClient, tmp_path):
    text = "import math\n\n\ndef circle_area(radius):\n    return math.p\n"
    async with opened(client, tmp_path / "sel.py", text) as uri:
        sel = types.SelectedCompletionInfo(
            range=types.Range(start=types.Position(4, 16), end=types.Position(4, 17)), text="pi")
        res = await client.text_document_inline_completion_async(inline_params(uri, 4, 17, selected=sel))
    assert res.items
    for item in res.items:
        assert item.range == sel.range
        assert item.insert_text.startswith("pi") and len(item.insert_text) > 2


async def test_newer_request_supersedes_and_cancel_request_is_honoured(client: LanguageClient, tmp_path):
    text = "import os\n\n\ndef list_python_files(root):\n    \n"
    async with opened(client, tmp_path / "walk.py", text) as uri, opened(client, tmp_path / "other.py", "x = 1\n") as other:
        proto = client.protocol
        slow = asyncio.wrap_future(proto.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 4, 4, invoked=True), msg_id="slow"))
        await asyncio.sleep(0.05)
        newer = asyncio.wrap_future(proto.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 4, 4), msg_id="newer"))
        doomed = asyncio.wrap_future(proto.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(other, 0, 5), msg_id="doomed"))
        proto.notify(types.CANCEL_REQUEST, types.CancelParams(id="doomed"))
        slow_res, newer_res = await slow, await newer
        with pytest.raises(JsonRpcException) as exc:
            await doomed
    assert exc.value.code == -32800  # RequestCancelled
    assert _items(slow_res) == []  # superseded: nothing stale comes back
    assert len(_items(newer_res)) == 1


def raw_request(proto, msg_id, method, params):
    """Send a request as raw JSON (the typed client refuses malformed params) and await its answer."""
    from concurrent.futures import Future

    fut = Future()
    proto._request_futures[msg_id] = fut
    proto._send_data({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
    return asyncio.wrap_future(fut)


def _items(res):
    if isinstance(res, dict):
        return res.get("items", [])
    return list(getattr(res, "items", None) or [])


async def test_bad_requests_get_errors_and_the_server_lives_on(client: LanguageClient, tmp_path):
    with pytest.raises(JsonRpcException) as unknown:
        await client.text_document_inline_completion_async(inline_params("file:///nowhere/x.py", 0, 0))
    assert unknown.value.code == -32602 and "unknown document" in str(unknown.value)

    async with opened(client, tmp_path / "bad.py", "x = 1\n") as uri:
        with pytest.raises(JsonRpcException) as outside:
            await client.text_document_inline_completion_async(inline_params(uri, 40, 0))
        assert outside.value.code == -32602 and "outside the document" in str(outside.value)

        proto = client.protocol
        with pytest.raises(JsonRpcException) as wrong:  # no position, context of the wrong type
            await raw_request(proto, "raw-1", types.TEXT_DOCUMENT_INLINE_COMPLETION,
                              {"textDocument": {"uri": uri}, "context": 7})
        assert wrong.value.code == -32602
        with pytest.raises(JsonRpcException) as nomethod:
            await raw_request(proto, "raw-2", "codefill/noSuchMethod", {})
        assert nomethod.value.code == -32601

        # notifications that make no sense are ignored
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri="file:///nowhere/y.py", version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text="y")]))
        proto._send_data({"jsonrpc": "2.0", "method": types.TEXT_DOCUMENT_DID_OPEN, "params": {"textDocument": 3}})

    # a character past the end of its line means the end of the line (the spec)
    async with opened(client, tmp_path / "past.py", "import math\n\n\ndef circle_area(radius):\n    return\n") as uri:
        past = await client.text_document_inline_completion_async(inline_params(uri, 4, 99))
        at_end = await client.text_document_inline_completion_async(inline_params(uri, 4, 10))
    assert len(past.items) == 1, past
    end = types.Position(4, 10)
    assert past.items[0].range == types.Range(start=end, end=end)
    assert past.items[0].insert_text == at_end.items[0].insert_text

    async with opened(client, tmp_path / "ok.py", "def add(a, b):\n    return \n") as uri:
        ok = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
    assert ok.items and ok.items[0].insert_text


async def test_completion_fallback_is_one_clear_item(client: LanguageClient, tmp_path):
    text = "import math\n\n\ndef circle_area(radius):\n    return math.p\n"
    async with opened(client, tmp_path / "fallback.py", text) as uri:
        res = await client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(4, 17)))
        inline = await client.text_document_inline_completion_async(inline_params(uri, 4, 17))
    assert res.is_incomplete and len(res.items) == 1
    item = res.items[0]
    full = inline.items[0].insert_text
    # the edit replaces the word being typed ("p") with itself plus the completion
    assert item.text_edit.range == types.Range(start=types.Position(4, 16), end=types.Position(4, 17))
    assert item.text_edit.new_text == "p" + full
    assert item.label.startswith("p" + full.split("\n")[0][:10])
    assert full in item.documentation.value


async def test_settings_disable_a_language_and_switch_to_single_lines(client: LanguageClient, tmp_path):
    text = "def fizzbuzz(n):\n    \n"
    async with opened(client, tmp_path / "fb.py", text) as uri:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"codefill": {"disabledLanguages": ["python"]}}))
        off = await client.text_document_inline_completion_async(inline_params(uri, 1, 4))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"codefill": {"disabledLanguages": [], "mode": "line", "maxTokens": "many"}}))
        one = await client.text_document_inline_completion_async(inline_params(uri, 1, 4))
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"codefill": {"mode": "auto"}}))
    assert not off.items
    assert one.items and "\n" not in one.items[0].insert_text.strip("\n")
    # a bad value is reported, not applied
    assert any("maxTokens" in m.message for m in client.messages if m.type == types.MessageType.Warning)


async def test_the_gate_hides_what_it_judges_likely_wrong(client: LanguageClient, tmp_path):
    """Automatic suggestions are hidden when the gate's confidence (printed by `codefill complete --json`) is below
    `gateThreshold`; invoked ones never are; adaptive samples give an answer where the gate is unsure."""
    text = "def celsius_to_fahrenheit(c):\n    return \n"
    path = tmp_path / "temps.py"
    path.write_text(text, encoding="utf-8")
    cli = cli_complete(path, 1, 11)
    p = cli["confidence"]
    assert cli["text"] and 0.0 < p < 1.0

    def configure(**kw):
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"codefill": kw}))

    try:
        async with opened(client, path, text) as uri:
            configure(gateThreshold=min(1.0, p + 0.01), adaptiveSamples=0)
            hidden = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
            asked = await client.text_document_inline_completion_async(inline_params(uri, 1, 11, invoked=True))
            configure(gateThreshold=max(0.0, p - 0.01))
            shown = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
            configure(gateThreshold=0, adaptiveSamples=4)
            adaptive = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
    finally:
        configure(gateThreshold=0, adaptiveSamples=0)
    assert list(hidden.items) == []
    # invoked: never hidden; ranked by the text after the cursor (suffixRanking "invoked"), the greedy answer among them
    assert asked.items and cli["text"] in [i.insert_text for i in asked.items]
    assert [i.insert_text for i in shown.items] == [cli["text"]]
    assert len(adaptive.items) == 1 and adaptive.items[0].insert_text.strip()
    assert not [m for m in client.messages if "gate" in m.message]  # the shipped gate file was read


@pytest_lsp.fixture(config=ClientServerConfig(server_command=SERVER), scope="function")
async def broken(lsp_client: LanguageClient, tmp_path):
    opts = dict(OPTIONS, model=str(tmp_path / "missing.gguf"))
    await lsp_client.initialize_session(types.InitializeParams(capabilities=CAPS, initialization_options=opts))
    yield
    await lsp_client.shutdown_session()


@pytest.mark.asyncio(loop_scope="function")
async def test_a_model_that_cannot_load_is_one_message_and_the_server_keeps_running(broken: LanguageClient, tmp_path):
    client = broken
    async with opened(client, tmp_path / "m.py", "def add(a, b):\n    return \n") as uri:
        res = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
        assert not res.items
        errors = [m for m in client.messages if m.type == types.MessageType.Error]
        assert len(errors) == 1 and "cannot load the model" in errors[0].message and "missing.gguf" in errors[0].message
        assert any("cannot load the model" in m.message for m in client.log_messages)
        # the user fixes the setting: the default model loads and completions come
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"model": None}))
        res = await client.text_document_inline_completion_async(inline_params(uri, 1, 11))
    assert res.items and res.items[0].insert_text


async def test_the_event_loop_answers_while_the_model_works(client: LanguageClient, tmp_path):
    """A long invoked request keeps the worker busy; requests the loop can answer alone still come back first."""
    text = "import os\n\n\ndef walk_tree(root):\n    \n"
    async with opened(client, tmp_path / "busy.py", text) as uri:
        proto = client.protocol
        busy = asyncio.wrap_future(proto.send_request(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 4, 4, invoked=True), msg_id="busy"))
        quick = asyncio.ensure_future(client.text_document_inline_completion_async(
            inline_params("file:///nowhere/z.py", 0, 0)))
        done, _ = await asyncio.wait({busy, quick}, return_when=asyncio.FIRST_COMPLETED)
        assert quick in done and busy not in done
        assert isinstance(quick.exception(), JsonRpcException)
        assert _items(await busy)
