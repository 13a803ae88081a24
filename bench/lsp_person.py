"""The person benchmark of `codefill bench latency` (eval/person.py) driven through the language server.

A client (pygls' LanguageClient) starts `python -m codefill lsp` over stdio, opens FILE and plays a person in real
time: at each sampled line (random order) the line is cleared to its indentation (a didChange), the cursor arrives
there (`codefill/didChangeCursor`, as the Neovim config and the VS Code extension send it), the person pauses
(`--think-ms`), types one character and looks, then types on at `--cps` — each keystroke a didChange and an automatic
`textDocument/inlineCompletion`, the previous request still running cancelled (`$/cancelRequest`, as editors do) —
and presses Tab 0.4 s after a suggestion that is what they were about to type (a didChange inserting it, and the
editor asks again at once). Latency is from sending a request to its answer, so it includes JSON-RPC, position
conversion and the worker hand-off. A fresh server for each run (nothing cached), `warmup` on or off.

    python bench/lsp_person.py /usr/lib/python3.11/textwrap.py --lines 8 --ab --threads 2

Printed, not asserted. Decode tokens/s and drafts are the engine's figures and are not reported over LSP
(`codefill bench latency` gives them); background tokens come from `codefill/backgroundStats`, peak RSS from the
server process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codefill.eval.metrics import percentile
from codefill.eval.person import ACCEPT_REACTION_S, format_rows, person_lines
from codefill.eval.soak import proc_status_mb

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from lsp_latency import change_between  # noqa: E402

FINAL_WAIT_S = 30.0


def utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def peak_rss_mb(pid: int) -> float | None:
    return proc_status_mb(pid, "VmHWM")


async def run_once(args, text: str, warmup: bool, think_ms: float) -> dict:
    path = os.path.abspath(args.file)
    uri = "file://" + path
    options = {"threads": args.threads, "model": args.model, "snippets": 0, "warmup": warmup, "stats": False}
    options = {k: v for k, v in options.items() if v is not None}
    client = LanguageClient("codefill-bench", "0")

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        print(f"server: {params.message}", file=sys.stderr)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        pass

    await client.start_io(sys.executable, "-m", "codefill", "lsp")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options))
    client.initialized(types.InitializedParams())
    lines = text.split("\n")
    current, version = text, 1
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=text)))

    def edit(new: str) -> None:
        nonlocal current, version
        if new != current:
            version += 1
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change_between(current, new)]))
            current = new

    def ask(line: int, row: str) -> tuple[float, asyncio.Task]:
        pos = types.Position(line=line, character=utf16(row))
        fut = client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=pos,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))
        return time.perf_counter(), asyncio.ensure_future(fut)

    async def stats() -> dict:
        s = await client.protocol.send_request_async("codefill/backgroundStats", None)
        return s._asdict() if hasattr(s, "_asdict") else dict(s)

    # the model loads (not timed): one request elsewhere in the file
    t, task = ask(0, "")
    await asyncio.wait_for(task, 600)
    first, typing, after = [], [], []
    keystrokes = shown = superseded = accepts = accepted_chars = 0
    gap = 1.0 / args.cps
    s0 = await stats()
    start = time.perf_counter()

    async def settle(task: asyncio.Task, t0: float, until: float | None) -> str | None:
        """The answer's text ("" when empty) if it came by `until` (None: FINAL_WAIT_S), else None."""
        timeout = FINAL_WAIT_S if until is None else max(0.0, until - time.perf_counter())
        try:
            res = await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            return None
        except Exception:
            return None
        return res.items[0].insert_text if res and res.items else ""

    for i in person_lines(text, args.lines, args.seed):
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        body = line[len(indent):]
        base = lines[:i] + [indent] + lines[i + 1:]
        edit("\n".join(base))
        client.protocol.notify("codefill/didChangeCursor", {"textDocument": {"uri": uri},
                                                            "position": {"line": i, "character": utf16(indent)}})
        await asyncio.sleep(think_ms / 1000)
        typed, kind, pending = 0, "first", None
        next_key = time.perf_counter()

        def row_now() -> str:
            return indent + body[:typed]

        while typed < len(body):
            now = time.perf_counter()
            if next_key > now:
                await asyncio.sleep(next_key - now)
            if pending is not None:
                pending[1].cancel()  # pygls sends $/cancelRequest
                superseded += 1
            typed += 1
            keystrokes += 1
            edit("\n".join(lines[:i] + [row_now()] + lines[i + 1:]))
            t0, task = ask(i, row_now())
            pending, waits, what = (t0, task), kind == "first", kind
            kind = "typing"
            next_key = t0 + gap
            while typed < len(body):
                got = await settle(task, t0, None if waits else next_key)
                if got is None:
                    break
                ms = (time.perf_counter() - t0) * 1000
                shown += 1
                {"first": first, "typing": typing, "after_accept": after}[what].append(ms)
                pending = None
                next_key = max(next_key, time.perf_counter())
                if not (got and "\n" not in got and body[typed:].startswith(got)):
                    break
                tab = max(next_key, t0 + ms / 1000 + ACCEPT_REACTION_S)
                now = time.perf_counter()
                if tab > now:
                    await asyncio.sleep(tab - now)
                typed += len(got)
                accepts += 1
                accepted_chars += len(got)
                keystrokes += 1
                edit("\n".join(lines[:i] + [row_now()] + lines[i + 1:]))
                t0, task = ask(i, row_now())
                pending, waits, what = (t0, task), True, "after_accept"
                next_key = t0 + gap
        if pending is not None:
            t0, task = pending
            got = await settle(task, t0, None)
            if got is not None:
                shown += 1
                {"first": first, "typing": typing, "after_accept": after}[what].append(
                    (time.perf_counter() - t0) * 1000)
        edit("\n".join(lines))  # the line back as it was
        print(".", end="", file=sys.stderr, flush=True)
    wall = time.perf_counter() - start
    s1 = await stats()
    rss = peak_rss_mb(client._server.pid) if getattr(client, "_server", None) is not None else None
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    bg = sum(v for k, v in s1.items() if k.endswith("_tokens")) - sum(v for k, v in s0.items() if k.endswith("_tokens"))

    def p(xs, q):
        return round(percentile(xs, q), 1) if xs else None

    return {
        "warmup": warmup, "think_ms": think_ms,
        "first_p50_ms": p(first, 50), "first_p95_ms": p(first, 95),
        "typing_p50_ms": p(typing, 50), "typing_p95_ms": p(typing, 95),
        "after_accept_p50_ms": p(after, 50), "after_accept_p95_ms": p(after, 95),
        "keystrokes": keystrokes, "shown": shown, "superseded": superseded, "accepts": accepts,
        "accepted_chars": accepted_chars, "decode_tokens_per_s": None, "drafted": None, "draft_accepted": None,
        "background_tokens_per_min": round(bg / (wall / 60), 1), "peak_rss_mb": round(rss, 1) if rss else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--lines", type=int, default=8)
    ap.add_argument("--think-ms", type=float, default=800.0)
    ap.add_argument("--cps", type=float, default=8.0)
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--ab", action="store_true", help="idle-time work off and on, with --think-ms and 0")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    # pygls's client logs a traceback when the answer to a request it cancelled arrives anyway (harmless)
    logging.getLogger("pygls").setLevel(logging.CRITICAL)
    with open(args.file, encoding="utf-8") as fh:
        text = fh.read()
    runs = [(not args.no_warmup, args.think_ms)] if not args.ab else [
        (False, args.think_ms), (True, args.think_ms), (False, 0.0), (True, 0.0)]
    results = [asyncio.run(run_once(args, text, on, think)) for on, think in runs]
    print(file=sys.stderr)
    if args.json:
        print(json.dumps({"file": args.file, "runs": results}))
        return
    print(f"through the language server: {args.file}, {args.lines} lines at {args.cps:g} chars/s")
    for row in format_rows(results):
        print("  " + row)


if __name__ == "__main__":
    main()
