"""`textDocument/completion`: the fallback for clients without inline completion.

One item that inserts the completion: its label is the word being typed plus the first line of the completion (with
"…" when there is more), its documentation the full text in a code block, its `textEdit` replaces the word before
the cursor (so the client's filtering by that word keeps it) with the word plus the completion. The list is
`isIncomplete`, so the client asks again as you type instead of filtering a stale answer.

Advertised only to clients without inline completion (setting `completionFallback` overrides), since editors that have
both would ask for both at every keystroke.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING

from lsprotocol import types

from . import warmup
from .edits import cursor_for, edit_for, engine_document_ids, engine_request, language_of, lsp_range

if TYPE_CHECKING:
    from .server import CodefillLanguageServer

_WORD = re.compile(r"[\w$]+$")
LABEL_CHARS = 60


def register(server: "CodefillLanguageServer") -> None:
    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))
    async def completion(ls: "CodefillLanguageServer", params: types.CompletionParams):
        doc = ls.documents.require(params.text_document.uri)
        if doc.stale or not ls.settings.enabled_for(language_of(doc)):  # stale: its text is not the editor's
            return types.CompletionList(is_incomplete=True, items=[])
        enc = ls.encoding
        cur = cursor_for(doc, params.position, enc)
        # Its own supersession key and engine document id: a client that asks for both inline and popup completions
        # must not have them cancel each other.
        req = replace(engine_request(cur, ls.settings, ls.snippets_for(doc)), document_id=engine_document_ids(doc.uri)[1])

        def job(cancel):
            engine = ls.engine_or_none()
            if engine is None or cancel.is_set():
                return None
            c = engine.complete(req, cancel=cancel)
            return None if c.stop_reason == "cancelled" else c

        warmup.interrupt(ls)  # background work on the model thread gives way to this request
        c = await ls.run_model(("completion", doc.uri), job)
        edit = edit_for(cur, c) if c is not None else None
        if edit is None or not edit[2]:
            return types.CompletionList(is_incomplete=True, items=[])
        start, end, text = edit
        line_start = cur.original.rfind("\n", 0, start) + 1
        m = _WORD.search(cur.original[line_start:start])
        word_start = start - len(m.group(0)) if m else start
        new_text = cur.original[word_start:start] + text
        first, _, rest = new_text.partition("\n")
        label = first.strip() or text.strip().split("\n")[0]
        if len(label) > LABEL_CHARS:
            label = label[: LABEL_CHARS - 1] + "…"
        elif rest.strip():
            label += " …"
        lang = language_of(doc) or ""
        if _markdown_ok(ls):
            doc_text = types.MarkupContent(kind=types.MarkupKind.Markdown, value=f"```{lang}\n{text}\n```")
        else:
            doc_text = types.MarkupContent(kind=types.MarkupKind.PlainText, value=text)
        item = types.CompletionItem(
            label=label,
            kind=types.CompletionItemKind.Snippet,
            detail="codefill",
            label_details=types.CompletionItemLabelDetails(description="codefill"),
            documentation=doc_text,
            filter_text=new_text,
            sort_text="0",
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=lsp_range(cur.doc, word_start, end, enc), new_text=new_text),
        )
        return types.CompletionList(is_incomplete=True, items=[item])


def _markdown_ok(ls) -> bool:
    caps = ls.client_capabilities
    try:
        formats = caps.text_document.completion.completion_item.documentation_format
    except AttributeError:
        return False
    return bool(formats) and types.MarkupKind.Markdown in formats
