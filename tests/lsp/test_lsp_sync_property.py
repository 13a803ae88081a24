"""Property-based document sync through `codefill lsp` over stdio (hypothesis): random didOpen/didChange sequences
(incremental edits at and past the ends of lines and of the document, deletions, insertions full of line breaks and
characters that are *not* LSP line breaks, astral characters, full-text changes), in every position encoding the
server offers. After every didChange the server's copy (read with the test-only `codefillTest/documentText` request,
see lsp_helpers.PROBE_SCRIPT) must equal a reference model of the editor's buffer. One server per encoding; a new
URI per example."""

import itertools
import os
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsp_helpers import PROBE_SERVER, RawClient, edit

PIECES = ["a", "b", " ", "x = 1", "\n", "\r\n", "\r", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
          "\u2029", "\U0001d11e", "\U0001f600", "\u00e9", "\u20ac", "\t"]
_EOL = re.compile(r"\r\n|\r|\n")


# ------------------------------------------------------------------ the reference model of the editor's buffer


def width(ch: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(ch.encode("utf-8"))
    if encoding == "utf-16":
        return 2 if ord(ch) > 0xFFFF else 1
    return 1


def lines(text: str) -> list[tuple[int, int]]:
    """(start, end without the line break) of every LSP line: broken at \\n, \\r\\n and \\r only."""
    out, start = [], 0
    for m in _EOL.finditer(text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(text)))
    return out


def offset(text: str, line: int, character: int, encoding: str) -> int:
    """Past the last line: the end of the document; past the end of a line: its end; inside a character (a UTF-8
    byte or half a surrogate pair): the start of that character."""
    ls = lines(text)
    if line >= len(ls):
        return len(text)
    start, end = ls[line]
    used = 0
    for i in range(start, end):
        w = width(text[i], encoding)
        if used + w > character:
            return i
        used += w
    return end


def apply(text: str, change: dict, encoding: str) -> str:
    if "range" not in change:
        return change["text"]
    r = change["range"]
    a = offset(text, r["start"]["line"], r["start"]["character"], encoding)
    b = offset(text, r["end"]["line"], r["end"]["character"], encoding)
    assert a <= b
    return text[:a] + change["text"] + text[b:]


def test_the_reference_model_itself():
    t = "ab\r\ncd\re\x0cf\u2028g\n\U0001d11eh"
    assert [t[s:e] for s, e in lines(t)] == ["ab", "cd", "e\x0cf\u2028g", "\U0001d11eh"]
    assert offset(t, 3, 1, "utf-16") == offset(t, 3, 0, "utf-16")  # inside the surrogate pair
    assert offset(t, 3, 2, "utf-16") == t.index("h") == offset(t, 3, 4, "utf-8") == offset(t, 3, 1, "utf-32")
    assert offset(t, 0, 99, "utf-16") == 2 and offset(t, 9, 0, "utf-16") == len(t)


# ------------------------------------------------------------------ strategies

texts = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)


def position(draw, text):
    n = len(lines(text))
    longest = max(e - s for s, e in lines(text)) * 4 + 3
    return draw(st.integers(0, n + 2)), draw(st.integers(0, longest))


def a_change(draw, text, encoding):
    if draw(st.integers(0, 9)) == 0:
        return {"text": draw(texts)}  # the whole text
    p, q = position(draw, text), position(draw, text)
    if offset(text, *p, encoding) > offset(text, *q, encoding):
        p, q = q, p  # an editor never sends a range that ends before it starts
    inserted = draw(st.one_of(st.just(""), texts))  # "" : a deletion
    return edit(p[0], p[1], q[0], q[1], inserted)


# ------------------------------------------------------------------ the test


def start(tmp_path, encoding):
    env = dict(os.environ, CODEFILL_CONFIG_DIR=str(tmp_path / "config"), CODEFILL_CACHE_DIR=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("CODEFILL_MODEL", None)
    c = RawClient(env, cmd=PROBE_SERVER)
    res = c.request(0, "initialize", {"processId": None, "rootUri": None,
                                      "capabilities": {"general": {"positionEncodings": [encoding]}},
                                      "initializationOptions": {"model": str(tmp_path / "missing.gguf")}})
    return c, res["result"]["capabilities"].get("positionEncoding", "utf-16")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8", "utf-32"])
def test_the_servers_text_is_the_editors_after_every_change(tmp_path, encoding):
    c, negotiated = start(tmp_path, encoding)
    if negotiated != encoding:
        c.close()
        if encoding == "utf-16":
            pytest.fail(f"utf-16 must always be offered, got {negotiated}")
        pytest.skip(f"the server does not offer {encoding} (negotiated {negotiated})")
    ids = itertools.count(1)
    uris = itertools.count(1)
    stats = {"examples": 0, "changes": 0}

    def text_of(uri):
        msg_id = next(ids)
        c.send({"jsonrpc": "2.0", "id": msg_id, "method": "codefillTest/documentText", "params": {"uri": uri}})
        res = c.answer(msg_id)
        assert "result" in res, res
        return res["result"]

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.data())
    def check(data):
        uri = f"file:///sync/{encoding}/{next(uris)}.py"
        text = data.draw(texts, label="opened")
        c.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                            "text": text}})
        assert text_of(uri) == {"text": text, "stale": False}
        for version in range(2, 2 + data.draw(st.integers(1, 8), label="messages")):
            changes = []
            for _ in range(data.draw(st.integers(1, 3))):  # several changes in one didChange apply in order
                change = a_change(data.draw, text, encoding)
                changes.append(change)
                text = apply(text, change, encoding)
            c.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                "contentChanges": changes})
            stats["changes"] += len(changes)
            assert text_of(uri) == {"text": text, "stale": False}, changes
        c.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
        assert text_of(uri) is None
        stats["examples"] += 1

    try:
        check()
        assert c.proc.poll() is None, c.stderr()[-2000:]
        assert stats["examples"] >= 100, stats
        print(encoding, stats)
    finally:
        c.close()
