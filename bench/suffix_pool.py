"""Collect a candidate pool for suffix ranking (issue 15 #3): the text after the hole as evidence for a prefix-only model.

For each HumanEval task of a seeded sample (any hole shape): the greedy candidate plus N-1 samples from ONE prompt
evaluation (Engine.sample, as `codefill eval humaneval --candidates N` draws them), every distinct candidate scored by
Engine.score_suffix with a wide window (the per-token log-probabilities of the suffix are kept, so any shorter
window is a prefix sum of them), and HumanEval's tests run on each. One JSON line per task; rerunning resumes.

    python bench/suffix_pool.py --mode single-line --limit 150 --seed 0 --out /tmp/suffix/single-line.jsonl
    python bench/suffix_pool.py --report /tmp/suffix/single-line.jsonl   # pass@1 of the selection variants

The report compares, on exactly these candidates, greedy, `auto` and suffix ranking for the first 2/4/8 candidates
with several windows and weights of the candidate's own log-probability; the figures in
bench/results/suffix-ranking.md were chosen this way and then checked with `codefill eval humaneval`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from types import SimpleNamespace


def collect(args) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from codefill.engine import Engine, EngineConfig, apply_completion
    from codefill.engine.selection import syntax_ok
    from codefill.eval.execution import run_program
    from codefill.eval.humaneval import build_tasks, problem_by_id, program_for, sample_tasks
    from codefill.eval.runner import request_for

    tasks = sample_tasks(build_tasks(args.mode, args.seed), args.limit, args.seed)
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as fh:
            done = {json.loads(line)["task_id"] for line in fh if line.strip()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    engine = Engine.load(EngineConfig(n_seq=args.candidates, n_threads=args.threads))
    t_all = time.perf_counter()
    with open(args.out, "a") as out, ThreadPoolExecutor(max_workers=1) as ex:
        for k, task in enumerate(tasks):
            if task.task_id in done:
                continue
            req = request_for(task, seed=args.seed)
            t0 = time.perf_counter()
            s = engine.sample(req, args.candidates)
            t1 = time.perf_counter()
            scored = engine.score_suffix(req, s.candidates, window=args.window)
            t2 = time.perf_counter()
            problem = problem_by_id(task.problem_id)
            futures = {}
            for c in scored:
                filled = apply_completion(task.document, c.completion)
                if filled not in futures:
                    futures[filled] = ex.submit(run_program, program_for(problem, filled), args.timeout)
            cands = []
            for c in scored:
                res = futures[apply_completion(task.document, c.completion)].result()
                sc = c.suffix
                cands.append({
                    "text": c.text, "greedy": c.greedy, "stop_reason": c.completion.stop_reason,
                    "token_logprobs": [round(x, 5) for x in c.token_logprobs],
                    "syntax_ok": syntax_ok(s.context, c.text), "passed": res.passed, "status": res.status,
                    "exact": c.text.rstrip() == task.target.rstrip(),
                    "suffix": None if sc is None else {
                        "candidate_logprob": round(sc.candidate_logprob, 5), "candidate_tokens": sc.candidate_tokens,
                        "token_logprobs": list(sc.token_logprobs)},
                })
            rec = {"task_id": task.task_id, "mode": s.context.mode, "target": task.target,
                   "sample_ms": round((t1 - t0) * 1000, 1), "score_ms": round((t2 - t1) * 1000, 1),
                   "distinct": len({c.text for c in scored}), "candidates": cands}
            out.write(json.dumps(rec) + "\n")
            out.flush()
            g = cands[0]
            print(f"[{k + 1}/{len(tasks)}] {task.task_id} greedy={'P' if g['passed'] else '-'} "
                  f"any={sum(c['passed'] for c in cands)}/{len(cands)} sample={t1 - t0:.1f}s score={t2 - t1:.1f}s "
                  f"elapsed={time.perf_counter() - t_all:.0f}s", file=sys.stderr, flush=True)


def _cand(c: dict, window: int):
    """A pool candidate shaped for selection.rank, its suffix score cut to `window` tokens."""
    from codefill.engine.types import SuffixScore

    sc = None
    if c["suffix"] is not None:
        lps = c["suffix"]["token_logprobs"][:window]
        sc = SuffixScore(sum(lps), len(lps), c["suffix"]["candidate_logprob"], c["suffix"]["candidate_tokens"])
    return SimpleNamespace(text=c["text"], token_logprobs=tuple(c["token_logprobs"]), suffix=sc, raw=c)


def report(path: str, ns=(2, 4, 8), windows=(8, 16, 32, 64), weights=(0.0, 0.5, 1.0, 2.0)) -> None:
    from codefill.engine.selection import SelectionWeights, rank

    recs = [json.loads(line) for line in open(path) if line.strip()]
    ctx = SimpleNamespace(language=None)  # syntax was judged at collection time (it needs the document): see `pick`
    plain = dict(drop_syntax_errors=False)
    print(f"{path}: {len(recs)} tasks")

    def pick(rec, n, method, window=32, w=1.0):
        cands = [_cand(c, window) for c in rec["candidates"][:n]]
        # the syntax check was made at collection time (it needs the document); apply auto's rule with it
        ok = [c.raw["syntax_ok"] is not False and c.text.strip() for c in cands]
        pool = [c for c, good in zip(cands, ok) if good] or cands
        return rank(pool, ctx, method, SelectionWeights(suffix_candidate_weight=w, **plain))[0].raw

    def pick_biased(rec, n, window, w, delta):
        cands = [_cand(c, window) for c in rec["candidates"][:n]]
        ok = [c.raw["syntax_ok"] is not False and c.text.strip() and c.suffix is not None for c in cands]
        pool = [(i, c) for i, (c, good) in enumerate(zip(cands, ok)) if good]
        if not pool:
            return cands[0].raw
        return max(pool, key=lambda ic: (ic[1].suffix.suffix_logprob + w * ic[1].suffix.candidate_logprob
                                          + (delta if ic[0] == 0 else 0.0), -ic[0]))[1].raw

    from codefill.eval.metrics import edit_similarity

    targets = {id(c): r["target"] for r in recs for c in r["candidates"]}

    def row(name, chosen):
        p = sum(bool(c["passed"]) for c in chosen) / len(chosen)
        e = sum(bool(c["exact"]) for c in chosen) / len(chosen)
        es = sum(edit_similarity(c["text"].strip(), targets[id(c)].strip()) for c in chosen) / len(chosen)
        print(f"  {name:<38} pass@1 {100 * p:5.1f}%  exact {100 * e:5.1f}%  edit sim {es:.3f}")

    row("greedy", [r["candidates"][0] for r in recs])
    for n in ns:
        print(f" n = {n}")
        row("auto", [pick(r, n, "auto") for r in recs])
        row("logprob", [pick(r, n, "logprob") for r in recs])
        for window in windows:
            for w in weights:
                row(f"suffix window {window} candidate weight {w}", [pick(r, n, "suffix", window, w) for r in recs])
        for delta in (1.0, 2.0, 4.0):  # the greedy answer kept unless another beats it by delta nats
            row(f"suffix window 16 weight 1, greedy +{delta}", [pick_biased(r, n, 16, 1.0, delta) for r in recs])
        row("oracle (any passes)", [max(r["candidates"][:n], key=lambda c: bool(c["passed"])) for r in recs])
    sample = sorted(r["sample_ms"] for r in recs)
    score = sorted(r["score_ms"] for r in recs)
    print(f" sample p50 {sample[len(sample) // 2]:.0f} ms, score p50 {score[len(score) // 2]:.0f} ms (window as collected)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="single-line", help="single-line | multi-line | random-span")
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", "-n", type=int, default=8)
    ap.add_argument("--window", type=int, default=64, help="suffix tokens scored (shorter windows: prefix sums)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--out")
    ap.add_argument("--report", help="a pool file: print pass@1 of the selection variants")
    args = ap.parse_args()
    if args.report:
        report(args.report)
    elif args.out:
        collect(args)
    else:
        ap.error("--out or --report")


if __name__ == "__main__":
    main()
