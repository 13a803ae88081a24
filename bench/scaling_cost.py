"""What extra candidates and the confidence gate cost (issue 6).

- repeated sampling: wall time of `engine.sample(req, n)` (one prompt evaluation, candidates decoded together)
  for n = 1, 2, 4, 8, 16 against n greedy-length completions one after another (`Engine.complete_many`, the naive
  loop), on HumanEval single-line tasks, cold prompt each time;
- the gate: microseconds to compute features and score one completion, and the per-token cost of the entropy that
  the decode loop adds (timed on the model's real logits), both relative to a completion's measured time.

    nice python bench/scaling_cost.py --tasks 8
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ns", default="1,2,4,8,16")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")]

    from codefill.engine import Engine, EngineConfig
    from codefill.engine.sampler import Sampler
    from codefill.eval.humaneval import build_tasks, sample_tasks
    from codefill.eval.runner import request_for
    from codefill.engine.gate import Gate

    engine = Engine.load(EngineConfig(n_seq=max(ns), n_threads=args.threads))
    tasks = sample_tasks(build_tasks("single-line", 0), 150, 0)[: args.tasks]
    rows = {n: {"total_ms": [], "decode_ms": [], "prompt_ms": [], "tokens": []} for n in ns}
    naive = {n: [] for n in ns}
    for t in tasks:
        req = request_for(t, completion_mode="line", temperature=0.8, top_p=0.95)
        for n in ns:
            engine.backend.clear()  # cold prompt
            s = engine.sample(req, n)
            rows[n]["total_ms"].append(s.timings.total_ms)
            rows[n]["decode_ms"].append(s.timings.decode_ms)
            rows[n]["prompt_ms"].append(s.timings.prompt_ms)
            rows[n]["tokens"].append(s.timings.decode_tokens)
        for n in ns:  # the naive loop: complete() n times (prompt reused from the KV cache after the first)
            engine.backend.clear()
            t0 = time.perf_counter()
            for i in range(n):
                engine.complete(replace(req, seed=req.seed + i, use_cache=False))
            naive[n].append((time.perf_counter() - t0) * 1000)
    out = {"tasks": len(tasks), "sampling": {}}
    base = np.mean(rows[ns[0]]["total_ms"])
    print(f"{len(tasks)} tasks, line mode, cold prompt each time, {args.threads} thread(s)")
    print("n   total ms  ×greedy  decode ms  tokens  naive-loop ms  ×greedy  ms per extra candidate")
    for n in ns:
        tot = float(np.mean(rows[n]["total_ms"]))
        nv = float(np.mean(naive[n]))
        per_extra = (tot - base) / (n - 1) if n > 1 else 0.0
        out["sampling"][n] = {"total_ms": round(tot, 1), "x_greedy": round(tot / base, 2),
                              "decode_ms": round(float(np.mean(rows[n]["decode_ms"])), 1),
                              "prompt_ms": round(float(np.mean(rows[n]["prompt_ms"])), 1),
                              "decode_tokens": round(float(np.mean(rows[n]["tokens"])), 1),
                              "naive_loop_ms": round(nv, 1), "naive_x_greedy": round(nv / base, 2),
                              "ms_per_extra_candidate": round(per_extra, 1)}
        r = out["sampling"][n]
        print(f"{n:<3} {tot:8.0f}  {tot / base:6.2f}  {r['decode_ms']:9.0f}  {r['decode_tokens']:6.1f}  {nv:12.0f}  "
              f"{nv / base:6.2f}  {per_extra:8.1f}")

    # ---- gate latency
    gate = Gate.load()
    req = request_for(tasks[0], completion_mode="line")
    s = engine.sample(req, 1)
    c = s.candidates[0]
    reps = 2000
    t0 = time.perf_counter()
    for _ in range(reps):
        gate.score(c, s.context)
    score_us = (time.perf_counter() - t0) / reps * 1e6
    engine.backend.clear()
    engine.backend.evaluate(engine.prepare(req).tokens)
    logits = engine.backend.logits(0)  # the in-process backend's logits after the prompt
    sampler = Sampler(0.0)
    reps = 300
    t0 = time.perf_counter()
    for _ in range(reps):
        int(np.argmax(logits))  # the least a greedy pick costs: no log-probability, no entropy
    pick_us = (time.perf_counter() - t0) / reps * 1e6
    t0 = time.perf_counter()
    for _ in range(reps):
        sampler.draw(logits)
    pick_ent_us = (time.perf_counter() - t0) / reps * 1e6
    greedy_total = float(np.mean(rows[ns[0]]["total_ms"]))
    tokens = float(np.mean(rows[ns[0]]["tokens"])) or 1.0
    added_ms = score_us / 1000 + tokens * max(0.0, pick_ent_us - pick_us) / 1000
    out["gate"] = {"score_us": round(score_us, 1), "pick_us": round(pick_us, 1),
                   "pick_with_entropy_us": round(pick_ent_us, 1),
                   "added_ms_per_completion": round(added_ms, 3),
                   "greedy_completion_ms": round(greedy_total, 1),
                   "added_latency_pct": round(100 * added_ms / greedy_total, 3)}
    print(f"\ngate: score {score_us:.1f} µs; argmax alone {pick_us:.0f} µs/token vs the sampler's draw (log-probability and entropy) {pick_ent_us:.0f} µs/token;"
          f" added {added_ms:.2f} ms per completion = {100 * added_ms / greedy_total:.2f}% of a {greedy_total:.0f} ms completion")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
