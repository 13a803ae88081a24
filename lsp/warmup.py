"""Idle time: background work that makes the next answer faster.

A person does not type the instant the cursor lands somewhere: they read for a moment, and between bursts of typing
the machine is idle. Two kinds of work use that time, newest first (`Warmer`, over engine/background.py):

- **Warm-up** (`Engine.warm`): when a document opens, when it changes, and when the cursor moves
  (`codefill/didChangeCursor`, a notification codefill's Neovim and VS Code integrations send, debounced), the prompt
  a request at that place will need is evaluated into the KV cache, so that the first request there evaluates only
  its last tokens. Clients that send no cursor notification still get the didOpen/didChange warm-up (at the end of the
  last edit, where their cursor is).
- **The next completion** (`Engine.precompute`): after an automatic suggestion is shown, the completion for the
  document as it will be once the suggestion is accepted is decoded into the completion cache, so that Tab, Tab, Tab
  shows the next piece at once. Any other edit simply never asks for it.

Background work never delays a request by more than one micro-batch (LlamaRuntime.WARM_CHUNK) or one token: every
request makes it stop. It is bounded by `warmupTokensPerMinute` and turned off with `warmup: false` (the default on
an inference server, whose GPU is shared). The requests are built on the event loop (from a snapshot of the
document), the engine calls run on the model worker thread, like every request.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from lsprotocol import types

from codefill.engine.background import NewestJob

from .documents import units
from .edits import Cursor, cursor_for, engine_request, language_of

if TYPE_CHECKING:
    from .server import CodefillLanguageServer

log = logging.getLogger(__name__)

DID_CHANGE_CURSOR = "codefill/didChangeCursor"  # params: {textDocument: {uri}, position: {line, character}}
STATS = "codefill/backgroundStats"  # request, no params: what background work did (see `register`)

# Debounce: work starts only once the person has stayed this long (a newer event replaces the pending one).
CURSOR_DELAY_S = 0.15
CHANGE_DELAY_S = 0.3
OPEN_DELAY_S = 0.3
BUDGET_WINDOW_S = 60.0
LOAD_WAIT_S = 120.0  # a job that comes while the model loads waits for it this long
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class Warmer(NewestJob):
    """The language server's background work (engine/background.py): jobs go to the model worker (`ls.worker`,
    the one thread every model call runs on), each only once the model is loaded and while the last minute's
    tokens are within `warmupTokensPerMinute`."""

    def __init__(self, ls: "CodefillLanguageServer") -> None:
        super().__init__(lambda job, cancel: ls.worker.submit(job, cancel), "codefill-warmup")
        self.ls = ls
        self._spent: collections.deque[tuple[float, int]] = collections.deque()
        self._spent_lock = threading.Lock()

    def enabled(self) -> bool:
        engine = self.ls.model.engine
        if engine is None or not hasattr(engine, "warm"):  # (not loaded, or a test double of the engine)
            return False
        on = self.ls.settings.warmup
        return (not getattr(engine, "remote", False)) if on is None else on

    def admit(self, kind: str, cancel: threading.Event) -> bool:
        if not self._model_ready(cancel):
            self.stats[f"{kind}_no_model"] += 1
            return False
        if self.spent() >= self.ls.settings.warmup_tokens_per_minute:
            self.stats[f"{kind}_over_budget"] += 1
            return False
        return True

    def ran(self, kind: str, tokens: int) -> None:
        with self._spent_lock:
            self._spent.append((time.monotonic(), tokens))

    def _model_ready(self, cancel: threading.Event) -> bool:
        """Wait here, not on the model worker (which loads the model), while the model loads: the first
        notifications come before it is ready."""
        model = self.ls.model
        loaded = getattr(model, "loaded", None)
        give_up = time.monotonic() + LOAD_WAIT_S
        while model.engine is None:
            if loaded is not None and loaded.is_set() and model.engine is None:
                return False  # it failed to load
            if cancel.is_set() or self.closed or time.monotonic() > give_up:
                return False
            time.sleep(0.05)
        return True

    def spent(self) -> int:
        """Tokens of background work in the last minute."""
        now = time.monotonic()
        with self._spent_lock:
            while self._spent and self._spent[0][0] < now - BUDGET_WINDOW_S:
                self._spent.popleft()
            return sum(n for _, n in self._spent)


def interrupt(ls: "CodefillLanguageServer") -> None:
    """Before a request goes to the model worker: background work gives way."""
    w = getattr(ls, "_warmer", None)
    if w is not None:
        w.interrupt()


def warmer(ls: "CodefillLanguageServer") -> Warmer:
    w = getattr(ls, "_warmer", None)
    if w is None:
        w = ls._warmer = Warmer(ls)
    return w


def _usable(ls: "CodefillLanguageServer", doc) -> bool:
    return doc is not None and not doc.stale and ls.settings.enabled_for(language_of(doc)) \
        and ls.settings.warmup is not False


def _engine(ls: "CodefillLanguageServer", cancel: threading.Event):
    """The engine, if background work is on for it (on the model worker: never waits there)."""
    return ls.model.engine if warmer(ls).enabled() and not cancel.is_set() else None


def warm_at(ls: "CodefillLanguageServer", uri: str, position: types.Position, kind: str, delay_s: float,
            preempt: bool) -> bool:
    """Schedule a warm-up of the prompt for `position` in `uri` (built now, from the document as it is)."""
    doc = ls.documents.get(uri)
    if not _usable(ls, doc):
        return False
    try:
        cur = cursor_for(doc, position, ls.encoding)
    except Exception:  # a position outside the document: nothing to warm
        return False
    req = engine_request(cur, ls.settings, ls.snippets_for(doc))

    def job(cancel: threading.Event) -> int:
        engine = _engine(ls, cancel)
        return 0 if engine is None else engine.warm(req, cancel)[1]

    warmer(ls).schedule(job, delay_s, preempt, kind)
    return True


def precompute_after(ls: "CodefillLanguageServer", cur: Cursor, start: int, end: int, text: str) -> bool:
    """Schedule the completion that follows the suggestion `text` (replacing `start`…`end` of the client's document)
    once it is accepted: the document with the edit made, the cursor at its end."""
    doc = cur.doc
    if not _usable(ls, doc):
        return False
    after = cur.original[:start] + text + cur.original[end:]
    at = start + len(text)
    req = engine_request(Cursor(doc, cur.original, at, after, at, at, at), ls.settings, ls.snippets_for(doc))

    def job(cancel: threading.Event) -> int:
        engine = _engine(ls, cancel)
        if engine is None:
            return 0
        c = engine.precompute(req, cancel)
        return 0 if c is None else c.timings.prompt_evaluated + c.timings.decode_tokens

    warmer(ls).schedule(job, 0.0, preempt=True, kind="next")
    return True


def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def register(server) -> None:
    from . import documents

    if after_open not in documents.AFTER_OPEN:
        documents.AFTER_OPEN.append(after_open)
        documents.AFTER_CHANGE.append(after_change)

    @server.feature(DID_CHANGE_CURSOR)
    def did_change_cursor(ls: "CodefillLanguageServer", params: Any) -> None:
        doc_id, pos = _field(params, "textDocument"), _field(params, "position")
        uri = _field(doc_id, "uri") if doc_id is not None else None
        line, character = (_field(pos, "line"), _field(pos, "character")) if pos is not None else (None, None)
        if not isinstance(uri, str) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in (line, character)):
            log.debug("ignored %s with params %r", DID_CHANGE_CURSOR, params)
            return
        warm_at(ls, uri, types.Position(line=line, character=character), "cursor", CURSOR_DELAY_S, preempt=True)


    @server.feature(STATS)
    def stats(ls: "CodefillLanguageServer", params: Any = None) -> dict:
        """What background work did (benchmarks read it): runs, tokens and budget skips per kind, and the tokens of
        the last minute."""
        w = warmer(ls)
        return {"enabled": w.enabled(), "spentLastMinute": w.spent(), **{k: v for k, v in w.stats.items()}}


def after_open(ls: "CodefillLanguageServer", params: types.DidOpenTextDocumentParams) -> None:
    """didOpen: the editor shows the top of a newly opened document (a cursor notification corrects it)."""
    warm_at(ls, params.text_document.uri, types.Position(line=0, character=0), "open", OPEN_DELAY_S, preempt=False)


def after_change(ls: "CodefillLanguageServer", params: types.DidChangeTextDocumentParams) -> None:
    """didChange: the cursor is at the end of the last edit (a client that sends no cursor notification)."""
    changes = params.content_changes
    if not changes:
        return
    last = changes[-1]
    rng = getattr(last, "range", None)
    doc = ls.documents.get(params.text_document.uri)
    if rng is None or doc is None:
        return
    # The end of the inserted text: the range's start moved by the text's lines (in the client's encoding).
    lines = _LINE_BREAK.split(last.text)
    if len(lines) == 1:
        pos = types.Position(line=rng.start.line, character=rng.start.character + units(last.text, ls.encoding))
    else:
        pos = types.Position(line=rng.start.line + len(lines) - 1, character=units(lines[-1], ls.encoding))
    warm_at(ls, doc.uri, pos, "change", CHANGE_DELAY_S, preempt=False)
