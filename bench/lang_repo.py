"""Completion on real third-party code in other languages (issue 15 #4): `codefill eval repo` per language.

For each language, the sources bench/lang_sources.py installs (Debian and npm packages, one folder per language
holding only that language's files), then exactly what `codefill eval repo DIR --limit N --seed S --threads T` does
(the same holes, `build_repo_tasks`; the same requests and scores, `runner.evaluate` without execution), with the
model loaded once for all languages. Prints, per language, line and block exact match and edit similarity, hole
counts, latency p50 and stop reasons, and reads the misses by category:

- empty: nothing inserted;
- indentation: right once each line's leading whitespace is ignored;
- stops early / stops late: the lines are a proper prefix of the target's, or the target's of them;
- repeats suffix: a line of it is the first line after the hole;
- unbalanced braces: its `{}`/`()`/`[]` balance differs from the target's;
- other: wrong code.

    python bench/lang_repo.py --limit 60 --threads 1 --md /tmp/languages.md
    python bench/lang_repo.py --lang go,c --limit 30 --threads 1 --misses 5   # and show 5 misses per category

Greedy and without a time budget, so the quality figures are deterministic (same model, code and seed: same
figures, however busy the machine); latencies are not: they depend on the load.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lang_sources  # noqa: E402  (bench/lang_sources.py)

CATEGORIES = ("empty", "indentation", "stops early", "stops late", "repeats suffix", "unbalanced braces", "other")


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.strip("\n").split("\n")]


def _line_key(line: str):
    from codefill.engine.context import is_closing_line

    st = line.strip()
    return st, (len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip()) if is_closing_line(st) else None)


def _balance(text: str) -> tuple[int, int, int]:
    return text.count("{") - text.count("}"), text.count("(") - text.count(")"), text.count("[") - text.count("]")


def category(inserted: str, task) -> str:
    """Why a completion that is not an exact match missed (see the module docstring)."""
    got, want = _lines(inserted), _lines(task.target)
    if not inserted.strip():
        return "empty"
    if got == want:
        return "indentation"
    if len(got) < len(want) and want[: len(got)] == got:
        return "stops early"
    if len(got) > len(want) and got[: len(want)] == want:
        return "stops late"
    # the line after the hole, repeated (a closing `}` only at its own indentation: an inner block's `}` is not it)
    nxt = next((ln for ln in task.suffix.split("\n")[1:] if ln.strip()), None)
    if nxt is not None and _line_key(nxt) in [_line_key(ln) for ln in (task.prefix.split("\n")[-1] + inserted).split("\n")]:
        return "repeats suffix"
    if _balance(inserted) != _balance(task.target):
        return "unbalanced braces"
    return "other"


def _figures(records: list[dict], kind: str) -> dict:
    ss = [r["samples"][0] for r in records if r["mode"] == kind]
    return {"holes": len(ss), "exact_match": round(sum(s["exact"] for s in ss) / len(ss), 4) if ss else 0.0,
            "edit_similarity": round(sum(s["edit_sim"] for s in ss) / len(ss), 4) if ss else 0.0}


def language_row(results: dict, tasks, show_misses: int = 0) -> dict:
    """A language's figures and misses by category from an eval report (`EvalReport.to_dict()`, or results.json)
    and its tasks."""
    meta, summ, records = results["meta"], results["summary"], results["records"]
    by_id = {t.task_id: t for t in tasks}
    misses: dict[str, Counter] = {"line": Counter(), "block": Counter()}
    examples: dict[str, list] = {}
    for rec in records:
        s = rec["samples"][0]
        if s["exact"]:
            continue
        task = by_id[rec["task_id"]]
        got = s["text"]  # what the engine answered (the runner scored what it put in the hole)
        cat = category(got, task)
        misses[rec["mode"]][cat] += 1
        examples.setdefault(cat, []).append((rec["task_id"], task.target, got, s["stop_reason"]))
    if show_misses:
        for cat in CATEGORIES:
            for task_id, target, got, reason in examples.get(cat, [])[:show_misses]:
                print(f"--- {meta['language']} [{cat}] {task_id} (stop: {reason})\n  want: {target!r}\n  got:  {got!r}",
                      file=sys.stderr)
    return {
        "language": meta["language"],
        "packages": meta["packages"],
        "command": meta["command"],
        **{f"{kind}_{key}": value for kind in ("line", "block") for key, value in _figures(records, kind).items()},
        "exact_match": summ["exact_match"], "edit_similarity": summ["edit_similarity"],
        "latency_p50_ms": summ["latency_p50_ms"], "latency_p95_ms": summ["latency_p95_ms"],
        "stop_reasons": summ["stop_reasons"],
        "misses": {k: dict(v) for k, v in misses.items()},
        "exact": {r["task_id"]: r["samples"][0]["exact"] for r in records},
        "texts": {r["task_id"]: r["samples"][0]["text"] for r in records},
    }


def run_language(engine, language: str, limit: int, seed: int, threads: int | None, out_root: str | None,
                 show_misses: int, root: str | None = None, cold: bool = False, only: set | None = None) -> dict:
    from codefill.eval.repo import build_repo_tasks
    from codefill.eval.report import write
    from codefill.eval.runner import evaluate

    root = root or lang_sources.ensure(language)
    packages = lang_sources.packages(language) if language in lang_sources.SOURCES else []
    tasks = build_repo_tasks(root, limit, seed)
    if only is not None:
        tasks = [t for t in tasks if f"{language}:{t.task_id}" in only]
    t0 = time.monotonic()

    if cold:
        engine.backend.clear()

    def progress(done: int, total: int) -> None:
        if cold:  # the next hole starts from an empty KV cache: its answer does not depend on the holes before it
            engine.backend.clear()
        print(f"\r{language}: {done}/{total} holes, {time.monotonic() - t0:.0f} s", end="", file=sys.stderr,
              flush=True)

    report = evaluate(engine, tasks, seed=seed, completion_mode="task", execute=False, progress=progress)
    print(file=sys.stderr)
    command = (f"codefill eval repo {root} --limit {limit} --seed {seed}"
               + (f" --threads {threads}" if threads else "")) if not (cold or only) else "(see the bench command)"
    report.meta.update(benchmark="repo", directory=root, limit=limit, command=command, language=language,
                       packages=packages, seed=seed)
    if out_root:
        write(report, os.path.join(out_root, language), f"Completion on {language} ({root})")
    return language_row(report.to_dict(), tasks, show_misses)


def table(row: dict) -> str:
    pk = ", ".join(f"{p['package']} {p['version']}" for p in row["packages"][:6]) or row["command"].split()[3]
    if len(row["packages"]) > 6:
        pk += f" and {len(row['packages']) - 6} more"
    lines = [
        f"### {row['language']}",
        "",
        f"Sources: {pk}" + (f" ({sum(int(p['files']) for p in row['packages'])} files, "
                            f"{sum(int(p['lines']) for p in row['packages']):,} lines)." if row["packages"] else "."),
        "",
        "| holes | count | exact match | edit similarity |",
        "|---|---|---|---|",
        f"| line | {row['line_holes']} | {row['line_exact_match']:.1%} | {row['line_edit_similarity']:.3f} |",
        f"| block | {row['block_holes']} | {row['block_exact_match']:.1%} | {row['block_edit_similarity']:.3f} |",
        f"| all | {row['line_holes'] + row['block_holes']} | {row['exact_match']:.1%} | {row['edit_similarity']:.3f} |",
        "",
        f"Latency p50 {row['latency_p50_ms'] / 1000:.2f} s, p95 {row['latency_p95_ms'] / 1000:.2f} s. "
        f"Stops: {', '.join(f'{k} {v}' for k, v in row['stop_reasons'].items())}. "
        "Misses: " + "; ".join(f"{mode}: " + (", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=lambda kv: -kv[1]))
                                              or "none")
                              for mode, c in row["misses"].items()) + ".",
        "",
        f"`{row['command']}`",
        "",
    ]
    return "\n".join(lines)


def compare(before: dict, after: dict) -> str:
    """A before → after table per language from two --json files (the same holes: same sources, limit and seed)."""
    rows = ["| language | line exact | line edit sim | block exact | block edit sim | holes now exact / no longer |",
            "|---|---|---|---|---|---|"]
    old = {r["language"]: r for r in before["rows"]}
    for r in after["rows"]:
        b = old.get(r["language"])
        if b is None:
            continue
        if set(b["exact"]) != set(r["exact"]):
            rows.append(f"| {r['language']} | (different holes: not comparable) | | | | |")
            continue
        gained = sum(1 for k, v in r["exact"].items() if v and not b["exact"][k])
        lost = sum(1 for k, v in r["exact"].items() if b["exact"][k] and not v)
        cells = [f"{b[k]:.1%} → {r[k]:.1%}" if "exact" in k else f"{b[k]:.3f} → {r[k]:.3f}"
                 for k in ("line_exact_match", "line_edit_similarity", "block_exact_match", "block_edit_similarity")]
        rows.append(f"| {r['language']} | " + " | ".join(cells) + f" | +{gained} / −{lost} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", default="javascript,typescript,go,rust,c",
                    help=f"comma-separated, of {', '.join(lang_sources.SOURCES)}")
    ap.add_argument("--limit", type=int, default=60, help="holes per language (half lines, half blocks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=None, help="results.json/results.md per language under this folder")
    ap.add_argument("--json", default=None, help="write the figures here too")
    ap.add_argument("--md", default=None, help="write the tables here")
    ap.add_argument("--python", default=None, metavar="DIR",
                    help="also Python, on this folder (e.g. /usr/lib/python3.11), to see what a change does there")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE.json", "AFTER.json"), default=None,
                    help="only print the before → after table of two --json files")
    ap.add_argument("--cold", action="store_true",
                    help="clear the KV cache before every hole: an answer then depends on its hole alone (codefill eval "
                         "repo reuses the cache from hole to hole, and prompt evaluation split at another place can "
                         "change a near-tie token: a change to one answer can change later, unrelated ones)")
    ap.add_argument("--only", default=None, metavar="FILE",
                    help="only the holes listed in FILE, one LANGUAGE:TASK_ID a line (e.g. those two runs disagree on)")
    ap.add_argument("--tables-from", default=None, metavar="DIR",
                    help="no model: the tables again from an --out folder's results.json files")
    ap.add_argument("--misses", type=int, default=0, help="show this many misses per category")
    a = ap.parse_args(argv)
    if a.compare:
        with open(a.compare[0]) as b, open(a.compare[1]) as f:
            print(compare(json.load(b), json.load(f)))
        return 0

    if a.tables_from:
        from codefill.eval.repo import build_repo_tasks

        rows = []
        for lang in sorted(os.listdir(a.tables_from)):
            with open(os.path.join(a.tables_from, lang, "results.json")) as fh:
                results = json.load(fh)
            m = results["meta"]
            tasks = build_repo_tasks(m["directory"], m["limit"], m["seed"])
            rows.append(language_row(results, tasks, a.misses))
        order = {x: i for i, x in enumerate(a.lang.split(",") + ["python"])}
        rows.sort(key=lambda r: order.get(r["language"], 99))
        _write(rows, a, "python bench/lang_repo.py " + " ".join(argv if argv is not None else sys.argv[1:]))
        return 0

    from codefill.engine import Engine, EngineConfig

    languages = [x for x in a.lang.split(",") if x]
    only = None
    if a.only:
        with open(a.only) as fh:
            only = {ln.strip() for ln in fh if ln.strip()}
    try:
        for lang in languages:  # install first: a missing package fails before the model loads
            lang_sources.ensure(lang)
    except lang_sources.SourcesUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    engine = Engine.load(EngineConfig().with_overrides(n_threads=a.threads), model=a.model)
    rows = []
    try:
        for lang in languages:
            rows.append(run_language(engine, lang, a.limit, a.seed, a.threads, a.out, a.misses, cold=a.cold, only=only))
            print(table(rows[-1]), flush=True)
        if a.python:
            rows.append(run_language(engine, "python", a.limit, a.seed, a.threads, a.out, a.misses, root=a.python,
                                     cold=a.cold, only=only))
            print(table(rows[-1]), flush=True)
    finally:
        engine.close()
    _write(rows, a, "python bench/lang_repo.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    return 0


def _write(rows: list[dict], a, command: str) -> None:
    if a.tables_from:
        for r in rows:
            print(table(r))
    if a.md:
        with open(a.md, "w") as fh:
            fh.write(f"<!-- {command} -->\n\n" + "\n".join(table(r) for r in rows))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"command": command, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
