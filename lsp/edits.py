"""Shared by the completion features (no LSP method of its own): from an LSP cursor to an engine request, and from an
engine completion back to an LSP edit (range in the client's position encoding, text that replaces it).
"""

from __future__ import annotations

from dataclasses import dataclass

from lsprotocol import types

from codefill.engine import Completion, CompletionRequest
from codefill.engine.context import language_for

from .documents import Document, engine_offset, engine_position, engine_text
from .settings import Settings


@dataclass(frozen=True)
class Cursor:
    """A request's view of a document: the text the engine completes and where the cursor sits in it."""

    doc: Document
    original: str  # the document as the client has it
    cursor: int  # offset of the cursor in `original`
    text: str  # what the engine sees (`original` with the selected popup item applied, if any)
    offset: int  # offset of the cursor in `text`
    replace_start: int  # the edit must start here or before (the start of the selected popup item)
    replace_end: int  # … and end here or after


def engine_document_ids(uri: str) -> tuple[str, str]:
    """The engine's document ids for `uri`: inline completions, and the popup fallback (its own id, so that a client
    asking for both does not have them overwrite each other's state). didClose forgets both."""
    return uri, uri + "#completion"


def language_of(doc: Document) -> str | None:
    """The editor's language id (what `disabledLanguages` names), else the engine's guess from the path."""
    return doc.language_id or language_for(doc.path)


def cursor_for(doc: Document, position: types.Position, encoding: str,
               selected: types.SelectedCompletionInfo | None = None) -> Cursor:
    doc = doc.snapshot()
    text = doc.text
    off = doc.offset_at(position, encoding)
    if selected is None:
        return Cursor(doc, text, off, text, off, off, off)
    # The popup's selected item replaces its range: complete as if it was accepted, and make the answer extend it.
    a = doc.offset_at(selected.range.start, encoding, "selectedCompletionInfo.range.start")
    b = doc.offset_at(selected.range.end, encoding, "selectedCompletionInfo.range.end")
    a, b = min(a, b), max(a, b)
    new = text[:a] + selected.text + text[b:]
    return Cursor(doc, text, off, new, a + len(selected.text), a, max(b, off))


def engine_request(cur: Cursor, settings: Settings, snippets=()) -> CompletionRequest:
    pos = engine_position(cur.text, cur.offset)
    text = cur.doc.engine_text() if cur.text is cur.original else engine_text(cur.text)
    return CompletionRequest(
        text=text, line=pos.line, character=pos.character, path=engine_text(cur.doc.path or cur.doc.uri),
        language=language_for(cur.doc.path) or cur.doc.language_id, document_id=cur.doc.uri, snippets=tuple(snippets), mode=settings.mode,
        max_tokens=settings.max_tokens, time_budget_ms=settings.time_budget_ms,
    )


def edit_for(cur: Cursor, completion: Completion) -> tuple[int, int, str] | None:
    """(start, end, text): the edit of the client's document that gives the completed text, as small as possible but
    covering the cursor and the selected popup item; None when the completion adds nothing."""
    p = engine_offset(cur.text, completion.range.start)
    q = engine_offset(cur.text, completion.range.end)
    if p == q == cur.offset:  # the usual case: an insertion at the cursor
        if not completion.text:
            return None
        head = cur.text[cur.replace_start : cur.offset]  # the selected popup item's text, if any
        return cur.replace_start, cur.replace_end, head + completion.text
    result = cur.text[:p] + completion.text + cur.text[q:]
    orig = cur.original
    if result == orig:
        return None
    start = min(common_prefix(orig, result), cur.cursor, cur.replace_start)
    cs = common_suffix(orig, result, min(len(orig), len(result)) - start)
    end = max(len(orig) - cs, cur.cursor, cur.replace_end)
    tail = len(orig) - end
    return start, end, result[start : len(result) - tail]


def common_prefix(a: str, b: str) -> int:
    """Length of the common prefix (binary search over slice comparisons: C speed on large documents)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def common_suffix(a: str, b: str, limit: int) -> int:
    """Length of the common suffix, at most `limit` (the same binary search)."""
    lo, hi = 0, max(0, limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[len(a) - mid :] == b[len(b) - mid :]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def lsp_range(doc: Document, start: int, end: int, encoding: str) -> types.Range:
    return types.Range(start=doc.position_at(start, encoding), end=doc.position_at(end, encoding))
