"""`codefill complete`: a completion at a file position, from the terminal."""

from __future__ import annotations

import json
import sys
import time

import typer

from codefill.engine import DEFAULT, CompletionRequest, read_source_file
from codefill.engine.config import MAX_CONTEXT, MAX_THREADS, MAX_TOKENS, MIN_CONTEXT
from codefill.engine.gate import Gate
from codefill.engine.selection import ALIASES, METHODS, default_method, mean_logprob

from .common import API_KEY_HELP, SERVER_HELP, SERVER_MODEL_HELP, load_engine, parse_location, server_settings


def complete(
    location: str = typer.Argument(..., metavar="FILE:LINE[:COL]", help="1-based position; COL defaults to the end of the line."),
    model: str = typer.Option(None, "--model", "-m", help="GGUF file (default: configured model, else the embedded one)."),
    as_json: bool = typer.Option(False, "--json", help="Print text, replace range, stop reason, timings and confidence as JSON."),
    mode: str = typer.Option("auto", help="auto | line | block"),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, max=MAX_TOKENS, help="Tokens to generate at most (default 128)."),
    time_budget_ms: float = typer.Option(None, "--time-budget", help="Stop decoding after this many ms (default 1000; 0 = none)."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS, help="CPU threads (default: cores-1 up to 4 cores, else half the logical cores)."),
    ctx: int = typer.Option(None, "--ctx", min=MIN_CONTEXT, max=MAX_CONTEXT, help="Context size in tokens (default 4096)."),
    prefix_tokens: int = typer.Option(None, "--prefix-tokens", min=32, help="Tokens of text before the cursor in the prompt (default 512 on a CPU, 2048 on a GPU); fewer answer sooner at a new position (bench/prompt_budget.py)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy, deterministic."),
    seed: int = typer.Option(0, "--seed"),
    samples: int = typer.Option(1, "--samples", "-n", min=1, max=64, help="Candidates from one shared prompt evaluation (greedy + N-1 sampled)."),
    select: str = typer.Option(None, "--select", help="How to choose among -n candidates: suffix (the text after the cursor as evidence, for models without FIM tokens; elsewhere auto) | auto | logprob | agreement (cluster) | syntax | first. Default: suffix for a line, auto for a block."),
    server: str = typer.Option(None, "--server", help=SERVER_HELP),
    server_model: str = typer.Option(None, "--server-model", help=SERVER_MODEL_HELP),
    api_key: str = typer.Option(None, "--api-key", help=API_KEY_HELP),
) -> None:
    """Complete FILE at LINE:COL and print the completion.

    Example: codefill complete src/app.py:42:17 --json
    """
    path, line, col = parse_location(location)
    text = read_source_file(path)
    if col < 0:
        lines = text.split("\n")
        col = len(lines[line].rstrip("\r")) if line < len(lines) else 0
    if mode not in ("auto", "line", "block"):
        raise typer.BadParameter("--mode must be auto, line or block")
    if samples < 1:
        raise typer.BadParameter("--samples must be at least 1")
    if select is not None and select not in METHODS and select not in ALIASES:
        raise typer.BadParameter(f"--select must be one of {', '.join(METHODS)}")
    engine = load_engine(model, threads=threads, ctx=ctx, n_seq=samples if samples > 1 else None,
                         prefix_tokens=prefix_tokens, server=server_settings(server, server_model, api_key))
    budget = DEFAULT if time_budget_ms is None else (None if time_budget_ms <= 0 else time_budget_ms)
    if samples > 1 and time_budget_ms is None:
        budget = None  # the default budget is one completion's; several candidates decode together
    req = CompletionRequest(
        text=text, line=line, character=col, path=path, mode=mode, max_tokens=max_tokens,
        time_budget_ms=budget, temperature=temperature, seed=seed,
    )
    gate = Gate.load()
    prepared = engine.prepare(req)
    extra = None
    if samples > 1:
        s = engine.sample(prepared, samples)
        t0 = time.perf_counter()
        select = ALIASES.get(select, select) if select else default_method(prepared.context.mode)
        ranked = engine.choose(prepared, s.candidates, select)
        choose_ms = (time.perf_counter() - t0) * 1000
        result = ranked[0].completion
        by_index = {c.index: c for c in ranked}  # (scored by the text after the cursor, for `suffix`)
        extra = {
            "selected": ranked[0].index,
            "select": select,
            # `suffix` where the engine cannot score (a FIM model, an inference server) ranks as `auto`
            "suffix_scored": any(c.suffix is not None for c in ranked),
            "candidates": [
                {"index": c.index, "text": c.text, "greedy": c.greedy, "stop_reason": c.completion.stop_reason,
                 "logprob_mean": round(mean_logprob(c), 4) if c.token_logprobs else None,
                 "suffix_logprob": None if by_index[c.index].suffix is None else round(by_index[c.index].suffix.suffix_logprob, 4),
                 "confidence": round(gate.score(c, s.context), 4), "decoded_tokens": c.decoded_tokens}
                for c in s.candidates
            ],
            "cost": s.timings.to_dict() | {"batches": s.batches, "candidates": len(s.candidates),
                                           "select_ms": round(choose_ms, 2)},
        }
    else:
        result = engine.complete(prepared)
    if as_json:
        out = result.to_dict()
        out["family"] = engine.family
        # The confidence gate's probability that the completion is right (what the language server hides by).
        out["confidence"] = round(gate.score(result, prepared.context), 4)
        if extra is not None:
            out.update(extra)
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(result.text + ("\n" if result.text else ""))


def register(app: typer.Typer) -> None:
    app.command("complete")(complete)
