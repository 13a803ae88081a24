"""Fit the confidence gate from a HumanEval run and report AUROC, precision at 80% recall and added latency (issue 6).

Input: a candidate pool written by bench/scaling_collect.py (per task: the greedy completion and sampled ones, each
with its token log-probabilities, entropies and the hidden-test label). The gate is evaluated the way it is used —
on the greedy completion the editor would show — with K-fold cross-validation by HumanEval problem (a problem's
tasks never serve to fit the model that scores them), then refitted on everything and written with its figures.

Added latency, per completion:
- scoring: features + logistic regression, timed over the pool's greedy completions;
- entropy: what the decode loop pays for the next-token signals (`Sampler.draw`, log-probability and entropy, against a
  bare argmax on the model's real logits), times the completion's tokens;
both against the measured time of a greedy `Engine.complete` on the same tasks.

    nice -n 10 python bench/scaling_gate.py /tmp/scaling/pool.jsonl --out engine/data/gate.json --latency-tasks 10
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def scoring_us(gate, tasks, repeat: int = 20) -> float:
    items = [(t["cands"][0], t["ctx"]) for t in tasks]
    t0 = time.perf_counter()
    for _ in range(repeat):
        for c, ctx in items:
            gate.score(c, ctx)
    return (time.perf_counter() - t0) / (repeat * len(items)) * 1e6


def entropy_and_completion_cost(tasks, n: int, threads: int) -> dict:
    """µs per token the entropy adds in the decode loop (real logits), and greedy completion time on n tasks."""
    from codefill.engine import Engine, EngineConfig
    from codefill.engine.sampler import Sampler
    from codefill.eval.humaneval import build_tasks
    from codefill.eval.runner import request_for

    by_id = {t.task_id: t for t in build_tasks("single-line", 0)}
    engine = Engine.load(EngineConfig(n_seq=1, n_threads=threads))
    try:
        lat, toks, logits = [], [], []
        for t in tasks[:n]:
            req = request_for(by_id[t["id"]], completion_mode="line")
            engine.backend.clear()  # cold prompt, as for a fresh place in a file
            t0 = time.perf_counter()
            c = engine.complete(req)
            lat.append((time.perf_counter() - t0) * 1000)
            toks.append(c.timings.decode_tokens)
            logits.append(np.array(engine.backend.logits(0), copy=True))
        s = Sampler(0.0, 1.0, 0)
        reps = 300

        def per_call(fn) -> float:
            t0 = time.perf_counter()
            for _ in range(reps):
                for x in logits:
                    fn(x)
            return (time.perf_counter() - t0) / (reps * len(logits)) * 1e6

        base = per_call(lambda x: int(np.argmax(x)))  # the least a greedy pick costs
        with_ent = per_call(s.draw)  # the decode loop's draw: log-probability and entropy in one pass
        # Upper bound of what the entropy itself costs: computed standalone, sharing nothing with the pick.
        alone = per_call(entropy_alone)
    finally:
        engine.close()
    return {"completion_ms_mean": float(np.mean(lat)), "completion_ms_median": float(np.median(lat)),
            "decode_tokens_mean": float(np.mean(toks)), "entropy_us_per_token": alone,
            "argmax_us_per_token": base, "draw_us_per_token": with_ent, "tasks": len(lat)}


def entropy_alone(logits) -> float:
    x = np.asarray(logits, dtype=np.float32)
    m = float(x.max())
    e = np.exp(x - np.float32(m))
    s = float(e.sum(dtype=np.float64))
    return m + np.log(s) - float(np.multiply(e, x).sum(dtype=np.float64)) / s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pool")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--out", default=None, help="write the gate fitted on all tasks here (engine/data/gate.json)")
    ap.add_argument("--candidates", type=int, default=17, help="use the first N candidates of each task")
    ap.add_argument("--latency-tasks", type=int, default=10, help="greedy completions timed (0: skip the model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from codefill.engine import gate as G
    from codefill.eval import gatefit
    from scaling_report import cross_validated, load

    tasks = load(args.pool)
    for t in tasks:
        t["cands"] = t["cands"][: args.candidates]
    labels = [t["cands"][0].passed for t in tasks]
    cv = cross_validated(tasks, args.folds)
    figs = {"tasks": len(tasks), "problems": len({t["problem"] for t in tasks}), "base_rate": float(np.mean(labels))}
    print(f"{len(tasks)} tasks ({figs['problems']} problems); greedy correct: {100 * figs['base_rate']:.1f}%")
    for name, scores in (
        ("gate_full", [cv[t["id"]][0] for t in tasks]),
        ("gate_logprob_only", [cv[t["id"]][1] for t in tasks]),
        ("mean_logprob_alone", [G.features(t["cands"][0], t["ctx"])["lp_mean"] for t in tasks]),
    ):
        prec, thr = gatefit.precision_at_recall(scores, labels, 0.8)
        figs[name] = {"auroc": round(gatefit.auroc(scores, labels), 4), "precision_at_80_recall": round(prec, 4),
                      "threshold_at_80_recall": round(thr, 4)}
        print(f"  {name:<20} AUROC {figs[name]['auroc']:.3f}  precision@80% recall {prec:.3f}  (threshold {thr:.3f})")

    rows = [G.features(c, t["ctx"]) for t in tasks for c in t["cands"]]
    ys = [c.passed for t in tasks for c in t["cands"]]
    final = G.Gate(gatefit.fit(rows, ys, G.FULL_FEATURES), gatefit.fit(rows, ys, G.LOGPROB_FEATURES))
    final.threshold = figs["gate_full"]["threshold_at_80_recall"]
    figs["scoring_us_per_completion"] = round(scoring_us(final, tasks), 1)
    print(f"  scoring: {figs['scoring_us_per_completion']:.1f} µs per completion")
    if args.latency_tasks > 0:
        cost = entropy_and_completion_cost(tasks, args.latency_tasks, args.threads)
        added_us = figs["scoring_us_per_completion"] + cost["entropy_us_per_token"] * cost["decode_tokens_mean"]
        cost["added_us_per_completion"] = round(added_us, 1)
        cost["added_latency_pct"] = round(100 * added_us / 1000 / cost["completion_ms_mean"], 3)
        figs["latency"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in cost.items()}
        print(f"  entropy in the decode loop: {cost['entropy_us_per_token']:.0f} µs per token "
              f"at most (bare argmax: {cost['argmax_us_per_token']:.0f} µs, the sampler's draw: {cost['draw_us_per_token']:.0f} µs); greedy completion {cost['completion_ms_mean']:.0f} ms "
              f"mean over {cost['tasks']} tasks, {cost['decode_tokens_mean']:.1f} tokens")
        print(f"  added latency: {added_us:.0f} µs per completion = {cost['added_latency_pct']:.2f}%")
    if args.out:
        final.metrics = {
            "auroc": figs["gate_full"]["auroc"],
            "precision_at_80_recall": figs["gate_full"]["precision_at_80_recall"],
            "auroc_logprob_only": figs["gate_logprob_only"]["auroc"],
            "auroc_mean_logprob_alone": figs["mean_logprob_alone"]["auroc"],
            "base_rate": round(figs["base_rate"], 4),
            "scoring_us_per_completion": figs["scoring_us_per_completion"],
            **({"added_latency_pct": figs["latency"]["added_latency_pct"]} if "latency" in figs else {}),
            "evaluated_on": f"greedy completions of {len(tasks)} HumanEval single-line tasks (seed-0 sample), "
                            f"{args.folds}-fold cross-validation by problem",
            "fitted_on": f"{len(rows)} candidates (greedy + up to {args.candidates - 1} samples at T=0.8) of those "
                         f"tasks, embedded SmolLM2-135M Q4_1, line mode",
            "command": "python bench/scaling_gate.py " + " ".join(sys.argv[1:]),
        }
        final.save(args.out)
        print(f"gate written to {args.out}: features {list(final.full.names)}; threshold {final.threshold}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figs, fh, indent=1)


if __name__ == "__main__":
    main()
