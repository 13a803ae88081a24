"""The soak of `codefill bench soak`: a long typing session through the language server, watched for leaks and errors.

A client (pygls' LanguageClient) starts `python -m codefill lsp` over stdio, as an editor does, and edits several
documents, small and large, for `minutes`: it opens a document (closing the least recently used one beyond
`max_open`, as a person closes tabs), moves the cursor to a line (`codefill/didChangeCursor`), clears the line to its
indentation and types it again at `cps` — each keystroke an incremental didChange and an automatic
`textDocument/inlineCompletion`, the previous request still running cancelled (`$/cancelRequest`) — accepts a
suggestion that is what it was about to type, and puts the line back. Every request is accounted for: answered,
cancelled by the client, or an error (an error response, or no answer within `answer_timeout_s`).

Per window of `window_minutes`: requests sent, answered, shown (non-empty), cancelled, errors, answer latency p50/p95,
the server's RSS at the window's end, and its RSS with nothing open: when a window ends, the client closes every open
document at the next line boundary (a person closing their tabs), waits for the server to have handled that (a
request round trip), reads RSS, and goes on typing (documents reopen as they are chosen). RSS at the window's end
depends on which documents happen to be open then (up to `max_open` of them, one of 4.7 MB); the closed reading
compares like with like, so the growth is judged on it. What the soak is for: no errors, and RSS flat (within 5%)
after the first window, which holds the model's load and the first large documents. Printed, never asserted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field

from .metrics import percentile

ANSWER_TIMEOUT_S = 60.0
BIG_DOCUMENT_CHARS = 6_000_000  # below the engine's 8M-character limit: the server keeps and completes it


@dataclass
class Window:
    start_s: float
    requests: int = 0
    answered: int = 0
    shown: int = 0
    cancelled: int = 0
    errors: int = 0
    accepts: int = 0
    opens: int = 0
    closes: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    rss_mb: float | None = None
    idle_rss_mb: float | None = None  # after the window, with every document closed (see `run_soak`)

    def row(self) -> dict:
        def p(q):
            return round(percentile(self.latencies_ms, q), 1) if self.latencies_ms else None

        return {"start_min": round(self.start_s / 60, 2), "requests": self.requests, "answered": self.answered,
                "shown": self.shown, "cancelled": self.cancelled, "errors": self.errors, "accepts": self.accepts,
                "opens": self.opens, "closes": self.closes, "p50_ms": p(50), "p95_ms": p(95),
                "rss_mb": None if self.rss_mb is None else round(self.rss_mb, 1),
                "idle_rss_mb": None if self.idle_rss_mb is None else round(self.idle_rss_mb, 1)}


@dataclass
class Document:
    path: str
    lines: list[str]
    uri: str = ""
    version: int = 0
    open: bool = False
    last_used: float = 0.0

    @property
    def chars(self) -> int:
        return sum(len(x) + 1 for x in self.lines)


def default_documents(workdir: str) -> list[str]:
    """Real code of several sizes: three small stdlib modules, the two largest, and one large file made by
    concatenating the stdlib's top-level modules up to 6 MB (4.7 MB on Python 3.11: all of them), written into
    `workdir`."""
    stdlib = sysconfig.get_paths()["stdlib"]
    small = [os.path.join(stdlib, n) for n in ("textwrap.py", "shlex.py", "bisect.py")]
    large = [os.path.join(stdlib, "_pydecimal.py"), os.path.join(stdlib, "pydoc_data", "topics.py")]
    big = os.path.join(workdir, "stdlib_concatenated.py")
    parts, size = [], 0
    for name in sorted(os.listdir(stdlib)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(stdlib, name), encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        parts.append(f"# ---- {name}\n{text}")
        size += len(parts[-1])
        if size >= BIG_DOCUMENT_CHARS:
            break
    with open(big, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    return [p for p in small + large if os.path.exists(p)] + [big]


def proc_status_mb(pid: int, field: str = "VmRSS") -> float | None:
    """A memory figure of process `pid` from /proc (VmRSS: resident now; VmHWM: its peak), in MB; None elsewhere."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


