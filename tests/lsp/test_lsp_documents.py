"""The server's documents, position encodings, edits and settings, without a client."""

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from codefill.engine import Completion, Position, Range
from codefill.lsp.documents import Document, DocumentStore, engine_position
from codefill.lsp.edits import cursor_for, edit_for
from codefill.lsp.settings import Settings, merge

U8, U16, U32 = "utf-8", "utf-16", "utf-32"


def change(line, a, b, text, line_end=None):
    return types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line, a), end=types.Position(line if line_end is None else line_end, b)),
        text=text)


@pytest.mark.parametrize("enc,units", [(U8, 4 + 1 + 2 + 4), (U16, 4 + 1 + 1 + 2), (U32, 4 + 1 + 1 + 1)])
def test_positions_count_the_negotiated_units(enc, units):
    # "abcd" + " " + "é" (2 UTF-8 bytes, 1 UTF-16 unit) + "😀" (4 bytes, 2 UTF-16 units) then the cursor
    doc = Document("file:///t.py", "x\nabcd é😀tail\n")
    off = doc.offset_at(types.Position(1, units), enc)
    assert doc.text[off:].startswith("tail")
    assert doc.position_at(off, enc) == types.Position(1, units)


def test_lines_end_at_lsp_line_endings_only():
    # \r\n and \r end lines; form feed and U+2028 do not (str.splitlines would split there)
    doc = Document("file:///t.py", "a\r\nb\rc\x0cd\u2028e\nf")
    assert doc.offset_at(types.Position(2, 0), U16) == doc.text.index("c")
    assert doc.offset_at(types.Position(3, 0), U16) == doc.text.index("f")
    assert doc.offset_at(types.Position(0, 99), U16) == 1  # past the end of the line: the end of the line
    with pytest.raises(JsonRpcInvalidParams):
        doc.offset_at(types.Position(4, 0), U16)


def test_incremental_changes_in_utf16():
    doc = Document("file:///t.py", "s = '😀'\nprint(s)\n")
    doc.apply(change(0, 8, 8, " + 'é'"), U16)  # after the closing quote: 😀 counts 2
    assert doc.text == "s = '😀' + 'é'\nprint(s)\n"
    doc.apply(change(0, 14, 3, "!", line_end=1), U16)  # across lines
    assert doc.text == "s = '😀' + 'é'!nt(s)\n"
    doc.apply(types.TextDocumentContentChangeWholeDocument(text="new"), U16)
    assert doc.text == "new"


def test_engine_positions_use_code_points_and_newlines():
    text = "a😀\r\nbc"
    assert engine_position(text, text.index("c")) == Position(1, 1)
    assert engine_position(text, 2) == Position(0, 2)


def test_snippets_are_other_documents_most_recently_edited_first():
    store = DocumentStore()
    for name in ("a", "b", "c"):
        store.open(types.TextDocumentItem(uri=f"file:///w/{name}.py", language_id="python", version=1,
                                          text=f"# {name}\n" + "x = 1\n" * 50))
    store.get("file:///w/a.py").apply(change(0, 0, 0, "#"), U16)  # a is now the most recent
    snips = store.snippets("file:///w/c.py", limit=4, max_chars=40, root="/w")
    assert [s.path for s in snips] == ["a.py", "b.py"]
    assert all(len(s.text) <= 40 and s.text.endswith("\n") for s in snips)
    assert store.snippets("file:///w/c.py", limit=1, max_chars=40)[0].path == "/w/a.py"


def test_edit_for_a_plain_insertion_and_for_a_selected_popup_item():
    doc = Document("file:///t.py", "x = math.p\n")
    cur = cursor_for(doc, types.Position(0, 10), U16)
    c = Completion("i * 2", Range(Position(0, 10), Position(0, 10)), "eos", "line")
    assert edit_for(cur, c) == (10, 10, "i * 2")
    sel = types.SelectedCompletionInfo(range=types.Range(start=types.Position(0, 9), end=types.Position(0, 10)),
                                       text="pi")
    cur = cursor_for(doc, types.Position(0, 10), U16, sel)
    assert cur.text == "x = math.pi\n" and cur.offset == 11
    c = Completion(" * 2", Range(Position(0, 11), Position(0, 11)), "eos", "line")
    assert edit_for(cur, c) == (9, 10, "pi * 2")  # replaces the popup item's range, starts with its text


