"""`codefill complete`: a completion at a file position, from the terminal."""

from __future__ import annotations

import json
import sys

import typer

from codefill.engine import CompletionRequest, read_source_file

from .common import load_engine, parse_location


def complete(
    location: str = typer.Argument(..., metavar="FILE:LINE[:COL]", help="1-based position; COL defaults to the end of the line."),
    model: str = typer.Option(None, "--model", "-m", help="GGUF file (default: configured model, else the embedded one)."),
    as_json: bool = typer.Option(False, "--json", help="Print text, replace range, stop reason, timings as JSON."),
    mode: str = typer.Option("auto", help="auto | line | block"),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Tokens to generate at most (default 128)."),
    time_budget_ms: float = typer.Option(None, "--time-budget", help="Stop decoding after this many ms (default 1500; 0 = none)."),
    threads: int = typer.Option(None, "--threads", "-t", help="CPU threads (default: one per performance core)."),
    ctx: int = typer.Option(None, "--ctx", help="Context size in tokens (default 4096)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy, deterministic."),
    seed: int = typer.Option(0, "--seed"),
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
    engine = load_engine(model, threads=threads, ctx=ctx)
    budget = -1.0 if time_budget_ms is None else (None if time_budget_ms <= 0 else time_budget_ms)
    result = engine.complete(
        CompletionRequest(
            text=text, line=line, character=col, path=path, mode=mode, max_tokens=max_tokens,
            time_budget_ms=budget, temperature=temperature, seed=seed,
        )
    )
    if as_json:
        out = result.to_dict()
        out["family"] = engine.family
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(result.text + ("\n" if result.text else ""))


def register(app: typer.Typer) -> None:
    app.command("complete")(complete)
