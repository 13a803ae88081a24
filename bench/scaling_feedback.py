"""Does feeding the failing test output back help a prefix-only model? (the S* sequential round, issue 6)

For the pool's tasks where none of the first N candidates passes the problem's public docstring examples, run one
more round of M candidates twice — with the failing output of the two best-ranked failures as a comment block in the
prompt (`feedback_snippet`, what `codefill fill` does), and without it (same seeds: a control for "just more
samples") — and compare how often the round yields a candidate that passes the public examples and, of those
chosen, the hidden tests.

    nice python bench/scaling_feedback.py /tmp/scaling/pool.jsonl --first 17 --samples 8 --limit 40
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pool")
    ap.add_argument("--first", type=int, default=17, help="candidates of the pool that count as round 0")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from scaling_collect import doctest_program
    from scaling_report import load

    from codefill.engine import Engine, EngineConfig, apply_completion
    from codefill.eval.execution import run_program
    from codefill.eval.humaneval import build_tasks, problem_by_id, program_for
    from codefill.eval.runner import request_for
    from codefill.engine.search import Attempt, feedback_snippet
    from codefill.engine.selection import normalize, rank

    tasks_by_id = {t.task_id: t for t in build_tasks("single-line", 0)}
    pool = load(args.pool)
    stuck = [t for t in pool if any(c.public != "none" for c in t["cands"])
             and not any(c.public == "passed" for c in t["cands"][: args.first])][: args.limit]
    with open(args.pool) as fh:
        raw = {json.loads(line)["task_id"]: json.loads(line) for line in fh}
    engine = Engine.load(EngineConfig(n_seq=args.samples, n_threads=args.threads))
    res = {"feedback": [], "control": []}
    t0 = time.perf_counter()
    for n, t in enumerate(stuck):
        task = tasks_by_id[t["id"]]
        problem = problem_by_id(task.problem_id)
        r0 = t["cands"][: args.first]
        ranked = rank(r0, t["ctx"], "auto")
        outputs = {c.index: raw[t["id"]]["candidates"][c.index]["public_output"] for c in r0}
        attempts = [Attempt(c, False, outputs[c.index], 0, 0.0) for c in ranked if c.text.strip()]
        tried = {normalize(c.text) for c in r0}
        base = request_for(task, completion_mode="line", seed=1000)
        for arm in ("feedback", "control"):
            req = base
            if arm == "feedback":
                req = replace(base, snippets=(feedback_snippet(attempts, "python"),))
            s = engine.sample(req, args.samples)  # SAMPLE_TEMPERATURE / SAMPLE_TOP_P
            chosen, new = None, 0
            for c in rank(s.candidates, s.context, "auto"):
                if normalize(c.text) in tried or not c.text.strip():
                    continue
                new += 1
                filled = apply_completion(task.document, c.completion)
                if run_program(doctest_program(filled), args.timeout).returncode == 0:
                    chosen = c
                    break
            hidden = None
            if chosen is not None:
                hidden = run_program(program_for(problem, apply_completion(task.document, chosen.completion)),
                                     args.timeout).passed
            res[arm].append({"task": t["id"], "public_pass": chosen is not None, "hidden_pass": bool(hidden),
                             "new_candidates": new, "prompt_tokens": s.timings.prompt_tokens})
        f, c = res["feedback"][-1], res["control"][-1]
        print(f"[{n + 1}/{len(stuck)}] {t['id']} feedback: public={f['public_pass']} hidden={f['hidden_pass']} | "
              f"control: public={c['public_pass']} hidden={c['hidden_pass']} ({time.perf_counter() - t0:.0f}s)",
              file=sys.stderr, flush=True)
    summary = {}
    for arm, rows in res.items():
        k = len(rows) or 1
        summary[arm] = {"tasks": len(rows), "public_pass": sum(r["public_pass"] for r in rows) / k,
                        "hidden_pass": sum(r["hidden_pass"] for r in rows) / k,
                        "mean_new_candidates": sum(r["new_candidates"] for r in rows) / k,
                        "mean_prompt_tokens": sum(r["prompt_tokens"] for r in rows) / k}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"summary": summary, "rows": res}, fh, indent=1)


if __name__ == "__main__":
    main()
