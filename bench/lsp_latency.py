"""The typing-session benchmark driven through the language server.

A client (pygls' LanguageClient) starts `python -m codefill lsp` over stdio, opens FILE, and plays the engine's typing
session (`codefill.eval.benchmark.typing_session`, the same script `codefill bench latency` gives the engine
directly): at sampled lines the line is cleared back to its indentation ("new position" request), then typed a few
characters at a time, each edit sent as an incremental `textDocument/didChange` followed by an automatic
`textDocument/inlineCompletion`. It measures from sending the request to receiving the answer, so the figures include
JSON-RPC, position conversion and the worker hand-off on top of the engine. Printed, not asserted.

    python bench/lsp_latency.py /usr/lib/python3.11/argparse.py --lines 20 --every 3 --threads 2

Quality of what is shown: a suggestion counts as right when its first line is the rest of the file's real line (what
the person was about to type). `--gate-threshold` / `--adaptive-samples` set the confidence gate; compare a run with
`--gate-threshold 0 --adaptive-samples 0` (everything shown) to see what the gate hides and what adaptive samples add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from codefill.eval.benchmark import typing_session
from codefill.eval.metrics import percentile


def utf16_position(text: str, offset: int) -> types.Position:
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return types.Position(line=line, character=len(text[start:offset].encode("utf-16-le")) // 2)


def change_between(old: str, new: str) -> types.TextDocumentContentChangePartial:
    """One incremental change turning `old` into `new` (common prefix and suffix kept)."""
    n = min(len(old), len(new))
    a = 0
    while a < n and old[a] == new[a]:
        a += 1
    b = 0
    while b < n - a and old[len(old) - 1 - b] == new[len(new) - 1 - b]:
        b += 1
    return types.TextDocumentContentChangePartial(
        range=types.Range(start=utf16_position(old, a), end=utf16_position(old, len(old) - b)),
        text=new[a : len(new) - b],
    )


async def run(args) -> dict:
    with open(args.file, encoding="utf-8") as fh:
        text = fh.read()
    path = os.path.abspath(args.file)
    uri = "file://" + path
    options = {"threads": args.threads, "model": args.model, "snippets": 0, "stats": False}
    if args.time_budget is not None:
        options["timeBudgetMs"] = None if args.time_budget <= 0 else args.time_budget
    if args.gate_threshold is not None:
        options["gateThreshold"] = args.gate_threshold
    if args.adaptive_samples is not None:
        options["adaptiveSamples"] = args.adaptive_samples
    options = {k: v for k, v in options.items() if v is not None}

    client = LanguageClient("codefill-bench", "0")
    logs: list[str] = []

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def _log(params: types.LogMessageParams) -> None:
        logs.append(params.message)

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def _show(params: types.ShowMessageParams) -> None:
        print(f"server: {params.message}", file=sys.stderr)
    await client.start_io(sys.executable, "-m", "codefill", "lsp")
    await client.initialize_async(types.InitializeParams(capabilities=types.ClientCapabilities(),
                                                         initialization_options=options))
    client.initialized(types.InitializedParams())

    def request(uri: str, pos: types.Position):
        return client.text_document_inline_completion_async(types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=pos,
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic)))

    # Warm-up on another document: the model loads, nothing is timed.
    warm_uri = "file:///codefill-bench/warmup.py"
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=warm_uri, language_id="python", version=1, text="def f():\n    return \n")))
    t0 = time.perf_counter()
    await request(warm_uri, types.Position(1, 11))
    load_ms = (time.perf_counter() - t0) * 1000
    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(warm_uri)))

    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=text)))
    current, version = text, 1
    new_ms: list[float] = []
    typing_ms: list[float] = []
    empty = right = 0
    original = text.split("\n")
    steps = list(typing_session(text, args.lines, args.every, args.seed))
    start = time.perf_counter()
    for step in steps:
        if step.text != current:
            version += 1
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change_between(current, step.text)]))
            current = step.text
        line = current.split("\n")[step.line]
        pos = types.Position(step.line, len(line[: step.character].encode("utf-16-le")) // 2)
        t0 = time.perf_counter()
        res = await request(uri, pos)
        ms = (time.perf_counter() - t0) * 1000
        (new_ms if step.kind == "new" else typing_ms).append(ms)
        shown = res.items[0].insert_text if res and res.items else ""
        empty += not shown
        rest = original[step.line][step.character:]
        right += bool(shown.strip()) and shown.split("\n")[0].rstrip() == rest.rstrip()
    wall = time.perf_counter() - start
    await client.shutdown_async(None)
    client.exit(None)
    await client.stop()
    return {
        "file": args.file,
        "requests": len(steps),
        "empty_answers": empty,
        "shown": len(steps) - empty,
        "shown_right": right,  # first line of the suggestion = the rest of the real line
        "precision": round(right / max(1, len(steps) - empty), 3),
        "first_request_with_model_load_ms": round(load_ms, 1),
        "new_position_p50_ms": round(percentile(new_ms, 50), 1),
        "new_position_p95_ms": round(percentile(new_ms, 95), 1),
        "typing_p50_ms": round(percentile(typing_ms, 50), 1),
        "typing_p95_ms": round(percentile(typing_ms, 95), 1),
        "session_s": round(wall, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="a real source file (UTF-8)")
    p.add_argument("--lines", type=int, default=20, help="sampled lines (default 20)")
    p.add_argument("--every", type=int, default=3, help="characters typed between requests (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="model threads (default: the engine's)")
    p.add_argument("--model", default=None)
    p.add_argument("--time-budget", type=float, default=None, help="ms of decoding per completion; 0: none "
                   "(default: the engine's)")
    p.add_argument("--gate-threshold", type=float, default=None, help="the server's gateThreshold (0: show all)")
    p.add_argument("--adaptive-samples", type=int, default=None, help="the server's adaptiveSamples (0: never)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    args = p.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
        return
    print(f"through the language server: {out['file']}")
    for k, v in out.items():
        if k != "file":
            print(f"  {k:36} {v}")


if __name__ == "__main__":
    main()
