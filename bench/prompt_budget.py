"""What the prefix token budget buys: line-completion quality against the cost of a fresh prompt.

At a new position the whole prompt is evaluated before the first token (about 250 tokens/s on two laptop cores), so
the prefix budget (BudgetConfig.prefix_tokens, 512 on a CPU) is most of the wait. This runs the same line holes —
seeded places in real source files (`codefill eval repo`'s holes), each a full document with the cursor after the
indentation — once per budget, with the KV cache cleared before each hole (a cold new position), greedy and without
a time limit (deterministic), and prints exact match, edit similarity, prompt tokens and the time to the answer.

    python bench/prompt_budget.py /usr/lib/python3.11 --holes 80 --budgets 128,256,384,512,1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="a directory of source code")
    ap.add_argument("--holes", type=int, default=80)
    ap.add_argument("--budgets", default="128,256,384,512,1024", help="prefix token budgets to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None, help="write the figures here too")
    a = ap.parse_args(argv)

    from codefill.engine import Engine, EngineConfig, apply_completion
    from codefill.engine.config import BudgetConfig
    from codefill.eval.metrics import edit_similarity, exact_match
    from codefill.eval.repo import build_repo_tasks
    from codefill.eval.runner import inserted_text, request_for

    tasks = [t for t in build_repo_tasks(a.root, limit=4 * a.holes, seed=a.seed) if t.mode == "line"][: a.holes]
    rows = []
    for budget in [int(b) for b in a.budgets.split(",") if b]:
        engine = Engine.load(EngineConfig(model_path=a.model, n_threads=a.threads,
                                          budget=BudgetConfig(prefix_tokens=budget)))
        if engine.accelerated:
            print("note: the model runs on a GPU; budgets are used as given", file=sys.stderr)
        em, sim, ptoks, pms, total = [], [], [], [], []
        for i, task in enumerate(tasks):
            engine.backend.clear()  # a cold new position: nothing of the prompt is in the KV cache
            t0 = time.perf_counter()
            c = engine.complete(request_for(task))
            total.append((time.perf_counter() - t0) * 1000)
            got = inserted_text(task, apply_completion(task.document, c), c)
            em.append(exact_match(got, task.target))
            sim.append(edit_similarity(got.strip(), task.target.strip()))
            ptoks.append(c.timings.prompt_tokens)
            pms.append(c.timings.prompt_ms)
            print(f"\rprefix {budget}: {i + 1}/{len(tasks)}", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        engine.close()
        rows.append({
            "prefix_tokens": budget, "holes": len(tasks), "exact_match": round(float(np.mean(em)), 4),
            "edit_similarity": round(float(np.mean(sim)), 4), "prompt_tokens_mean": round(float(np.mean(ptoks)), 1),
            "prompt_ms_p50": round(float(np.percentile(pms, 50)), 1),
            "answer_ms_p50": round(float(np.percentile(total, 50)), 1),
            "answer_ms_p95": round(float(np.percentile(total, 95)), 1),
        })
    print("| prefix budget | exact match | edit similarity | prompt tokens (mean) | prompt ms p50 | answer ms p50 | p95 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prefix_tokens']} | {r['exact_match']:.1%} | {r['edit_similarity']:.3f} | {r['prompt_tokens_mean']} "
              f"| {r['prompt_ms_p50']:.0f} | {r['answer_ms_p50']:.0f} | {r['answer_ms_p95']:.0f} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"command": "python bench/prompt_budget.py " + " ".join(argv or sys.argv[1:]), "rows": rows}, fh,
                      indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
