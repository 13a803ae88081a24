"""`codefill bench`: speed figures, printed (never asserted by tests)."""

from __future__ import annotations

import json
import os

import typer

from codefill.engine import read_source_file
from codefill.engine.config import MAX_THREADS

from .common import load_engine

bench_app = typer.Typer(help="Benchmarks that print figures.", no_args_is_help=True)


@bench_app.command("latency")
def latency(
    file: str = typer.Argument(..., help="A real source file to 'type'."),
    model: str = typer.Option(None, "--model", "-m"),
    lines: int = typer.Option(20, "--lines", help="How many lines to type."),
    every: int = typer.Option(3, "--every", help="Request a completion every N typed characters."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A person writing FILE: p50/p95 latency at a new position and while typing, tokens/s, peak RSS.

    Example: codefill bench latency /usr/lib/python3.11/json/decoder.py --lines 20
    """
    from rich.progress import Progress

    from codefill.eval.benchmark import run_latency  # here, not at the top: keeps `codefill --help` fast

    text = read_source_file(file)
    engine = load_engine(model, threads=threads)
    with Progress(transient=True) as prog:
        task = prog.add_task("typing", total=None)
        rep = run_latency(
            engine, text, os.path.abspath(file), n_lines=lines, every=every, seed=seed,
            progress=lambda n, total: prog.update(task, completed=n, total=total),
        )
    s = rep.summary()
    s.update(model=engine.model_name, threads=engine.backend.n_threads, file=file, lines=lines, every=every)
    if as_json:
        typer.echo(json.dumps(s))
        return
    typer.echo(f"model {s['model']}, {s['threads']} threads, {file}: {lines} lines, a request every {every} chars")
    typer.echo(f"  requests                {s['requests']}")
    typer.echo(f"  new position   p50/p95  {s['new_position_p50_ms']:.0f} / {s['new_position_p95_ms']:.0f} ms")
    typer.echo(f"  while typing   p50/p95  {s['typing_p50_ms']:.0f} / {s['typing_p95_ms']:.0f} ms")
    typer.echo(f"  prompt                  {s['prompt_tokens_per_s']:.0f} tokens/s "
               f"({s['prompt_tokens_evaluated']} evaluated, {s['prompt_tokens_reused']} reused)")
    typer.echo(f"  decode                  {s['decode_tokens_per_s']:.0f} tokens/s")
    typer.echo(f"  answered from cache     {s['cache_hits']}")
    typer.echo(f"  peak RSS                {s['peak_rss_mb']:.0f} MB")


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
