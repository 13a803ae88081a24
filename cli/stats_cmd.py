"""`codefill stats`: acceptance statistics the language server recorded on this machine (lsp/stats.py writes them,
codefill.eval.acceptance reads them)."""

from __future__ import annotations

import json
import os
import sys

import typer

from codefill.engine.errors import CodefillError, InputFileError


def stats(
    since: str = typer.Option(None, "--since", help="Only the last 30m, 12h, 7d, 2w … (default: everything recorded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    plot: str = typer.Option(None, "--plot", metavar="FILE.png", help="Write a PNG of the acceptance rate over time."),
    refit_gate: str = typer.Option(None, "--refit-gate", metavar="FILE",
                                   help="Fit a gate file (for the gateFile setting) on your own shown and accepted "
                                        "suggestions and write it to FILE. Needs at least 200 recorded suggestions "
                                        "of one model, 30 of them accepted and 30 not."),
    file: str = typer.Option(None, "--file", help="Read this stats file (default: the language server's, "
                                                  "$CODEFILL_STATE_DIR or $XDG_STATE_HOME/codefill/stats.jsonl)."),
) -> None:
    """Acceptance rate of the suggestions the language server showed, how much of the accepted text was still there
    30 s and 2 min later, and latency p50/p95: overall, by language, by model and by trigger kind.

    The records stay on this machine (the setting `stats: false` stops them). With --refit-gate, a confidence gate
    is fitted on them, labelled by what you accepted, and written in the format of the gateFile setting.

    Example: codefill stats --since 7d --plot acceptance.png
    """
    from codefill.eval import acceptance as A  # here, not at the top: keeps `codefill --help` fast
    from codefill.engine.paths import stats_files, stats_path

    path = file or stats_path()
    try:
        cutoff = A.parse_since(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    try:
        records = A.read(stats_files(path), cutoff)
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not len(records):
        if records.bad_lines:
            raise InputFileError(f"{path}: no readable records ({records.bad_lines} unreadable lines); "
                                 "it is not a codefill stats file, or it is damaged")
        where = "" if cutoff is None else f" in the last {since}"
        typer.echo(f"codefill: no acceptance statistics{where} in {path} (the language server records them while "
                   "you use it, unless the setting stats is false)")
        return
    if records.bad_lines and not as_json:
        typer.echo(f"codefill: {records.bad_lines} unreadable lines in {path} skipped", err=True)
    if refit_gate:
        _refit(records, refit_gate, as_json)
        return
    summary = A.summarize(records)
    summary["file"] = path
    if plot:
        try:
            A.plot_acceptance(records, plot)
        except OSError as exc:
            raise InputFileError(f"cannot write {plot}: {exc.strerror or exc}") from None
        summary["plot"] = plot
    if as_json:
        typer.echo(json.dumps(summary, indent=1))
    else:
        typer.echo(A.format_summary(summary, path))
        if plot:
            typer.echo(f"plot: {plot}")


def _refit(records, out: str, as_json: bool) -> None:
    from codefill.eval import acceptance as A

    try:
        gate, info = A.refit_gate(records, command=" ".join(["codefill", *sys.argv[1:]]))
    except A.NotEnoughEvents as exc:
        raise CodefillError(str(exc)) from None
    except ValueError as exc:  # the fit itself (e.g. a singular design): say so, no traceback
        raise CodefillError(f"cannot fit a gate on these records: {exc}") from None
    try:
        gate.save(out)
    except OSError as exc:
        raise InputFileError(f"cannot write {out}: {exc.strerror or exc}") from None
    info["file"] = os.path.abspath(out)
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    others = f" ({info['other_models']} suggestions of other models left out)" if info["other_models"] else ""
    typer.echo(f"gate written to {out}: fitted on {info['suggestions']} suggestions shown ({info['accepted']} "
               f"accepted) of {info['model']}{others}; threshold {info['threshold']:.3f} keeps "
               f"{int(A.RECALL * 100)}% of the accepted ones (in-sample AUROC {info['auroc_in_sample']:.3f})")
    typer.echo(f'use it with the language server setting "gateFile": "{info["file"]}"')


def register(app: typer.Typer) -> None:
    app.command("stats")(stats)
