"""`textDocument/inlineCompletion` (LSP 3.18): ghost text.

- Automatic triggers (the editor asks while you type) get one item, the greedy completion, as fast as possible.
- Invoked triggers (the editor's "trigger inline suggestion") get several distinct alternatives to cycle through: the
  greedy completion first, then samples (settings `suggestions`, `temperature`), duplicates dropped; sampling stops
  after three decoding time budgets.
- `context.selectedCompletionInfo` (the item selected in the completion popup): the completion is computed as if
  that item was accepted, and every answer replaces the item's range and starts with its text, as the spec asks.
- Each item's `range` is exactly what it replaces (usually the empty range at the cursor), in the negotiated encoding.
- A newer request for the same document supersedes an older one (which answers an empty list), and
  `$/cancelRequest` stops a request between two tokens (pygls answers it with RequestCancelled).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from lsprotocol import types

from .edits import cursor_for, edit_for, engine_request, language_of, lsp_range

if TYPE_CHECKING:
    from .server import CodefillLanguageServer

log = logging.getLogger(__name__)


def register(server: "CodefillLanguageServer") -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: "CodefillLanguageServer", params: types.InlineCompletionParams):
        doc = ls.documents.require(params.text_document.uri)
        settings = ls.settings
        if not settings.enabled_for(language_of(doc)):
            return types.InlineCompletionList(items=[])
        context = params.context
        invoked = context is not None and context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        selected = context.selected_completion_info if context is not None else None
        enc = ls.encoding
        cur = cursor_for(doc, params.position, enc, selected)
        req = engine_request(cur, settings, ls.snippets_for(doc))
        n = settings.suggestions if invoked else 1

        def job(cancel):
            engine = ls.engine_or_none()
            if engine is None or cancel.is_set():
                return []
            first = engine.complete(req, cancel=cancel)
            if first.stop_reason == "cancelled":
                return []
            out = [first]
            if n > 1:
                # Samples for the alternatives: no document id (they must not supersede each other nor become the
                # document's "last completion" that typing through is answered from); our cancel event stops them.
                sample = replace(req, temperature=settings.temperature, top_p=0.95, use_cache=False, document_id=None)
                seen = {first.text.rstrip()}
                deadline = _sampling_deadline(settings, engine)
                for seed in range(1, 2 * n + 1):
                    if len(out) >= n or cancel.is_set() or (deadline is not None and time.monotonic() > deadline):
                        break
                    c = engine.complete(replace(sample, seed=seed), cancel=cancel)
                    if c.stop_reason == "cancelled":
                        break
                    key = c.text.rstrip()
                    if key and key not in seen:
                        seen.add(key)
                        out.append(c)
            return [] if cancel.is_set() else out  # superseded meanwhile: the client no longer wants these

        completions = await ls.run_model(("inline", doc.uri), job)
        items = []
        for c in completions:
            edit = edit_for(cur, c)
            if edit is None or not edit[2]:
                continue
            start, end, text = edit
            items.append(types.InlineCompletionItem(insert_text=text, range=lsp_range(cur.doc, start, end, enc)))
        return types.InlineCompletionList(items=items)


def _sampling_deadline(settings, engine) -> float | None:
    """Alternatives stop being sampled after three decoding budgets (none when the budget is off): a person who asked
    explicitly still gets an answer within a few seconds on a slow machine."""
    budget = settings.time_budget_ms
    if budget == -1.0:
        budget = engine.config.decode.time_budget_ms
    return None if budget is None else time.monotonic() + 3 * budget / 1000.0
