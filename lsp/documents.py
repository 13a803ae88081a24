"""Open documents and position encodings: `textDocument/didOpen`, `textDocument/didChange` (incremental and full),
`textDocument/didClose`.

The server keeps the only copy of every open document: pygls's, which split lines with `str.splitlines` (also at form
feeds and U+2028; LSP lines end at `\\n`, `\\r\\n` or `\\r` only) and clamped positions in the params it then passed
on, is not kept (server.CodefillProtocol). Positions arrive in the encoding negotiated at `initialize`
(`general.positionEncodings`: utf-8, utf-16 — the default — or utf-32) and are turned into offsets into the Python
string, then into the engine's positions (0-based line, code points).

Edits are applied as other servers do: a position past the end of its line is the end of the line, one past the last
line is the end of the document (Neovim sends those). An edit that cannot be applied (its start after its end, or a
didChange that cannot be read) makes the document *stale*: it gets empty answers, and is no prompt snippet, until the
editor sends it whole again (didOpen, or a didChange without a range). Line starts are computed once per open and
updated per edit (only the edited lines are rescanned), in one numpy array: a list of Python ints for a 40,000-line
document made 40,000 int objects per keystroke, whose churn fragmented the small-object allocator (the server's RSS
grew with each open/edit/close cycle of a large file).
Lone surrogates (JSON lets a client send "\\ud800") are replaced by U+FFFD in the text handed to the engine, which
must encode it as UTF-8; offsets do not change.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np
from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.uris import to_fs_path

from codefill.engine import Position as EnginePosition
from codefill.engine import Snippet
from codefill.engine.context import offset_of

log = logging.getLogger(__name__)

_EOL = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_edits = itertools.count(1)


class EditError(ValueError):
    """An edit that cannot be applied to the text the server has."""


def engine_text(text: str) -> str:
    """`text` as the engine can take it: lone surrogates (not encodable as UTF-8) replaced by U+FFFD, one code point
    for one, so every offset stays valid."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def units(text: str, encoding: str) -> int:
    """Length of `text` in the code units of `encoding` (utf-8, utf-16 or utf-32)."""
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _chars_for_units(line: str, n: int, encoding: str) -> int:
    """Code points of `line` covered by `n` code units (clamped to the line; a position inside a character rounds down)."""
    if encoding == types.PositionEncodingKind.Utf32:
        return min(n, len(line))
    used = 0
    for i, ch in enumerate(line):
        w = len(ch.encode("utf-8", "surrogatepass")) if encoding == types.PositionEncodingKind.Utf8 else (
            2 if ord(ch) > 0xFFFF else 1)
        if used + w > n:
            return i
        used += w
    return len(line)


@dataclass
class Document:
    uri: str
    text: str
    version: int | None = None
    language_id: str | None = None
    edited: int = field(default_factory=lambda: next(_edits))  # larger: edited more recently
    _starts: np.ndarray | None = field(default=None, repr=False)  # int64, never changed in place (snapshots share it)
    stale: bool = False  # an edit was lost: the text is not the editor's until it is sent whole again
    _clean: str | None = field(default=None, repr=False)

    @property
    def path(self) -> str | None:
        return to_fs_path(self.uri) or None

    def snapshot(self) -> "Document":
        """A copy that later edits do not change (a request answers for the text it was asked about). It shares the
        line starts (computed here once per version, not once per request)."""
        return Document(self.uri, self.text, self.version, self.language_id, self.edited, self.line_starts(),
                        self.stale, self._clean)

    def set_text(self, text: str) -> None:
        self.text = text
        self._starts = None
        self._clean = None
        self.edited = next(_edits)

    def engine_text(self) -> str:
        """The text for the engine (see `engine_text`), once per version."""
        if self._clean is None:
            self._clean = engine_text(self.text)
        return self._clean

    def line_starts(self) -> np.ndarray:
        """Offset of the first character of every line (LSP line endings), as int64."""
        if self._starts is None:
            self._starts = _line_starts(self.text)
        return self._starts

    def _line_text(self, line: int) -> str:
        starts = self.line_starts()
        start = int(starts[line])
        end = int(starts[line + 1]) if line + 1 < len(starts) else len(self.text)
        return self.text[start:end].rstrip("\r\n")

    def offset_at(self, pos: types.Position, encoding: str, what: str = "position") -> int:
        """Offset of an LSP position. A line outside the document is an error (InvalidParams); a character past the
        end of its line means the end of the line, as the specification says."""
        starts = self.line_starts()
        if pos.line < 0 or pos.character < 0:
            raise JsonRpcInvalidParams(f"{what} {pos.line}:{pos.character} is negative")
        if pos.line >= len(starts):
            raise JsonRpcInvalidParams(
                f"{what} {pos.line}:{pos.character} is outside the document ({len(starts)} lines)"
            )
        return int(starts[pos.line]) + _chars_for_units(self._line_text(pos.line), pos.character, encoding)

    def position_at(self, offset: int, encoding: str) -> types.Position:
        """LSP position of an offset, in `encoding` units."""
        starts = self.line_starts()
        line = int(np.searchsorted(starts, offset, side="right")) - 1
        return types.Position(line=line, character=units(self.text[int(starts[line]) : offset], encoding))

    def edit_offset(self, pos: types.Position, encoding: str) -> int:
        """Offset of a position in an edit, clamped as editors expect: past the end of its line is the end of the
        line, past the last line is the end of the document."""
        if pos.line < 0 or pos.character < 0:
            raise EditError(f"position {pos.line}:{pos.character} is negative")
        if pos.line >= len(self.line_starts()):
            return len(self.text)
        return self.offset_at(pos, encoding)

    def apply(self, change: types.TextDocumentContentChangeEvent, encoding: str) -> None:
        """Apply one change on this copy, with LSP line breaks (\\n, \\r\\n, \\r only). EditError when it cannot be
        applied (the text is then unchanged)."""
        rng = getattr(change, "range", None)
        if rng is None:
            self.set_text(change.text)
            self.stale = False
            return
        start = self.edit_offset(rng.start, encoding)
        end = self.edit_offset(rng.end, encoding)
        if end < start:
            raise EditError(f"range {rng.start.line}:{rng.start.character}-{rng.end.line}:{rng.end.character} ends "
                            f"before it starts")
        new = self.text[:start] + change.text + self.text[end:]
        starts = _edited_starts(self.line_starts(), start, end, len(change.text), new)
        self.set_text(new)
        self._starts = starts


