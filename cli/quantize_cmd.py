"""`codefill quantize`: a thin adapter over codefill.quantize.pipeline (progress bars, options, a summary table)."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

import typer


@contextmanager
def _stage_bars(enabled: bool):
    """One rich progress bar per stage on stderr; yields a (stage, fraction) callback."""
    if not enabled:
        yield lambda _s, _f: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<20}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                  TimeElapsedColumn(), console=Console(stderr=True)) as prog:
        tasks: dict[str, int] = {}

        def cb(stage: str, fraction: float) -> None:
            if stage not in tasks:
                tasks[stage] = prog.add_task(stage, total=1.0)
            prog.update(tasks[stage], completed=min(max(fraction, 0.0), 1.0))

        yield cb


def quantize(
    source: str = typer.Argument(..., help="Hugging Face repo id, local Hugging Face model directory, or F16/BF16/F32 GGUF."),
    out: str = typer.Option(..., "--out", "-o", help="Output directory (GGUF files, imatrix.gguf, report.json, REPORT.md, plot)."),
    types: str = typer.Option("Q8_0,Q6_K,Q5_K_M,Q4_K_M,Q3_K_M", "--types", help="llama.cpp mixes to write, comma-separated ('' for none)."),
    target_size: str = typer.Option(None, "--target-size", help="Also write a mixed recipe at or below this size (e.g. 90MB, 105454144)."),
    calibration: list[str] = typer.Option(None, "--calibration", help="Calibration files or directories (default: this Python's standard library)."),
    out_type: str = typer.Option("F16", "--outtype", help="Type of the converted reference: F16, BF16 or F32."),
    eval_chunks: int = typer.Option(16, "--eval-chunks", help="Held-out chunks of 512 tokens to evaluate (0 = all 95)."),
    eval_lines: int = typer.Option(16, "--eval-lines", help="Held-out lines for the line-completion exact match."),
    imatrix_chunks: int = typer.Option(60, "--imatrix-chunks", help="Calibration chunks of 512 tokens for the importance matrix."),
    compare_stock: bool = typer.Option(False, "--compare-stock", help="Also write each mix without the importance matrix (llama.cpp's default)."),
    no_grid: bool = typer.Option(False, "--exclude-grid-aligned", help="Mixed recipe may not use Q4_1/Q5_1 (see REPORT.md)."),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip evaluation and report."),
    threads: int = typer.Option(None, "--threads", "-t", help="CPU threads."),
) -> None:
    """Convert, calibrate, quantize and evaluate a model into calibrated GGUF files with a report.

    Example: codefill quantize Qwen/Qwen2.5-Coder-0.5B --out models/qwen-coder --types Q8_0,Q4_K_M --target-size 400MB
    """
    from codefill.quantize.pipeline import Options, parse_size, run  # the quantizer loads only for this command

    opts = Options(
        source=source, out_dir=out,
        types=[t.strip() for t in types.split(",") if t.strip()],
        target_size=parse_size(target_size) if target_size else None,
        calibration=list(calibration) if calibration else None,
        out_type=out_type.upper(), imatrix_chunks=imatrix_chunks,
        eval_chunks=None if eval_chunks == 0 else eval_chunks, eval_lines=eval_lines,
        compare_stock=compare_stock, exclude_grid_aligned=no_grid, evaluate=not no_eval, n_threads=threads,
    )
    show = sys.stderr.isatty() and not os.environ.get("CODEFILL_NO_PROGRESS")
    with _stage_bars(show) as cb:
        result = run(opts, progress=cb)
    typer.echo(f"reference: {result.reference}")
    typer.echo(f"importance matrix: {result.imatrix}")
    for label, path in result.files.items():
        typer.echo(f"{label}: {path} ({os.path.getsize(path):,} bytes)")
    if result.report_md:
        typer.echo(f"report: {result.report_md}")


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)
