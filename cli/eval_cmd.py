"""`codefill eval`: execution-scored HumanEval infilling and completion on real code."""

from __future__ import annotations

import json

import typer

from .common import load_engine

eval_app = typer.Typer(help="Measure completion quality.", no_args_is_help=True)


def _progress(description: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True))


def _print(report, out_dir, title, as_json):
    from codefill.engine.evaluation.report import summary_table, write

    jpath, mpath = write(report, out_dir, title)
    if as_json:
        typer.echo(json.dumps({"summary": report.summary, "results": jpath}))
    else:
        typer.echo(summary_table(report.summary))
        typer.echo(f"\nresults: {jpath}\n         {mpath}")


@eval_app.command("humaneval")
def humaneval(
    mode: str = typer.Option("single-line", "--mode", help="single-line | multi-line | random-span"),
    limit: int = typer.Option(None, "--limit", help="Evaluate a seeded sample of N tasks."),
    samples: int = typer.Option(1, "--samples", "-k", help="Completions per task (pass@k for k ≤ K)."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 with one sample = greedy; K>1 defaults to 0.8."),
    completion_mode: str = typer.Option("auto", "--completion-mode", help="What the engine is asked: auto | line | block."),
    model: str = typer.Option(None, "--model", "-m"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(None, "--workers", help="Test programs run at once."),
    timeout: float = typer.Option(10.0, "--timeout", help="Seconds per test program."),
    threads: int = typer.Option(None, "--threads", "-t"),
    out: str = typer.Option(None, "--out", help="Results directory (default runs/eval-humaneval-<time>)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """HumanEval infilling (Bavarian et al. 2022) scored by running HumanEval's tests.

    Example: codefill eval humaneval --mode single-line --limit 150 --seed 0
    """
    from codefill.engine.evaluation.humaneval import MODES, build_tasks, sample_tasks
    from codefill.engine.evaluation.report import default_out_dir
    from codefill.engine.evaluation.runner import evaluate

    if mode not in MODES:
        raise typer.BadParameter(f"--mode must be one of {', '.join(MODES)}")
    tasks = sample_tasks(build_tasks(mode, seed), limit, seed)
    engine = load_engine(model, threads=threads)
    with _progress(f"humaneval {mode}") as prog:
        task = prog.add_task("", total=len(tasks))
        report = evaluate(
            engine, tasks, samples=samples, temperature=temperature, seed=seed, completion_mode=completion_mode,
            workers=workers, timeout=timeout, progress=lambda n, total: prog.update(task, completed=n, total=total),
        )
    report.meta.update(benchmark="humaneval", mode=mode, limit=limit)
    _print(report, out or default_out_dir(f"humaneval-{mode}"), f"HumanEval {mode}", as_json)


@eval_app.command("repo")
def repo(
    directory: str = typer.Argument(..., help="A directory of source code."),
    limit: int = typer.Option(200, "--limit", help="Number of holes."),
    model: str = typer.Option(None, "--model", "-m"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(None, "--threads", "-t"),
    out: str = typer.Option(None, "--out"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Line and block holes in real code, scored by exact match and edit similarity.

    Example: codefill eval repo ~/src/myproject --limit 200
    """
    import os

    from codefill.engine.errors import InputFileError
    from codefill.engine.evaluation.repo import build_repo_tasks
    from codefill.engine.evaluation.report import default_out_dir
    from codefill.engine.evaluation.runner import evaluate

    if not os.path.isdir(directory):
        raise InputFileError(f"not a directory: {directory}")
    tasks = build_repo_tasks(directory, limit, seed)
    if not tasks:
        raise InputFileError(f"no source files with completable lines under {directory}")
    engine = load_engine(model, threads=threads)
    with _progress("repo") as prog:
        task = prog.add_task("", total=len(tasks))
        report = evaluate(engine, tasks, seed=seed, execute=False,
                          progress=lambda n, total: prog.update(task, completed=n))
    for kind in ("line", "block"):
        recs = [r for r in report.records if r.mode == kind]
        if recs:
            report.summary[f"{kind}_exact_match"] = round(sum(r.samples[0].exact for r in recs) / len(recs), 4)
            report.summary[f"{kind}_edit_similarity"] = round(sum(r.samples[0].edit_sim for r in recs) / len(recs), 4)
    report.meta.update(benchmark="repo", directory=os.path.abspath(directory), limit=limit)
    _print(report, out or default_out_dir("repo"), f"Completion on {directory}", as_json)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
