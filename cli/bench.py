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
    lines: int = typer.Option(8, "--lines", help="How many lines to type."),
    think_ms: float = typer.Option(800.0, "--think-ms", min=0, help="The pause at each new place before typing."),
    cps: float = typer.Option(8.0, "--cps", min=0.5, max=50, help="Typing speed, characters per second."),
    warmup: bool = typer.Option(True, "--warmup/--no-warmup", help="Idle-time work (warm-up, next completion)."),
    ab: bool = typer.Option(False, "--ab", help="A/B in one run: idle-time work off and on, with --think-ms and 0."),
    every: int = typer.Option(None, "--every", help="The older script instead: no pauses, no accepts, a "
                              "request every N typed characters, one after the other."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A person writing FILE in real time: arrive at a line, pause, type it at --cps (a request per keystroke,
    superseding the last), Tab where the suggestion is what comes next. Prints the first answer after arriving, answers
    while typing and after an accept (p50/p95), decode tokens/s, draft acceptance, background tokens/min, peak RSS.

    Example: codefill bench latency /usr/lib/python3.11/textwrap.py --lines 8 --ab
    """
    from rich.progress import Progress

    # here, not at the top: keeps `codefill --help` fast
    from codefill.eval.benchmark import run_latency
    from codefill.eval.person import format_rows, run_person

    text = read_source_file(file)
    engine = load_engine(model, threads=threads)
    path = os.path.abspath(file)
    if every is not None:
        with Progress(transient=True) as prog:
            task = prog.add_task("typing", total=None)
            rep = run_latency(
                engine, text, path, n_lines=lines, every=every, seed=seed,
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
        return
    runs = [(warmup, think_ms)] if not ab else [(False, think_ms), (True, think_ms), (False, 0.0), (True, 0.0)]
    results = []
    with Progress(transient=True) as prog:
        for on, think in runs:
            task = prog.add_task(f"idle-time work {'on' if on else 'off'}, pause {think:.0f} ms", total=None)
            engine.reset()  # every run starts with nothing cached
            rep = run_person(engine, text, path, n_lines=lines, think_ms=think, cps=cps, warmup=on, seed=seed,
                             progress=lambda n, total, task=task: prog.update(task, completed=n, total=total))
            s = rep.summary()
            s.update(warmup=on, think_ms=think)
            results.append(s)
    head = dict(model=engine.model_name, threads=engine.backend.n_threads, file=file, lines=lines, cps=cps,
                speculative=bool(getattr(engine.backend, "speculative", False)))
    if as_json:
        typer.echo(json.dumps({**head, "runs": results}))
        return
    typer.echo(f"model {head['model']}, {head['threads']} threads (drafts {'on' if head['speculative'] else 'off'}), "
               f"{file}: {lines} lines at {cps:g} chars/s")
    for row in format_rows(results):
        typer.echo("  " + row)


@bench_app.command("team")
def team(
    files: list[str] = typer.Argument(..., help="Real source files the people type (person p types file p mod count)."),
    server: str = typer.Option(None, "--server", help="The inference server (llama-server: http://host:8080); "
                               "also CODEFILL_SERVER or `server` in the config file."),
    server_model: str = typer.Option(None, "--server-model", help="Model name for an OpenAI-compatible server."),
    api_key: str = typer.Option(None, "--api-key", help="Bearer key for the server (better: CODEFILL_API_KEY; "
                                "never printed)."),
    model: str = typer.Option(None, "--model", "-m", help="The served model's GGUF, for exact local tokenization "
                              "(default: none, the server's /tokenize, one more HTTP call per tokenization)."),
    editors: str = typer.Option("1,4,8,16", "--editors", help="Numbers of people typing at once, a comma list."),
    lines: int = typer.Option(4, "--lines", min=1, help="Lines each person types, each from a fresh position."),
    cps: float = typer.Option(8.0, "--cps", min=0.1, help="Typing speed, characters per second."),
    seed: int = typer.Option(0, "--seed"),
    erase: bool = typer.Option(True, "--erase-slots/--no-erase-slots",
                               help="Erase the server's slots before each column (none starts from the other's KV)."),
    per_person: bool = typer.Option(False, "--per-person", help="Also print every person's figures."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """N people typing FILEs at a human cadence against one server: codefill clients vs raw llama.vim requests.

    Each person has its own codefill client; every keystroke is a request and supersedes the person's previous one.
    The same keystrokes then go out as llama.vim's /infill requests (every keystroke, cache_prompt). Printed per N:
    p50/p95 keystroke-to-answer latency, requests that reached the server vs keystrokes, answers shown, superseded,
    and the prompt tokens the server evaluated (from its /metrics). For fair columns start llama-server with
    --metrics (its own token count), --slot-save-path DIR (lets the benchmark erase the slots between columns) and
    --cache-ram 0 (no host prompt cache for a column to inherit).

    Example: codefill bench team --server http://127.0.0.1:8080 --editors 1,4 --lines 2 /usr/lib/python3.11/textwrap.py
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from codefill.engine.models import read_config
    from codefill.engine.remote import ServerSettings
    from codefill.eval.team import display_url, format_people, format_table, plan, run_team

    settings = ServerSettings.resolve(server, server_model, api_key, config=read_config())
    if settings is None:
        raise typer.BadParameter("no server: give --server URL (or set CODEFILL_SERVER)", param_hint="--server")
    try:
        counts = [int(x) for x in editors.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a comma list of numbers: {editors!r}", param_hint="--editors") from None
    try:
        texts = [(os.path.abspath(f), read_source_file(f)) for f in files]
        the_plan = plan(texts, counts, n_lines=lines, cps=cps, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    err = lambda msg: typer.echo(msg, err=True)
    err(f"team benchmark: N = {', '.join(map(str, counts))}; {lines} lines per person at {cps:g} chars/s, "
        f"files: {', '.join(files)}")
    for n in counts:
        err(f"  N={n:<3} {the_plan.keystrokes(n):>6} keystrokes per column, ~{the_plan.typing_s(n):.0f} s of typing")
    err(f"  in all: {the_plan.total_keystrokes} keystrokes (both columns), at least "
        f"{the_plan.total_typing_s / 60:.1f} min of typing, plus connecting and draining")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("starting", total=the_plan.total_keystrokes)
        runs, info = run_team(settings, the_plan, model=model, seed=seed, erase=erase,
                              progress=lambda n, total, label: prog.update(task, completed=n, total=total,
                                                                           description=label))
    out = {
        "server": display_url(settings.url), "files": files, "lines": lines, "cps": cps, "seed": seed, "model": model,
        **info, "runs": [r.summary() for r in runs],
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"server {display_url(settings.url)}: {lines} lines per person at {cps:g} chars/s, {len(files)} file(s)")
    typer.echo(f"  codefill column: one codefill client per person ({'local GGUF' if model else 'server'} "
               f"tokenizer); a superseded request is cancelled")
    typer.echo(f"  raw column:      {info['raw_route_detail']}")
    typer.echo("  prompt tokens:   " + ("the server's own count (/metrics prompt_tokens_total) over each column"
                                         if info["server_metrics"] else
                                         "≈ client estimates (start llama-server with --metrics for its own count)"))
    if info["slots_erased"] is False:
        typer.echo("  note:            the server's slots could not be erased between columns (llama-server needs"
                   " --slot-save-path DIR for that): a column may start from KV the one before left")
    typer.echo("")
    for row in format_table(runs):
        typer.echo(row)
    errors = [(r.editors, name, s["errors"], s.get("first_error")) for r in runs
              for name, s in (("codefill", r.codefill.summary()), ("raw", r.raw.summary())) if s.get("errors")]
    for n, name, k, first in errors:
        typer.echo(f"  N={n} {name}: {k} errors, first: {first}")
    if per_person:
        typer.echo("")
        for row in format_people(runs):
            typer.echo(row)


@bench_app.command("soak")
def soak(
    files: list[str] = typer.Argument(None, help="Real source files to edit (default: three small stdlib modules, "
                                      "the two largest and the stdlib's top-level modules in one file, 4.7 MB on 3.11)."),
    minutes: float = typer.Option(30.0, "--minutes", min=0.05, help="How long to type."),
    window: float = typer.Option(5.0, "--window", min=0.05, help="Minutes per row of the table."),
    model: str = typer.Option(None, "--model", "-m"),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS),
    cps: float = typer.Option(10.0, "--cps", min=0.5, max=50, help="Typing speed, characters per second."),
    max_open: int = typer.Option(3, "--max-open", min=1, help="Documents open at once (the oldest is closed)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Type for --minutes through the language server (`codefill lsp` over stdio, as an editor starts it) across
    small and large documents, opening and closing them; print per --window: requests, answers, cancels, errors,
    latency p50/p95 and the server's RSS, as read at the window's end and with every document closed after it (the
    client closes them all, then reopens as it goes on). The goal: no errors, the closed RSS flat within 5% after the
    first window.

    Example: codefill bench soak --minutes 30 --window 5
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from codefill.eval.soak import format_soak
    from codefill.eval.soak import soak as run

    for f in files or []:
        read_source_file(f)  # a clear error for a missing, binary or huge file before the server starts
    with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("soak: starting the server", total=minutes * 60)

        def progress(elapsed, total, w):
            prog.update(task, completed=min(elapsed, total),
                        description=f"soak: {w.requests} requests, {w.errors} errors this window, "
                                    f"RSS {w.rss_mb or 0:.0f} MB")

        result = run(files or None, minutes=minutes, window_minutes=window, threads=threads, model=model, cps=cps,
                     max_open=max_open, seed=seed, progress=progress)
    if as_json:
        typer.echo(json.dumps(result))
        return
    s = result["summary"]
    typer.echo(f"soak through the language server: {s['documents']} documents "
               f"({', '.join(f'{c / 1e3:.0f}K' for c in s['document_chars'])} chars), {cps:g} chars/s, "
               f"at most {max_open} open")
    for row in format_soak(result):
        typer.echo("  " + row)


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