async def run_soak(paths: list[str], state_dir: str, *, minutes: float, window_minutes: float, threads: int | None = None,
                   model: str | None = None, cps: float = 10.0, max_open: int = 3, seed: int = 0,
                   answer_timeout_s: float = ANSWER_TIMEOUT_S, progress=None) -> dict:
    """Run the soak; returns {"windows": [row...], "summary": {...}}. `progress(elapsed_s, total_s, window)`.
    The server's acceptance records go to `state_dir`."""
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient

    # pygls's client logs a traceback when the answer to a request it cancelled arrives anyway (harmless)
    logging.getLogger("pygls").setLevel(logging.CRITICAL)
    rng = random.Random(seed)
    docs = []
    for p in paths:
        with open(p, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        docs.append(Document(path=p, lines=text.split("\n"), uri="file://" + os.path.abspath(p)))
    options = {"threads": threads, "model": model}
    options = {k: v for k, v in options.items() if v is not None}
    client = LanguageClient("codefill-soak", "0")
    server_errors: list[str] = []

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        if params.type == types.MessageType.Error:
            server_errors.append(params.message)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        pass

    # acceptance statistics on, as for a person (the recorder's memory is part of what is soaked), into a folder of
    # the soak's own: the soak's accepts are not the user's
    env = dict(os.environ, CODEFILL_STATE_DIR=state_dir)
    await client.start_io(sys.executable, "-m", "codefill", "lsp", env=env)
    pid = client._server.pid
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options))
    client.initialized(types.InitializedParams())

    total_s = minutes * 60
    window_s = window_minutes * 60
    start = time.perf_counter()
    windows = [Window(0.0)]

    def now_window() -> Window:
        el = time.perf_counter() - start
        while el >= windows[-1].start_s + window_s:
            windows[-1].rss_mb = proc_status_mb(pid)
            if progress:
                progress(el, total_s, windows[-1])
            windows.append(Window(windows[-1].start_s + window_s))
        return windows[-1]

    def change(doc: Document, line: int, col_from: int, col_to: int, text: str) -> None:
        """Replace characters [col_from, col_to) of `line` with `text` (no line breaks)."""
        row = doc.lines[line]
        doc.version += 1
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=doc.uri, version=doc.version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=line, character=utf16_len(row[:col_from])),
                                  end=types.Position(line=line, character=utf16_len(row[:col_to]))),
                text=text)]))
        doc.lines[line] = row[:col_from] + text + row[col_to:]

    def close_doc(doc: Document) -> None:
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=doc.uri)))
        doc.open = False
        now_window().closes += 1

    def open_doc(doc: Document) -> None:
        open_docs = sorted((d for d in docs if d.open), key=lambda d: d.last_used)
        while len(open_docs) >= max_open:
            close_doc(open_docs.pop(0))
        doc.version += 1
        client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
            uri=doc.uri, language_id="python", version=doc.version, text="\n".join(doc.lines))))
        doc.open = True
        now_window().opens += 1

    class Pending:
        def __init__(self, doc: Document, line: int, col: int):
            self.window = now_window()
            self.window.requests += 1
            self.t0 = time.perf_counter()
            pos = types.Position(line=line, character=utf16_len(doc.lines[line][:col]))
            self.task = asyncio.ensure_future(client.text_document_inline_completion_async(
                types.InlineCompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=doc.uri), position=pos,
                    context=types.InlineCompletionContext(
                        trigger_kind=types.InlineCompletionTriggerKind.Automatic))))
            self.done = False
            self.command = None

        def cancel(self) -> None:
            if not self.done:
                self.done = True
                if self.task.done() and not self.task.cancelled():
                    if self.task.exception() is None:
                        self._record(self.task.result())
                    else:
                        self.window.errors += 1
                else:
                    self.task.cancel()  # pygls sends $/cancelRequest
                    self.window.cancelled += 1

        def _record(self, res) -> str:
            self.window.answered += 1
            self.window.latencies_ms.append((time.perf_counter() - self.t0) * 1000)
            text = res.items[0].insert_text if res and res.items else ""
            text = text if isinstance(text, str) else text.value
            self.command = res.items[0].command if res and res.items else None
            if text:
                self.window.shown += 1
            return text

        async def settle(self, until: float | None) -> str | None:
            """The answer's text if it came by `until` (None: `answer_timeout_s`), else None (still pending)."""
            timeout = answer_timeout_s if until is None else max(0.0, until - time.perf_counter())
            try:
                res = await asyncio.wait_for(asyncio.shield(self.task), timeout)
            except asyncio.TimeoutError:
                if until is None:  # no answer at all: an error, and the request is given up
                    self.done = True
                    self.task.cancel()
                    self.window.errors += 1
                return None
            except asyncio.CancelledError:
                raise
            except Exception:
                self.done = True
                self.window.errors += 1
                return None
            self.done = True
            return self._record(res)

    commands: set[asyncio.Task] = set()

    def run_command(command) -> None:
        """workspace/executeCommand, answered in the background; a failure counts as an error of its window."""
        window = now_window()
        task = asyncio.ensure_future(client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=command.command, arguments=command.arguments)))
        commands.add(task)

        def done(t: asyncio.Task) -> None:
            commands.discard(t)
            if not t.cancelled() and t.exception() is not None:
                window.errors += 1
                server_errors.append(f"{command.command}: {t.exception()}")

        task.add_done_callback(done)

    async def idle_rss() -> float | None:
        """Close every open document, wait until the server has handled it, and read its RSS."""
        for d in docs:
            if d.open:
                close_doc(d)
        await asyncio.wait_for(client.protocol.send_request_async("codefill/backgroundStats", None), 60)
        return proc_status_mb(pid)

    def ended_unread() -> bool:
        """The window before the current one has no closed reading yet."""
        return len(windows) >= 2 and windows[-2].idle_rss_mb is None

    gap = 1.0 / cps
    try:
        while time.perf_counter() - start < total_s:
            if ended_unread():  # a window ended during the last line
                windows[-2].idle_rss_mb = await idle_rss()
            doc = rng.choice(docs)
            if not doc.open:
                open_doc(doc)
            doc.last_used = time.perf_counter()
            candidates = [i for i in range(len(doc.lines)) if 3 <= len(doc.lines[i].strip()) <= 120]
            i = rng.choice(candidates)
            original = doc.lines[i]
            indent = original[: len(original) - len(original.lstrip())]
            body = original[len(indent):]
            client.protocol.notify("codefill/didChangeCursor", {"textDocument": {"uri": doc.uri},
                                                                "position": {"line": i, "character": len(indent)}})
            change(doc, i, len(indent), len(original), "")
            await asyncio.sleep(rng.uniform(0.2, 1.0))  # a person arriving pauses
            typed, pending = 0, None
            next_key = time.perf_counter()
            while typed < len(body) and time.perf_counter() - start < total_s:
                delay = next_key - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if pending is not None:
                    pending.cancel()
                change(doc, i, len(indent) + typed, len(indent) + typed, body[typed])
                typed += 1
                pending = Pending(doc, i, len(indent) + typed)
                next_key = pending.t0 + gap
                got = await pending.settle(next_key)
                if got and "\n" not in got and body[typed:].startswith(got):
                    await asyncio.sleep(0.3)  # reads it, presses Tab
                    change(doc, i, len(indent) + typed, len(indent) + typed, got)
                    if pending.command is not None:  # as an editor does on accept (acceptance statistics)
                        run_command(pending.command)
                    typed += len(got)
                    now_window().accepts += 1
                    pending = Pending(doc, i, len(indent) + typed)  # the editor asks again after an accept
                    next_key = time.perf_counter() + gap
            if pending is not None and not pending.done:
                await pending.settle(None)
            change(doc, i, 0, len(doc.lines[i]), original)  # the line back as it was
            if client._server is not None and client._server.returncode is not None:
                now_window().errors += 1
                server_errors.append(f"the server exited with {client._server.returncode}")
                break
            now_window()
    finally:
        windows[-1].rss_mb = proc_status_mb(pid)
        alive = client._server is not None and client._server.returncode is None
        if alive:
            try:
                if ended_unread():
                    windows[-2].idle_rss_mb = await idle_rss()
                windows[-1].idle_rss_mb = await idle_rss()
            except Exception as exc:  # the summary says what went wrong; the server is still shut down below
                server_errors.append(f"closing the documents: {exc!r}")
        if progress:
            progress(time.perf_counter() - start, total_s, windows[-1])
        if commands:
            await asyncio.wait(list(commands), timeout=30)
        if alive:
            await asyncio.wait_for(client.shutdown_async(None), 60)
            client.exit(None)
        await client.stop()
    rows = [w.row() for w in windows if w.requests or w.opens]
    rss = [r["rss_mb"] for r in rows if r["rss_mb"] is not None]
    idle = [r["idle_rss_mb"] for r in rows if r["idle_rss_mb"] is not None]
    all_lat = [x for w in windows for x in w.latencies_ms]
    summary = {
        "minutes": round((time.perf_counter() - start) / 60, 2), "documents": len(docs),
        "document_chars": [d.chars for d in docs],
        "requests": sum(r["requests"] for r in rows), "answered": sum(r["answered"] for r in rows),
        "errors": sum(r["errors"] for r in rows), "server_errors": server_errors[:10],
        "p50_ms": round(percentile(all_lat, 50), 1) if all_lat else None,
        "p95_ms": round(percentile(all_lat, 95), 1) if all_lat else None,
        # after warm-up: from the end of the first window to the end of the last, with nothing open (the goal), and
        # as read at each window's end with whatever was open then
        "rss_growth_pct": round(100 * (idle[-1] - idle[0]) / idle[0], 1) if len(idle) >= 2 else None,
        "rss_open_growth_pct": round(100 * (rss[-1] - rss[0]) / rss[0], 1) if len(rss) >= 2 else None,
        "exit_code": client._server.returncode if client._server is not None else None,
    }
    return {"windows": rows, "summary": summary}


