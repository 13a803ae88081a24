"""Acceptance statistics, kept on this machine: `workspace/executeCommand` `codefill.accepted`.

Every inline item shown carries the command `codefill.accepted` with an opaque id; the editor runs it when the item
is accepted (VS Code's language client does so itself, the server advertising the command; codefill's Neovim
integration runs `item.command`). The server appends JSON lines to `stats.jsonl` in its state directory
(`$CODEFILL_STATE_DIR`, else `$XDG_STATE_HOME/codefill`, else `~/.local/state/codefill`): a `shown` record per item
(latency of the answer, languageId, model, trigger kind, the gate's features for `codefill stats --refit-gate`), an
`accepted` record, and 30 s and 2 min after an accept a `retained` record: how many characters of the accepted
text are still in the document. Nothing is sent anywhere, and no document text is written (counts only).

Writing never blocks a completion: records go through a bounded queue to a thread of their own (a full queue drops
them), the file is rotated to one `stats.jsonl.1` past `MAX_BYTES`, and a failure to write is logged once. The
setting `stats: false` turns recording off (no command on the items either). `eval/acceptance.py` reads the file.
"""

from __future__ import annotations

import difflib
import itertools
import json
import logging
import os
import queue
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from codefill.engine.paths import state_dir, stats_files, stats_path  # noqa: F401 - (re-exported)

from .edits import common_prefix, common_suffix

if TYPE_CHECKING:
    from .edits import Cursor
    from .server import CodefillLanguageServer

log = logging.getLogger(__name__)

COMMAND = "codefill.accepted"
TITLE = "codefill: accepted"
FORMAT_VERSION = 1
MAX_BYTES = 4 * 1024 * 1024  # then rotated to stats.jsonl.1 (one old file kept): 8 MiB at most on disk
# Test hooks (environment variables, read when the server starts):
#   CODEFILL_STATS_DELAYS="1,2"   seconds to the two retention checks instead of 30 and 120 (CI cannot wait 2 min)
#   CODEFILL_STATS_MAX_BYTES=4096 the rotation size instead of MAX_BYTES
DELAYS_ENV = "CODEFILL_STATS_DELAYS"
MAX_BYTES_ENV = "CODEFILL_STATS_MAX_BYTES"
CHECKS = (("30s", 30.0), ("2min", 120.0))  # (name in the record, seconds after the accept)
QUEUE_MAX = 10_000  # records waiting for the writer; past it they are dropped (a stuck disk must not grow memory)
ANSWERS_KEPT = 128  # shown answers remembered for their accept (an older id is "unknown or expired")
ANSWERS_PER_DOCUMENT = 4  # … of which per document: an editor accepts what it shows now, or just before
# Each remembered answer holds the document text it was computed for (for the retention diff): distinct snapshots
# are bounded in characters too, or 128 answers in a 2 MB file hold 256 MB (tests/lsp/test_lsp_memory.py saw RSS
# grow 20 MB per open/edit/close cycle before this bound and the forgetting on didClose).
SNAPSHOT_CHARS_KEPT = 8_000_000
PENDING_MAX = 64  # accepts whose retention checks are still to come (each holds a copy of its document)
# A character diff costs up to len(a) * len(b) steps: past this many, the changed region is compared by lines, and
# by characters only within changed lines whose product stays below it (about 0.3 s of difflib at the worst).
DIFF_CELLS = 4_000_000


def _delays() -> tuple[tuple[str, float], ...]:
    raw = os.environ.get(DELAYS_ENV)
    if not raw:
        return CHECKS
    try:
        values = [float(v) for v in raw.split(",")]
        if len(values) != len(CHECKS) or any(not 0 <= v < 86400 for v in values):
            raise ValueError
    except ValueError:
        log.warning("%s=%r ignored: expected two numbers of seconds such as 30,120", DELAYS_ENV, raw)
        return CHECKS
    return tuple((name, v) for (name, _), v in zip(CHECKS, values))


def _max_bytes() -> int:
    raw = os.environ.get(MAX_BYTES_ENV)
    if not raw:
        return MAX_BYTES
    try:
        n = int(raw)
        if n < 256:
            raise ValueError
        return n
    except ValueError:
        log.warning("%s=%r ignored: expected a number of bytes (at least 256)", MAX_BYTES_ENV, raw)
        return MAX_BYTES