def test_settings_merge_camel_case_sections_and_report_bad_values():
    s, problems = merge(Settings(), {"codefill": {"maxTokens": 32, "mode": "block", "timeBudgetMs": None,
                                                  "disabledLanguages": ["markdown"], "threads": "two"}})
    assert (s.max_tokens, s.mode, s.time_budget_ms, s.threads) == (32, "block", None, None)
    assert not s.enabled_for("markdown") and s.enabled_for("python")
    assert len(problems) == 1 and "threads" in problems[0]
    s, _ = merge(s, {"multiline": False, "languages": {"markdown": True, "text": False}})
    assert s.mode == "line" and s.enabled_for("markdown") and not s.enabled_for("text")
    assert merge(s, "nonsense")[1]
    assert merge(s, []) == (s, [])  # an empty Lua table arrives as [] (Neovim's init_options = {})
    assert merge(s, [1])[1]


def test_gate_settings_parse_and_bad_values_keep_the_old_ones():
    assert (Settings().gate_threshold, Settings().adaptive_samples, Settings().gate_file) == (None, None, None)
    s, problems = merge(Settings(), {"gateThreshold": 0.5, "adaptiveSamples": 0, "gateFile": "/tmp/g.json"})
    assert (s.gate_threshold, s.adaptive_samples, s.gate_file) == (0.5, 0, "/tmp/g.json") and not problems
    s2, problems = merge(s, {"gateThreshold": 1.5, "adaptiveSamples": -1})
    assert (s2.gate_threshold, s2.adaptive_samples) == (0.5, 0) and len(problems) == 2
    p, problems = merge(s, {"prefixTokens": 256})
    assert p.prefix_tokens == 256 and p.model_key() != s.model_key() and not problems  # a new budget reloads
    assert merge(s, {"prefixTokens": 8})[1]
    w, problems = merge(s, {"warmWindows": 0})
    assert w.warm_windows == 0 and w.model_key() != s.model_key() and not problems
    assert merge(s, {"warmWindows": -1})[1]
    back = merge(s, {"gateThreshold": None, "adaptiveSamples": None})[0]
    assert (back.gate_threshold, back.adaptive_samples) == (None, None)  # back to the defaults


def test_sizes_have_upper_bounds():
    """maxTokens, suggestions, contextSize and threads past their bounds are refused (the old value stays): a token
    limit at the context size used to leave the prompt one token long."""
    from codefill.engine.config import MAX_CONTEXT, MAX_SUGGESTIONS, MAX_THREADS, MAX_TOKENS

    ok, problems = merge(Settings(), {"maxTokens": MAX_TOKENS, "suggestions": MAX_SUGGESTIONS,
                                      "contextSize": MAX_CONTEXT, "threads": MAX_THREADS})
    assert (ok.max_tokens, ok.suggestions, ok.context_size, ok.threads) == (
        MAX_TOKENS, MAX_SUGGESTIONS, MAX_CONTEXT, MAX_THREADS) and not problems
    bad, problems = merge(ok, {"maxTokens": MAX_TOKENS + 1, "suggestions": MAX_SUGGESTIONS + 1,
                               "contextSize": MAX_CONTEXT + 1, "threads": MAX_THREADS + 1})
    assert bad == ok and len(problems) == 4
    assert len(merge(ok, {"suggestions": 0, "contextSize": 16, "maxTokens": 0, "threads": 0})[1]) == 4


def test_edits_always_give_the_completed_document():
    """Random documents, cursors, popup selections and completions: applying the edit gives what the engine meant."""
    import random

    from codefill.lsp.documents import engine_position

    rng = random.Random(1)
    for _ in range(2000):
        text = "".join(rng.choice("ab\n😀 ") for _ in range(rng.randint(0, 12)))
        doc = Document("file:///t.py", text)
        off = rng.randint(0, len(text))
        pos = doc.position_at(off, U32)
        sel = None
        if rng.random() < 0.5:
            a = rng.randint(text.rfind("\n", 0, off) + 1, off)
            sel = types.SelectedCompletionInfo(range=types.Range(start=doc.position_at(a, U32), end=pos),
                                               text="".join(rng.choice("ab") for _ in range(rng.randint(0, 3))))
        cur = cursor_for(doc, pos, U32, sel)
        at = engine_position(cur.text, cur.offset)
        c = Completion("".join(rng.choice("ab\n😀 ") for _ in range(rng.randint(0, 4))), Range(at, at), "eos", "line")
        got = edit_for(cur, c)
        if not c.text:
            assert got is None
            continue
        start, end, new = got
        assert text[:start] + new + text[end:] == cur.text[: cur.offset] + c.text + cur.text[cur.offset :]
        assert start <= off <= end
        if sel is not None:
            assert start == cur.replace_start and new.startswith(sel.text)
