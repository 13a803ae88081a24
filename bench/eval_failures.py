"""Read a `codefill eval humaneval` run's failures by category, to find what loses the most.

    python bench/eval_failures.py runs/eval-humaneval-single-line-…/results.json [--compare OTHER/results.json]
        [--show CATEGORY --examples 5]

Each failing (or, for repo runs, inexact) greedy sample falls in the first category that fits:

- empty: nothing was suggested (a filter or a stop rule left no text);
- indentation: right code, wrong leading whitespace on some line;
- repeats suffix: the suggestion's last line repeats the line after the hole (or the rest of its line);
- too early: the suggestion is a proper prefix of the removed text (it stopped too soon);
- too late: the removed text is a proper prefix of the suggestion (it ran on);
- first line right: the first line matches, a later one does not (block holes);
- wrong: anything else (different code).

Printed: counts per category with their share of all tasks, stop reasons of the failures, and with `--compare` the
tasks that moved between the two runs (fixed, broken) per category.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CATEGORIES = ("empty", "indentation", "repeats suffix", "too early", "too late", "first line right", "wrong")


def _norm(text: str) -> list[str]:
    return [ln.rstrip() for ln in text.rstrip().split("\n")]


def categorize(text: str, target: str, suffix: str) -> str:
    if not text.strip():
        return "empty"
    got, want = _norm(text), _norm(target)
    if [g.strip() for g in got] == [w.strip() for w in want]:
        return "indentation"
    after = [ln.strip() for ln in suffix.split("\n") if ln.strip()]
    rest_of_line = suffix.split("\n", 1)[0].strip()
    last = got[-1].strip()
    if last and (after and last == after[0] or rest_of_line and last.endswith(rest_of_line)):
        return "repeats suffix"
    flat_got, flat_want = "\n".join(got), "\n".join(want)
    if flat_want.startswith(flat_got):
        return "too early"
    if flat_got.startswith(flat_want):
        return "too late"
    if len(want) > 1 and got[0].strip() == want[0].strip():
        return "first line right"
    return "wrong"


def load(path: str):
    data = json.load(open(path))
    return data["meta"], data["records"]


def suffixes(meta: dict, records: list[dict]) -> dict[str, str]:
    """task id → the document after the hole, rebuilt from the task list the run was made from."""
    mode = meta.get("mode")
    if mode not in ("single-line", "multi-line", "random-span"):
        return {}
    from codefill.eval.humaneval import build_tasks

    wanted = {r["task_id"] for r in records}
    return {t.task_id: t.suffix for t in build_tasks(mode, seed=meta.get("seed") or 0) if t.task_id in wanted}


def failed(sample: dict) -> bool:
    return not sample["passed"] if sample["passed"] is not None else not sample["exact"]


def classify(path: str) -> tuple[dict, dict[str, str | None]]:
    """(meta, task id → category of its first sample's failure, None when it passed)."""
    meta, records = load(path)
    sfx = suffixes(meta, records)
    out: dict[str, str | None] = {}
    for r in records:
        s = r["samples"][0]
        out[r["task_id"]] = categorize(s["text"], r["target"], sfx.get(r["task_id"], "")) if failed(s) else None
    return meta, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results", help="results.json of a codefill eval run")
    ap.add_argument("--compare", help="another run's results.json (the tasks both ran): what moved")
    ap.add_argument("--show", help="print examples of this category")
    ap.add_argument("--examples", type=int, default=5)
    a = ap.parse_args(argv)

    meta, cats = classify(a.results)
    _, records = load(a.results)
    by_id = {r["task_id"]: r for r in records}
    n = len(cats)
    fails = Counter(c for c in cats.values() if c)
    stops = Counter(by_id[t]["samples"][0]["stop_reason"] for t, c in cats.items() if c)
    print(f"{a.results}: {n} tasks ({meta.get('mode')}), {n - sum(fails.values())} passed, "
          f"{sum(fails.values())} failed")
    print(f"{'category':<18}{'tasks':>7}{'share':>8}")
    for c in CATEGORIES:
        if fails[c]:
            print(f"{c:<18}{fails[c]:>7}{fails[c] / n:>8.1%}")
    print("stop reasons of the failures: " + ", ".join(f"{k} {v}" for k, v in stops.most_common()))

    if a.compare:
        _, other = classify(a.compare)
        common = cats.keys() & other.keys()
        fixed = Counter(other[t] for t in common if other[t] and not cats[t])
        broken = Counter(cats[t] for t in common if cats[t] and not other[t])
        print(f"\nagainst {a.compare} ({len(common)} tasks in both): "
              f"{sum(fixed.values())} fixed here, {sum(broken.values())} broken here")
        for c in CATEGORIES:
            if fixed[c] or broken[c]:
                print(f"  {c:<18} fixed {fixed[c]:>4}  (was this category there)   broken {broken[c]:>4}")

    if a.show:
        shown = 0
        for t, c in cats.items():
            if c != a.show or shown >= a.examples:
                continue
            shown += 1
            r = by_id[t]
            print(f"\n--- {t} ({r['samples'][0]['stop_reason']})\nwant: {r['target']!r}\ngot:  {r['samples'][0]['text']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