def _line_starts(text: str) -> np.ndarray:
    if "\r" not in text:  # the common case, without a Python int per line
        ends = np.flatnonzero(np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32) == 10)
        return np.concatenate((np.zeros(1, dtype=np.int64), ends.astype(np.int64) + 1))
    return np.fromiter(itertools.chain((0,), (m.end() for m in _EOL.finditer(text))), dtype=np.int64)


def _edited_starts(starts: np.ndarray, start: int, end: int, inserted: int, new: str) -> np.ndarray:
    """The line starts of `new` (the text whose `starts` they were, with [start, end) replaced by `inserted`
    characters), rescanning only the edited lines: from the start of the line before the edit (a "\\r" there
    may now pair with an inserted "\\n") to the first line start past the edit, which, like all after it,
    only shifts. A new array; `starts` is not changed."""
    lo = max(0, int(np.searchsorted(starts, start, side="right")) - 2)
    hi = int(np.searchsorted(starts, end + 1, side="right"))  # starts[hi:] are past the edit and its neighbour
    delta = inserted - (end - start)
    stop = int(starts[hi]) + delta if hi < len(starts) else len(new)
    mid = [m.end() for m in _EOL.finditer(new, int(starts[lo]), stop)]
    if hi < len(starts) and mid and mid[-1] == stop:
        mid.pop()  # it is starts[hi], shifted, below
    return np.concatenate((starts[: lo + 1], np.array(mid, dtype=np.int64), starts[hi:] + delta))


def engine_position(text: str, offset: int) -> EnginePosition:
    """The engine's position of an offset: lines split at `\\n` only, characters are code points."""
    line = text.count("\n", 0, offset)
    return EnginePosition(line, offset - (text.rfind("\n", 0, offset) + 1))


def engine_offset(text: str, pos: EnginePosition) -> int:
    return offset_of(text, pos.line, pos.character)


class DocumentStore:
    def __init__(self) -> None:
        self._docs: dict[str, Document] = {}

    def __contains__(self, uri: str) -> bool:
        return uri in self._docs

    def __len__(self) -> int:
        return len(self._docs)

    def open(self, item: types.TextDocumentItem) -> Document:
        doc = Document(item.uri, item.text, item.version, item.language_id)
        self._docs[item.uri] = doc
        return doc

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def require(self, uri: str) -> Document:
        doc = self._docs.get(uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"unknown document {uri} (not opened with textDocument/didOpen)")
        return doc

    def mark_stale(self, ls, uri: str, why: str) -> None:
        """The editor's text and ours differ (an edit was lost): no answers for `uri` until it is sent whole again.
        Told to the client once."""
        doc = self._docs.get(uri)
        if doc is None or doc.stale:
            return
        doc.stale = True
        text = f"codefill: {uri} is out of sync ({why}); no completions for it until the editor sends it whole again"
        log.warning("%s", text)
        ls.log_to_client(types.MessageType.Warning, text)

    def snippets(self, exclude: str, limit: int, max_chars: int, root: str | None = None) -> tuple[Snippet, ...]:
        """Other open documents as engine snippets, most recently edited first (the engine cuts them to its budget).
        Stale documents are left out; lone surrogates are replaced (see `engine_text`)."""
        others = sorted((d for d in self._docs.values() if d.uri != exclude and not d.stale and d.text.strip()),
                        key=lambda d: d.edited, reverse=True)
        out = []
        for d in others[:limit]:
            path = d.path or d.uri
            if root and path.startswith(root.rstrip(os.sep) + os.sep):
                path = os.path.relpath(path, root)
            text = d.text[:max_chars]
            if len(d.text) > max_chars and "\n" in text:
                text = text[: text.rfind("\n") + 1]  # whole lines only
            out.append(Snippet(path=engine_text(path), text=engine_text(text)))
        return tuple(out)


# What else happens after a didOpen / didChange was applied (lsp/warmup.py adds its warm-ups): f(ls, params).
AFTER_OPEN: list = []
AFTER_CHANGE: list = []


def register(server) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls, params: types.DidOpenTextDocumentParams) -> None:
        ls.documents.open(params.text_document)
        for hook in AFTER_OPEN:
            hook(ls, params)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls, params: types.DidChangeTextDocumentParams) -> None:
        doc = ls.documents.get(params.text_document.uri)
        if doc is None:
            ls.log_to_client(types.MessageType.Warning, f"codefill: change to unknown document {params.text_document.uri}")
            return
        for change in params.content_changes:
            if doc.stale and getattr(change, "range", None) is not None:
                continue  # an edit of text we do not have: wait for the whole text
            try:
                doc.apply(change, ls.encoding)
            except (EditError, JsonRpcInvalidParams) as exc:
                ls.documents.mark_stale(ls, doc.uri, f"an edit that cannot be applied: {exc}")
        doc.version = params.text_document.version
        for hook in AFTER_CHANGE:
            hook(ls, params)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls, params: types.DidCloseTextDocumentParams) -> None:
        ls.forget_document(params.text_document.uri)