# ---------------------------------------------------------------------------------------------- the file


class StatsFile:
    """Appends records as JSON lines on a thread of its own; rotates to `<path>.1` when the file would pass
    `max_bytes`. `write` never blocks and never raises; the first failure is logged, later ones only counted."""

    def __init__(self, path: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._size: int | None = None
        self.failed = 0  # records lost to errors
        self.dropped = 0  # records dropped because the queue was full
        self._told = False

    def write(self, record: dict) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("acceptance statistics: the writer is behind (%d records waiting); dropping records",
                            QUEUE_MAX)
            return
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="codefill-stats", daemon=True)
                    self._thread.start()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the queued records are written (True) or `timeout` passed (False)."""
        done = threading.Event()
        self.write({"__flush__": done})
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:  # whatever else is waiting goes in one open/append/close
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            flushes = [r["__flush__"] for r in batch if "__flush__" in r]
            records = [r for r in batch if "__flush__" not in r]
            if records:
                self._append(records)
            for f in flushes:
                f.set()

    def _append(self, records: list[dict]) -> None:
        try:
            lines = [json.dumps(r, separators=(",", ":"), allow_nan=False, ensure_ascii=False) + "\n"
                     for r in records]
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            if self._size is None:
                try:
                    self._size = os.path.getsize(self.path)
                except OSError:
                    self._size = 0
            for line in lines:
                # Rotation keeps the file whole lines: when this record would pass the bound, the current file
                # becomes .1 (replacing the older one) and a new one starts.
                b = line.encode("utf-8")
                if self._size and self._size + len(b) > self.max_bytes:
                    os.replace(self.path, self.path + ".1")
                    self._size = 0
                with open(self.path, "ab") as fh:
                    fh.write(b)
                self._size += len(b)
        except Exception as exc:  # a full disk, a read-only home, a value JSON cannot take: never the server's end
            self.failed += len(records)
            self._size = None
            if not self._told:
                self._told = True
                log.warning("acceptance statistics cannot be written to %s: %s (not retried in the log)",
                            self.path, exc)
            else:
                log.debug("acceptance statistics: %s", exc)


# ---------------------------------------------------------------------------------------------- retention


def retained_chars(before: str, start: int, length: int, now: str) -> int:
    """Characters of `before[start:start + length]` (the accepted text, in the document as it was just after the
    accept) that are still in `now` (the document later).

    Why a diff: the inserted range cannot be followed through the edits reliably (a client may send the accept's own
    edit after the command, reformat the file as a whole, or move the code), and searching for the accepted text
    would miss text that is still there but edited in its middle. A diff between the two documents — the
    attribution `git blame` makes across edits — counts each accepted character that it matches to a character of
    `now`: deleted or rewritten characters are not retained, text typed around or inside the suggestion does not
    count against it. Edits elsewhere only shift offsets and cost nothing. The common head and tail are matched
    first (the usual case: only a little changed); the middle is diffed by lines, and changed lines inside the
    accepted text by characters (see DIFF_CELLS, which bounds the time)."""
    end = start + length
    if length <= 0:
        return 0
    head = common_prefix(before, now)
    tail = common_suffix(before, now, min(len(before), len(now)) - head)
    lo, hi = head, len(before) - tail  # [lo, hi) of `before` changed; the rest of it is in `now` unchanged
    kept = max(0, min(end, lo) - start) + max(0, end - max(start, hi))
    a0, a1 = max(start, lo), min(end, hi)
    if a0 >= a1:
        return kept
    old, new = before[lo:hi], now[head:len(now) - tail]
    return kept + _matched(old, new, a0 - lo, a1 - lo)


def _matched(old: str, new: str, a0: int, a1: int) -> int:
    """Characters of old[a0:a1] a diff of `old` and `new` matches."""
    if len(old) * len(new) <= DIFF_CELLS:
        return _overlap(difflib.SequenceMatcher(None, old, new, autojunk=False).get_matching_blocks(), a0, a1)
    a_lines, b_lines = old.splitlines(keepends=True), new.splitlines(keepends=True)
    a_starts = list(itertools.accumulate((len(x) for x in a_lines), initial=0))
    b_starts = list(itertools.accumulate((len(x) for x in b_lines), initial=0))
    total = 0
    sm = difflib.SequenceMatcher(None, a_lines, b_lines, autojunk=False)
    for tag, i0, i1, j0, j1 in sm.get_opcodes():
        c0, c1 = a_starts[i0], a_starts[i1]
        if c1 <= a0 or c0 >= a1:
            continue
        if tag == "equal":
            total += min(c1, a1) - max(c0, a0)
        elif tag == "replace":
            sub_old, sub_new = old[c0:c1], new[b_starts[j0]:b_starts[j1]]
            if len(sub_old) * len(sub_new) <= DIFF_CELLS:
                blocks = difflib.SequenceMatcher(None, sub_old, sub_new, autojunk=False).get_matching_blocks()
                total += _overlap(blocks, max(a0, c0) - c0, min(a1, c1) - c0)
    return total


def _overlap(blocks, a0: int, a1: int) -> int:
    return sum(max(0, min(b.a + b.size, a1) - max(b.a, a0)) for b in blocks)


# ---------------------------------------------------------------------------------------------- the recorder


@dataclass(frozen=True)
class Shown:
    """An item shown: where its edit goes in the document it was computed for, and what its records say."""

    id: str
    answer: str
    rank: int
    uri: str
    original: str  # the document text the answer was computed for (shared with the request's snapshot)
    start: int
    end: int
    text: str
    meta: dict  # trigger, language, model: repeated in the accepted and retained records


@dataclass(frozen=True)
class Signals:
    """What an answer's completion carried for the gate: its features (engine/gate.py), whether entropies were
    among them, and the gate's probability (None: not scored)."""

    features: dict
    entropy: bool = False
    gate: float | None = None