def format_soak(result: dict) -> list[str]:
    out = [f"{'from min':>8} {'requests':>8} {'answered':>8} {'shown':>6} {'cancel':>6} {'errors':>6} "
           f"{'accepts':>7} {'open/close':>10} {'p50 ms':>7} {'p95 ms':>7} {'RSS MB':>7} {'closed MB':>9}"]
    for r in result["windows"]:
        def f(v):
            return "-" if v is None else f"{v:.0f}"
        out.append(f"{r['start_min']:>8g} {r['requests']:>8} {r['answered']:>8} {r['shown']:>6} {r['cancelled']:>6} "
                   f"{r['errors']:>6} {r['accepts']:>7} {str(r['opens']) + '/' + str(r['closes']):>10} "
                   f"{f(r['p50_ms']):>7} {f(r['p95_ms']):>7} {f(r['rss_mb']):>7} {f(r.get('idle_rss_mb')):>9}")
    s = result["summary"]
    def pct(v):
        return "-" if v is None else f"{v:+.1f}%"

    growth = pct(s["rss_growth_pct"])
    if s.get("rss_open_growth_pct") is not None:
        growth += f" with every document closed ({pct(s['rss_open_growth_pct'])} as read with some open)"
    out.append(f"{s['requests']} requests, {s['answered']} answered, {s['errors']} errors in {s['minutes']:g} min; "
               f"latency p50/p95 {s['p50_ms']}/{s['p95_ms']} ms; RSS after the first window {growth}; "
               f"server exit code {s['exit_code']}")
    for m in s["server_errors"]:
        out.append(f"server error: {m}")
    return out


def soak(paths: list[str] | None, **kwargs) -> dict:
    """`run_soak` on `paths`, or on `default_documents` (made in a temporary folder, removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="codefill-soak-") as tmp:
        return asyncio.run(run_soak(paths or default_documents(tmp), tmp, **kwargs))
