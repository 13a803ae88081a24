"""Figures of the test-time-scaling study (issue 6) from a candidate pool written by bench/scaling_collect.py.

    python bench/scaling_report.py /tmp/scaling/pool.jsonl --png /tmp/notes/coverage.png --gate-out engine/data/gate.json

- greedy pass@1, and selection without tests (first, logprob, cluster, syntax, auto) among the greedy candidate plus
  n-1 samples, with compute relative to greedy in decoded tokens (the prompt is evaluated once for all of them);
- selection with tests: the problem's public docstring examples as the verifier (tried in `auto` order; the `auto`
  choice when none passes), and the hidden tests as the verifier (= coverage of the n candidates);
- coverage@k over the sampled candidates, the exp(a·k^b) fit and its plot;
- the confidence gate, cross-validated by problem (trained on all candidates of the other folds, scored on the
  greedy completions of the held-out fold): AUROC and precision at 80% recall; the fit on all tasks is written to
  --gate-out with those figures;
- adaptive compute: samples chosen from the greedy candidate's (cross-validated) gate probability, against fixed n.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PoolCandidate:
    completion: object
    entropies: tuple
    decoded_tokens: int
    passed: bool
    public: str
    greedy: bool
    index: int

    @property
    def text(self):
        return self.completion.text

    @property
    def token_logprobs(self):
        return self.completion.token_logprobs


def load(path):
    from codefill.engine import Completion, Position, Range, build_context
    from codefill.eval.humaneval import build_tasks

    tasks = {t.task_id: t for t in build_tasks("single-line", 0)}
    out = []
    with open(path) as fh:
        for line in fh:
            r = json.loads(line)
            t = tasks[r["task_id"]]
            ln, ch = t.cursor
            ctx = build_context(t.document, ln, ch, path=t.problem_id.replace("/", "_") + ".py", mode=r["mode"])
            rng = Range(Position(ln, ch), Position(ln, ch))
            cands = [
                PoolCandidate(
                    Completion(c["text"], rng, c["stop_reason"], c["mode"], token_logprobs=tuple(c["token_logprobs"])),
                    tuple(c["entropies"]), c["decoded_tokens"], bool(c["passed"]), c["public"], c["greedy"], i,
                )
                for i, c in enumerate(r["candidates"])
            ]
            out.append({"id": r["task_id"], "problem": r["problem_id"], "ctx": ctx, "cands": cands,
                        "timings": r["timings"]})
    return out


def pct(x):
    return f"{100 * x:.1f}%"


def cross_validated(tasks, folds: int, seed: int = 0):
    """Out-of-fold gate probabilities of each task's greedy completion: {task id: (full, logprob-only)}."""
    from codefill.engine import gate as G
    from codefill.eval import gatefit

    problems = sorted({t["problem"] for t in tasks})
    random.Random(seed).shuffle(problems)
    fold_of = {p: i % folds for i, p in enumerate(problems)}
    out = {}
    for f in range(folds):
        train = [t for t in tasks if fold_of[t["problem"]] != f]
        test = [t for t in tasks if fold_of[t["problem"]] == f]
        if not test:
            continue
        rows = [G.features(c, t["ctx"]) for t in train for c in t["cands"]]
        ys = [c.passed for t in train for c in t["cands"]]
        gate = G.Gate(gatefit.fit(rows, ys, G.FULL_FEATURES), gatefit.fit(rows, ys, G.LOGPROB_FEATURES))
        for t in test:
            g = t["cands"][0]
            out[t["id"]] = (gate.score(g, t["ctx"]), gate.score(g.completion, t["ctx"]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pool")
    ap.add_argument("--png", default=None)
    ap.add_argument("--gate-out", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--json", default=None, help="write all figures here")
    args = ap.parse_args()

    from codefill.engine import gate as G
    from codefill.engine.adaptive import AdaptivePolicy
    from codefill.engine.selection import rank
    from codefill.eval import gatefit
    from codefill.eval.coverage import coverage_study

    tasks = load(args.pool)
    N = min(len(t["cands"]) for t in tasks)
    figs: dict = {"tasks": len(tasks), "candidates_per_task": N}
    print(f"{len(tasks)} tasks, {N} candidates each (greedy + {N - 1} samples)")

    greedy = np.mean([t["cands"][0].passed for t in tasks])
    g_tokens = np.mean([t["cands"][0].decoded_tokens for t in tasks])
    prompt_tokens = np.mean([t["timings"]["prompt_tokens"] for t in tasks])
    figs["greedy_pass@1"] = float(greedy)
    print(f"\ngreedy pass@1: {pct(greedy)}  (mean {g_tokens:.1f} decoded tokens, prompt {prompt_tokens:.0f} tokens)")

    # ---- selection without tests, and with tests
    print("\nn   tokens×  " + "  ".join(f"{m:>8}" for m in ("first", "logprob", "cluster", "syntax", "auto"))
          + "   public-tests  hidden-tests(coverage)")
    sel = {}
    ns = [n for n in (1, 2, 3, 4, 8, 16, 32) if n <= N]
    for n in ns:
        row = {}
        for m in ("first", "logprob", "cluster", "syntax", "auto"):
            row[m] = float(np.mean([rank(t["cands"][:n], t["ctx"], m)[0].passed for t in tasks]))
        pub = []
        for t in tasks:
            ranked = rank(t["cands"][:n], t["ctx"], "auto")
            chosen = next((c for c in ranked if c.public == "passed"), ranked[0])
            pub.append(chosen.passed)
        row["public_tests"] = float(np.mean(pub))
        row["hidden_tests"] = float(np.mean([any(c.passed for c in t["cands"][:n]) for t in tasks]))
        tok = np.mean([sum(c.decoded_tokens for c in t["cands"][:n]) for t in tasks])
        row["decoded_tokens_x"] = float(tok / g_tokens)
        row["compute_x_incl_prompt"] = float((prompt_tokens + tok) / (prompt_tokens + g_tokens))
        sel[n] = row
        print(f"{n:<3} {row['decoded_tokens_x']:6.1f}  " + "  ".join(f"{pct(row[m]):>8}" for m in
              ("first", "logprob", "cluster", "syntax", "auto")) + f"   {pct(row['public_tests']):>12}  "
              f"{pct(row['hidden_tests']):>10}")
    figs["selection"] = sel
    has_examples = np.mean([any(c.public != "none" for c in t["cands"]) for t in tasks])
    print(f"(public tests = the docstring examples; {pct(has_examples)} of the tasks' problems have some)")

    # ---- coverage over the sampled candidates
    counts = [(N - 1, sum(c.passed for c in t["cands"][1:])) for t in tasks]
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= N - 1]
    cov = coverage_study(counts, ks, png=args.png)
    figs["coverage"] = cov
    print("\ncoverage@k (samples at T=0.8, top-p 0.95):", ", ".join(f"{k}: {pct(v)}" for k, v in cov["coverage"].items()))
    if "a" in cov.get("fit", {}):
        print(f"fit exp(a·k^b): a={cov['fit']['a']}, b={cov['fit']['b']}; predicted "
              + ", ".join(f"{k}: {pct(v)}" for k, v in cov["fit"]["predicted"].items()))

    # ---- gate, cross-validated by problem
    cv = cross_validated(tasks, args.folds)
    cv_full = {i: v[0] for i, v in cv.items()}
    cv_lp = {i: v[1] for i, v in cv.items()}
    ids = [t["id"] for t in tasks]
    labels = [t["cands"][0].passed for t in tasks]
    base_lp = [G.features(t["cands"][0], t["ctx"])["lp_mean"] for t in tasks]
    gate_fig = {}
    for name, scores in (("gate_full", [cv_full[i] for i in ids]), ("gate_logprob_only", [cv_lp[i] for i in ids]),
                         ("mean_logprob_alone", base_lp)):
        prec, thr = gatefit.precision_at_recall(scores, labels, 0.8)
        gate_fig[name] = {"auroc": round(gatefit.auroc(scores, labels), 4), "precision_at_80_recall": round(prec, 4),
                          "threshold_at_80_recall": round(thr, 4)}
    gate_fig["base_rate"] = round(float(np.mean(labels)), 4)
    figs["gate"] = gate_fig
    print("\ngate on greedy completions (cross-validated by problem, %d folds):" % args.folds)
    for k, v in gate_fig.items():
        print(f"  {k}: {v}")

    if args.gate_out:
        rows = [G.features(c, t["ctx"]) for t in tasks for c in t["cands"]]
        ys = [c.passed for t in tasks for c in t["cands"]]
        final = G.Gate(gatefit.fit(rows, ys, G.FULL_FEATURES), gatefit.fit(rows, ys, G.LOGPROB_FEATURES))
        final.threshold = gate_fig["gate_full"]["threshold_at_80_recall"]
        final.metrics = {
            "auroc": gate_fig["gate_full"]["auroc"],
            "precision_at_80_recall": gate_fig["gate_full"]["precision_at_80_recall"],
            "auroc_logprob_only": gate_fig["gate_logprob_only"]["auroc"],
            "base_rate": gate_fig["base_rate"],
            "evaluated_on": f"greedy completions of {len(tasks)} HumanEval single-line tasks (seed-0 sample), "
                            f"{args.folds}-fold cross-validation by problem",
            "fitted_on": f"{sum(len(t['cands']) for t in tasks)} candidates (greedy + samples) of those tasks, "
                         f"embedded SmolLM2-135M, line mode",
        }
        final.save(args.gate_out)
        print(f"gate written to {args.gate_out}: full features {list(final.full.names)}")

    # ---- adaptive compute
    print("\nadaptive compute (gate probability of the greedy answer → extra samples; auto selection):")
    adapt = {}
    for conf, uns, few, many in ((0.5, 0.25, 3, 7), (0.4, 0.2, 7, 7), (0.3, 0.15, 7, 15), (0.2, 0.1, 7, 15),
                                 (0.5, 0.3, 7, 15), (0.6, 0.3, 7, 15)):
        pol = AdaptivePolicy(confident=conf, unsure=uns, few=few, many=many)
        acc, toks, nsamp = [], [], []
        for t in tasks:
            g = t["cands"][0]
            k = min(pol.samples_for(cv_full[t["id"]]), N - 1)
            if k == 0:
                acc.append(g.passed)
                toks.append(g.decoded_tokens)
                nsamp.append(1)
                continue
            budget = max(pol.min_tokens, int(np.ceil(pol.token_factor * max(1, g.decoded_tokens))))
            extra = t["cands"][1 : 1 + k]
            kept = [c for c in extra if c.decoded_tokens <= budget]  # longer ones would have been cut off
            pool = [g] + kept
            acc.append(rank(pool, t["ctx"], "auto")[0].passed)
            toks.append(g.decoded_tokens + sum(min(c.decoded_tokens, budget) for c in extra))
            nsamp.append(1 + k)
        key = f"confident>={conf},unsure>={uns},few={few},many={many}"
        adapt[key] = {"accuracy": float(np.mean(acc)), "mean_samples": float(np.mean(nsamp)),
                      "decoded_tokens_x": float(np.mean(toks) / g_tokens)}
        print(f"  {key}: {pct(np.mean(acc))} with {np.mean(nsamp):.2f} samples, {np.mean(toks) / g_tokens:.2f}× tokens")
    figs["adaptive"] = adapt
    print("  fixed n for comparison: " + ", ".join(
        f"n={n}: {pct(sel[n]['auto'])} at {sel[n]['decoded_tokens_x']:.2f}× tokens" for n in ns))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figs, fh, indent=1)


if __name__ == "__main__":
    main()