class Recorder:
    def __init__(self, ls: "CodefillLanguageServer") -> None:
        self.ls = ls
        self.file = StatsFile(stats_path(), _max_bytes())
        self.delays = _delays()
        self._session = secrets.token_hex(4)
        self._ids = itertools.count(1)
        self._answers: OrderedDict[str, list[Shown]] = OrderedDict()  # answer id → its items, oldest first
        self._by_item: dict[str, Shown] = {}
        self._accepted: set[str] = set()
        self._pending = 0
        self._differ: ThreadPoolExecutor | None = None

    @property
    def on(self) -> bool:
        return bool(self.ls.settings.stats)

    def _write(self, record: dict) -> None:
        if self.on:
            self.file.write({"v": FORMAT_VERSION, "t": round(time.time(), 3), **record})

    def shown(self, cur: "Cursor", edits: list[tuple[int, int, str]], signals: list[Signals], *, invoked: bool,
              latency_ms: float, language: str | None, model: str | None) -> list[types.Command | None]:
        """Record the items of one answer as shown; the command each item carries (None when recording is off)."""
        if not self.on or not edits:
            return [None] * len(edits)
        answer = f"{self._session}-a{next(self._ids)}"
        meta = {"trigger": "invoked" if invoked else "automatic", "language": language or "unknown",
                "model": model or "unknown"}
        items, commands = [], []
        for rank, ((start, end, text), sig) in enumerate(zip(edits, signals)):
            item = Shown(f"{self._session}-{next(self._ids)}", answer, rank, cur.doc.uri, cur.original, start, end,
                         text, meta)
            items.append(item)
            self._write({"event": "shown", "id": item.id, "answer": answer, "rank": rank, "items": len(edits),
                         **meta, "latency_ms": round(latency_ms, 1), "chars": len(text),
                         "lines": text.count("\n") + 1, "gate": _finite(sig.gate), "entropy": sig.entropy,
                         "features": {k: round(float(v), 5) for k, v in sig.features.items()}})
            commands.append(types.Command(title=TITLE, command=COMMAND, arguments=[item.id]))
        self._remember(answer, items)
        return commands

    def _remember(self, answer: str, items: list[Shown]) -> None:
        self._answers[answer] = items
        for it in items:
            self._by_item[it.id] = it
        same_doc = [a for a, its in self._answers.items() if its[0].uri == items[0].uri]
        for old in same_doc[:-ANSWERS_PER_DOCUMENT]:
            self._forget(old)
        while len(self._answers) > ANSWERS_KEPT or (len(self._answers) > 1 and
                                                     self._snapshot_chars() > SNAPSHOT_CHARS_KEPT):
            self._forget(next(iter(self._answers)))

    def _snapshot_chars(self) -> int:
        seen: dict[int, int] = {}
        for its in self._answers.values():
            seen.setdefault(id(its[0].original), len(its[0].original))
        return sum(seen.values())

    def forget_document(self, uri: str) -> None:
        """didClose: the document's answers cannot be accepted any more (a retention check already scheduled keeps
        its own reference and finds the document closed)."""
        for answer in [a for a, its in self._answers.items() if its[0].uri == uri]:
            self._forget(answer)

    def _forget(self, answer: str) -> None:
        for it in self._answers.pop(answer, ()):
            self._by_item.pop(it.id, None)

    def accepted(self, args: Any) -> None:
        """`codefill.accepted` with `[id]`. A bad or unknown id is a log line (the editor needs no answer)."""
        item_id = args[0] if isinstance(args, (list, tuple)) and len(args) == 1 else None
        if not isinstance(item_id, str):
            log.warning("%s: expected one argument, the id of a shown item; got %r", COMMAND, _short(args))
            return
        item = self._by_item.get(item_id)
        if item is None:
            log.info("%s: unknown or expired id %r", COMMAND, item_id[:80])
            return
        if item_id in self._accepted:  # a client that runs the command twice
            return
        self._accepted.add(item_id)
        if len(self._accepted) > 4 * ANSWERS_KEPT:
            self._accepted = {i for i in self._accepted if i in self._by_item}
        self._write({"event": "accepted", "id": item.id, "answer": item.answer, "rank": item.rank, **item.meta,
                     "chars": len(item.text)})
        if not self.on or self._pending >= PENDING_MAX:
            return
        loop = self.ls.loop
        if loop is None:
            return
        # The document as it was right after the accept: what the answer was computed for, with the item applied.
        before = item.original[:item.start] + item.text + item.original[item.end:]
        self._pending += 1
        last = len(self.delays) - 1
        for i, (name, delay) in enumerate(self.delays):
            loop.call_later(delay, self._check, item, before, name, delay, i == last)

    def _check(self, item: Shown, before: str, name: str, delay: float, last: bool) -> None:
        """On the event loop: take the document's text now; the diff runs on the writer's side, off the loop."""
        if last:
            self._pending -= 1
        doc = self.ls.documents.get(item.uri)
        base = {"event": "retained", "id": item.id, "answer": item.answer, "rank": item.rank, "check": name,
                "after_s": delay, **item.meta, "chars": len(item.text)}
        if doc is None or doc.stale:
            self._write({**base, "retained": None, "why": "closed" if doc is None else "out of sync"})
            return
        now = doc.text
        if not self.on:
            return

        def measure() -> None:
            try:
                kept = retained_chars(before, item.start, len(item.text), now)
            except Exception:  # a bug here must not take the thread down with it
                log.exception("measuring retained characters failed")
                return
            self._write({**base, "retained": kept})

        if self._differ is None:  # one thread for the diffs: never the event loop, never the model's
            self._differ = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codefill-stats-diff")
        try:
            self._differ.submit(measure)
        except RuntimeError:  # shutting down
            pass

    def close(self) -> None:
        """At the end of the session: what is queued is written (a second at most)."""
        if self._differ is not None:
            self._differ.shutdown(wait=False, cancel_futures=True)
        self.file.flush(1.0)


def _finite(x: float | None) -> float | None:
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return None
    return round(float(x), 4)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


def register(server: "CodefillLanguageServer") -> None:
    @server.command(COMMAND)
    def accepted(ls, *args):  # no annotations: pygls resolves them to convert the arguments

        try:
            ls.stats.accepted(list(args))
        except Exception:  # the server never dies of a statistic
            log.exception("%s failed", COMMAND)
        return None

