"""`codefill eval`: execution-scored HumanEval infilling and completion on real code.

A thin adapter over `codefill.eval` (tasks, runner, report, coverage); everything it measures is reachable from
Python too.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager

import typer

from codefill.engine.config import MAX_TOKENS
from codefill.engine.errors import InputFileError

from .common import load_engine, log_progress

eval_app = typer.Typer(help="Measure completion quality (HumanEval infilling, holes in your own code).",
                       no_args_is_help=True)


@contextmanager
def _progress(description: str, total: int):
    """A progress bar on stderr (completions, then test programs); off with CODEFILL_NO_PROGRESS=1."""
    if os.environ.get("CODEFILL_NO_PROGRESS"):
        yield lambda done, n: None
        return
    if not sys.stderr.isatty():  # a log file or CI: rich draws nothing there until the end, so plain lines
        yield log_progress(description)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True)) as prog:
        task = prog.add_task("", total=total)
        yield lambda done, n: prog.update(task, completed=done, total=n)


def _finish(report, out_dir: str, title: str, as_json: bool) -> None:
    from codefill.eval.report import summary_table, write  # here, not at the top: keeps `codefill --help` fast

    jpath, mpath = write(report, out_dir, title)
    if as_json:
        typer.echo(json.dumps({"summary": report.summary, "results": jpath, "markdown": mpath}))
    else:
        typer.echo(f"\n{title}\n")
        typer.echo(summary_table(report.summary))
        typer.echo(f"\nresults: {jpath}\n         {mpath}")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise typer.BadParameter(f"{name} must be one of {', '.join(choices)} (got {value!r})")


@eval_app.command("humaneval")
def humaneval(
    mode: str = typer.Option("single-line", "--mode", help="single-line (1033 tasks) | multi-line (5815) | random-span (1640)."),
    limit: int = typer.Option(None, "--limit", "-l", min=1, help="Evaluate a seeded sample of N tasks (default: all)."),
    samples: str = typer.Option("1", "--samples", "-k",
                                help="Completions per task K; pass@k is reported for k ≤ K. With --coverage a list: 1,2,4,8,16."),
    coverage: bool = typer.Option(False, "--coverage", help="Coverage@k for the listed k, the exp(a·k^b) fit and a PNG plot."),
    candidates: int = typer.Option(1, "--candidates", "-n", min=1, max=64,
                                   help="One answer per task chosen among N candidates (greedy + N-1 samples from one "
                                        "prompt evaluation) by --select; its latency covers them all."),
    select: str = typer.Option(None, "--select",
                               help="How -n candidates are chosen: suffix (the text after the hole as evidence, "
                                    "prefix-only models; else auto) | auto | logprob | cluster | syntax | first. "
                                    "Default: suffix for line holes, auto for blocks."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 with one sample: greedy. With K>1, 0 means 0.8."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling (with K>1 and temperature 0: 0.95)."),
    completion_mode: str = typer.Option("task", "--completion-mode",
                                        help="The editor's mode setting: task (line for single-line, block for "
                                             "multi-line, auto for random spans) | auto | line | block."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, max=MAX_TOKENS, help="Per completion (default: the engine's)."),
    model: str = typer.Option(None, "--model", "-m", help="GGUF file (default: the embedded model)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the task sample, the random spans and sampling."),
    workers: int = typer.Option(None, "--workers", min=1, help="Test programs run at once (default: min(4, cores))."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per test program."),
    threads: int = typer.Option(None, "--threads", "-t", min=1,
                                help="Model threads (default: one per core; use 1 on a busy machine)."),
    out: str = typer.Option(None, "--out", help="Results directory (default: runs/eval-humaneval-<mode>-<time>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """HumanEval infilling (Bavarian et al. 2022), completed as the editor asks, scored by HumanEval's tests.

    Prints pass@1 (pass@k for k ≤ K with --samples K), exact match, edit similarity and latency p50/p95; writes
    results.json (every task, the model's sha256, the engine settings, the codefill version, the seed) and
    results.md to the results directory.

    Example: codefill eval humaneval --mode single-line --limit 150 --seed 0 --threads 1
    Example: codefill eval humaneval --mode single-line --limit 150 --seed 0 --threads 1 -n 4 --select suffix
    """
    # Imported here, not at the top: the harness would slow down every `codefill --help`.
    from codefill.eval.coverage import format_study, parse_ks, study_from_records
    from codefill.eval.humaneval import MODES, build_tasks, sample_tasks
    from codefill.eval.report import default_out_dir
    from codefill.engine.selection import ALIASES, METHODS
    from codefill.eval.runner import COMPLETION_MODES, evaluate

    _check_choice("--mode", mode, MODES)
    _check_choice("--completion-mode", completion_mode, COMPLETION_MODES)
    if select is not None:
        _check_choice("--select", select, METHODS + tuple(ALIASES))
    try:
        ks = parse_ks(samples)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    # One K is K samples per task (pass@k for k ≤ K); only a list of counts asks for a coverage study.
    if "," in samples and not coverage:
        raise typer.BadParameter("a list of sample counts needs --coverage")
    samples_n = max(ks)
    if candidates > 1 and samples_n > 1:
        raise typer.BadParameter("--candidates chooses one answer per task: use it with --samples 1")
    tasks = sample_tasks(build_tasks(mode, seed), limit, seed)
    width = max(samples_n, candidates)
    engine = load_engine(model, threads=threads, n_seq=min(width, 16) if width > 1 else None)
    try:
        with _progress(f"humaneval {mode}", len(tasks) * (1 + samples_n)) as cb:
            report = evaluate(
                engine, tasks, samples=samples_n, temperature=temperature, top_p=top_p, seed=seed,
                completion_mode=completion_mode, max_tokens=max_tokens, workers=workers, timeout=timeout,
                progress=cb, candidates=candidates, select=ALIASES.get(select, select) if select else None,
            )
    finally:
        engine.close()
    report.meta.update(benchmark="humaneval", mode=mode, limit=limit, command=_command())
    out_dir = out or default_out_dir(f"humaneval-{mode}")
    study = None
    if coverage:
        os.makedirs(out_dir, exist_ok=True)
        study = study_from_records(report.records, ks, os.path.join(out_dir, "coverage.png"))
        report.summary["coverage"] = study
    _finish(report, out_dir, f"HumanEval {mode}", as_json)
    if study is not None and not as_json:
        typer.echo(format_study(study))


@eval_app.command("repo")
def repo(
    directory: str = typer.Argument(..., help="A directory of source code."),
    limit: int = typer.Option(200, "--limit", "-l", min=1, help="Number of holes (half lines, half blocks)."),
    completion_mode: str = typer.Option("task", "--completion-mode",
                                        help="task (line holes: line, block holes: block) | auto | line | block."),
    model: str = typer.Option(None, "--model", "-m", help="GGUF file (default: the embedded model)."),
    seed: int = typer.Option(0, "--seed", help="Picks the holes."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, help="Model threads (default: one per core)."),
    out: str = typer.Option(None, "--out", help="Results directory (default: runs/eval-repo-<time>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Line and block holes at seeded places in the code under DIRECTORY, scored by exact match and edit similarity.

    Example: codefill eval repo ~/src/myproject --limit 200 --threads 1
    """
    # Imported here, not at the top: the harness would slow down every `codefill --help`.
    from codefill.eval.repo import build_repo_tasks
    from codefill.eval.report import default_out_dir
    from codefill.eval.runner import COMPLETION_MODES, evaluate

    _check_choice("--completion-mode", completion_mode, COMPLETION_MODES)
    if not os.path.isdir(directory):
        raise InputFileError(f"not a directory: {directory}")
    tasks = build_repo_tasks(directory, limit, seed)
    if not tasks:
        raise InputFileError(f"no source files with completable lines under {directory}")
    engine = load_engine(model, threads=threads)
    try:
        with _progress("repo", len(tasks)) as cb:
            report = evaluate(engine, tasks, seed=seed, completion_mode=completion_mode, execute=False, progress=cb)
    finally:
        engine.close()
    report.meta.update(benchmark="repo", directory=os.path.abspath(directory), limit=limit, command=_command())
    _finish(report, out or default_out_dir("repo"), f"Completion on {directory}", as_json)


def _command() -> str:
    return " ".join(["codefill", *sys.argv[1:]])


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
