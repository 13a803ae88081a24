"""A person writing a real file, in real time: the idle-time benchmark (`codefill bench latency`, issue 14).

At each sampled line (in random order: every one is a jump to a new place) the line is cleared back to its
indentation. The person arrives there, reads for `think_ms`, then types the line one character every 1/cps seconds.
Every keystroke is a request, as editors send them; a request still running at the next keystroke is superseded
(its cancel event is set: the engine stops at its next token) and is no answer shown. When a shown answer is what
the person was about to type (a non-empty prefix of the rest of the line), they accept it with Tab once they have
read it (ACCEPT_REACTION_S after it appeared, not before their next keystroke), and the editor asks again at once: "the next answer after an accept". At a new place the person types
one character and looks (the first answer there is waited for, not superseded), and after Tab they look for the
next piece too; in between they type on, whatever the suggestions do.

With `warmup`, the engine's idle-time work runs as the language server runs it (lsp/warmup.py), on one background
thread, newest first: a warm-up of the place arrived at (after the editor's and the server's debounce, 250 ms), a
warm-up after each edit (300 ms debounce), and after each answer shown the completion for the document as it will
be once accepted (`Engine.precompute`). Every request makes background work stop.

Printed, not asserted: the first answer after arriving (the first keystroke there to its answer), answers while typing and the next answer after an accept (p50 and p95, keystroke to answer, answers shown),
shown/superseded, accepts, decode tokens/s, draft acceptance (speculative decoding),
background tokens per minute, peak RSS.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

from codefill.engine.background import NewestJob
from codefill.engine.types import CompletionRequest, StopReason

from .benchmark import peak_rss_mb
from .metrics import percentile

ARRIVE_DELAY_S = 0.25  # the editor's cursor debounce (100 ms) and the server's (150 ms)
CHANGE_DELAY_S = 0.3
ACCEPT_REACTION_S = 0.4  # reading a suggestion before Tab (a choice reaction time)
FINAL_WAIT_S = 30.0  # after a line's last keystroke: how long its last request may take
MIN_LINE_LENGTH = 8


class Background(NewestJob):
    """The newest background job on the model thread `exe` (lsp/warmup.Warmer without the server around it)."""

    def __init__(self, exe: ThreadPoolExecutor) -> None:
        super().__init__(exe.submit, "bench-background")

    def close(self, wait_s: float = 30.0) -> None:
        super().close(wait_s)  # the figures are read after it

    @property
    def tokens(self) -> int:
        return sum(v for k, v in self.stats.items() if k.endswith("_tokens"))


@dataclass
class PersonReport:
    first_ms: list[float] = field(default_factory=list)
    typing_ms: list[float] = field(default_factory=list)
    after_accept_ms: list[float] = field(default_factory=list)
    keystrokes: int = 0
    shown: int = 0
    superseded: int = 0
    accepts: int = 0
    accepted_chars: int = 0
    decode_tokens: int = 0
    decode_ms: float = 0.0
    prompt_evaluated: int = 0
    drafted: int = 0
    draft_accepted: int = 0
    background_tokens: int = 0
    wall_s: float = 0.0

    def summary(self) -> dict:
        def p(xs, q):
            return round(percentile(xs, q), 1) if xs else None

        return {
            "first_p50_ms": p(self.first_ms, 50), "first_p95_ms": p(self.first_ms, 95),
            "typing_p50_ms": p(self.typing_ms, 50), "typing_p95_ms": p(self.typing_ms, 95),
            "after_accept_p50_ms": p(self.after_accept_ms, 50), "after_accept_p95_ms": p(self.after_accept_ms, 95),
            "keystrokes": self.keystrokes, "shown": self.shown, "superseded": self.superseded,
            "accepts": self.accepts, "accepted_chars": self.accepted_chars,
            "decode_tokens_per_s": round(self.decode_tokens / (self.decode_ms / 1000), 1) if self.decode_ms else 0.0,
            "prompt_tokens_evaluated": self.prompt_evaluated,
            "drafted": self.drafted, "draft_accepted": self.draft_accepted,
            "background_tokens_per_min": round(self.background_tokens / (self.wall_s / 60), 1) if self.wall_s else 0.0,
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def person_lines(text: str, n_lines: int, seed: int = 0) -> list[int]:
    lines = text.split("\n")
    candidates = [i for i, ln in enumerate(lines)
                  if len(ln.strip()) >= MIN_LINE_LENGTH and not ln.lstrip().startswith("#")]
    return random.Random(seed).sample(candidates, min(n_lines, len(candidates)))


class _Request:
    """One keystroke's request, queued on the model thread as the language server queues it (background work first
    gives way)."""

    def __init__(self, engine, req: CompletionRequest, kind: str, exe: ThreadPoolExecutor, bg: "Background | None"):
        self.kind, self.t0, self.req = kind, time.perf_counter(), req
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.completion = None
        self.ms = 0.0
        if bg is not None:
            bg.interrupt()
        self._fut = exe.submit(self._run, engine)

    def _run(self, engine) -> None:
        c = engine.complete(self.req, cancel=self.cancel)
        self.ms = (time.perf_counter() - self.t0) * 1000
        self.completion = c
        self.done.set()

    def wait(self) -> None:
        self._fut.result()


def run_person(engine, text: str, path: str, *, n_lines: int = 8, think_ms: float = 800.0, cps: float = 8.0,
               warmup: bool = True, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> PersonReport:
    rep = PersonReport()
    lines = text.split("\n")
    chosen = person_lines(text, n_lines, seed)
    exe = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-model")  # the language server's model worker
    bg = Background(exe) if warmup else None
    rt = engine.backend
    drafted0, accepted0 = getattr(rt, "drafted_tokens", 0), getattr(rt, "accepted_tokens", 0)
    gap = 1.0 / cps
    t_start = time.perf_counter()
    requests: list[_Request] = []

    def doc_with(i: int, row: str) -> str:
        return "\n".join(lines[:i] + [row] + lines[i + 1 :])

    def request_at(i: int, row: str, col: int, use_cache: bool = True) -> CompletionRequest:
        return CompletionRequest(text=doc_with(i, row), line=i, character=col, path=path, document_id=path,
                                 use_cache=use_cache)

    def on_shown(req: CompletionRequest, c) -> None:
        if bg is None or not c.text:
            return
        row = req.text.split("\n")[req.line]
        after_row = row[: req.character] + c.text + row[req.character :]
        if "\n" in c.text:
            return  # a block: accepted whole or not at all, and the bench accepts only single lines
        nxt = request_at(req.line, after_row, req.character + len(c.text))

        def job(cancel: threading.Event) -> int:
            got = engine.precompute(nxt, cancel)
            return 0 if got is None else got.timings.prompt_evaluated + got.timings.decode_tokens

        bg.schedule(job, 0.0, preempt=True)

    def warm_job(req: CompletionRequest) -> Callable[[threading.Event], int]:
        return lambda cancel: engine.warm(req, cancel)[1]

    def settle(r: _Request, until: float | None) -> bool:
        """Wait for `r` until `until` (perf_counter; None: up to FINAL_WAIT_S). True when it answered."""
        left = FINAL_WAIT_S if until is None else max(0.0, until - time.perf_counter())
        if not r.done.wait(left):
            return False
        return r.completion is not None and r.completion.stop_reason != StopReason.CANCELLED

    def record(r: _Request) -> None:
        c = r.completion
        rep.shown += 1
        {"first": rep.first_ms, "typing": rep.typing_ms, "after_accept": rep.after_accept_ms}[r.kind].append(r.ms)
        rep.decode_tokens += c.timings.decode_tokens
        rep.decode_ms += c.timings.decode_ms
        rep.prompt_evaluated += c.timings.prompt_evaluated
        on_shown(r.req, c)

    for n, i in enumerate(chosen):
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        body = line[len(indent) :]
        if bg is not None:  # the cursor arrives: the editor tells the server
            bg.schedule(warm_job(request_at(i, indent, len(indent))), ARRIVE_DELAY_S, preempt=True)
        time.sleep(think_ms / 1000)
        typed, kind = 0, "first"
        pending: _Request | None = None
        next_key = time.perf_counter()

        def ask(row: str, what: str) -> _Request:
            r = _Request(engine, request_at(i, row, len(row)), what, exe, bg)
            requests.append(r)
            return r

        while typed < len(body):
            now = time.perf_counter()  # a keystroke
            if next_key > now:
                time.sleep(next_key - now)
            if pending is not None:  # not shown before this keystroke (running, or answered too late to be seen)
                pending.cancel.set()
                rep.superseded += 1
            typed += 1
            rep.keystrokes += 1
            pending = ask(indent + body[:typed], kind)
            if bg is not None:  # didChange: the server warms the place after its debounce
                bg.schedule(warm_job(pending.req), CHANGE_DELAY_S, preempt=False)
            waits = kind == "first"  # at a new place the person types a character and looks
            kind = "typing"
            next_key = pending.t0 + gap
            while typed < len(body) and settle(pending, None if waits else next_key):  # answered in time: shown
                next_key = max(next_key, time.perf_counter())
                record(pending)
                c = pending.completion
                if not (c.text and "\n" not in c.text and body[typed:].startswith(c.text)):
                    pending = None
                    break
                # Tab once the suggestion is read (and not before the next keystroke); the editor asks again at once
                tab = max(next_key, pending.t0 + pending.ms / 1000 + ACCEPT_REACTION_S)
                now = time.perf_counter()
                if tab > now:
                    time.sleep(tab - now)
                typed += len(c.text)
                rep.accepts += 1
                rep.accepted_chars += len(c.text)
                rep.keystrokes += 1
                pending = ask(indent + body[:typed], "after_accept")
                waits = True  # after Tab the person looks for the next piece (Tab, Tab, Tab)
                next_key = pending.t0 + gap
        if pending is not None and settle(pending, None):
            record(pending)
        if progress:
            progress(n + 1, len(chosen))
    for r in requests:
        r.wait()
    if bg is not None:
        bg.close()
        rep.background_tokens = bg.tokens
    exe.shutdown(wait=True)
    rep.wall_s = time.perf_counter() - t_start
    rep.drafted = getattr(rt, "drafted_tokens", 0) - drafted0
    rep.draft_accepted = getattr(rt, "accepted_tokens", 0) - accepted0
    return rep


ROWS = [
    ("first answer after arriving p50/p95", "first_p50_ms", "first_p95_ms", "ms"),
    ("answers while typing p50/p95", "typing_p50_ms", "typing_p95_ms", "ms"),
    ("next answer after an accept p50/p95", "after_accept_p50_ms", "after_accept_p95_ms", "ms"),
    ("keystrokes / shown / superseded", "keystrokes", "shown", "superseded"),
    ("accepts (characters)", "accepts", "accepted_chars", None),
    ("decode tokens/s", "decode_tokens_per_s", None, None),
    ("drafts accepted / drafted", "draft_accepted", "drafted", None),
    ("background tokens per minute", "background_tokens_per_min", None, None),
    ("peak RSS MB", "peak_rss_mb", None, None),
]


def _cell(s: dict, a: str, b: str | None, c: str | None) -> str:
    def v(k):
        x = s.get(k)
        return "-" if x is None else (f"{x:.0f}" if isinstance(x, float) else str(x))

    if c == "ms":
        return f"{v(a)} / {v(b)}"
    return " / ".join(v(k) for k in (a, b, c) if k)


def format_rows(results: list[dict]) -> list[str]:
    """A table: one column per run (idle-time work off/on, pause), one row per figure."""
    heads = [f"{'on' if r['warmup'] else 'off'}, pause {r['think_ms']:.0f} ms" for r in results]
    cells = [[_cell(r, a, b, c) for r in results] for _, a, b, c in ROWS]
    w0 = max(len(name) for name, *_ in ROWS)
    widths = [max(len(h), *(len(row[j]) for row in cells)) for j, h in enumerate(heads)]
    out = [" " * w0 + "  " + "  ".join(h.rjust(w) for h, w in zip(heads, widths))]
    for (name, *_), row in zip(ROWS, cells):
        out.append(name.ljust(w0) + "  " + "  ".join(x.rjust(w) for x, w in zip(row, widths)))
    return out
