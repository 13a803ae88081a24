"""Collect a candidate pool for the test-time-scaling study (issue 6).

For each HumanEval single-line task of a seeded sample: one greedy candidate plus N samples from ONE prompt evaluation
(Engine.sample), each with its decode-pass signals (token log-probabilities, entropies), a syntax check, the
hidden HumanEval tests (the label) and the problem's public docstring examples run with doctest (the "user's tests"
verifier for selection with tests). Writes one JSON line per task; rerunning resumes.

    nice python bench/scaling_collect.py --limit 150 --seed 0 --samples 32 --mode line --out /tmp/scaling/pool.jsonl

Everything downstream (bench/scaling_report.py) is computed from this file, so selection methods, k, the gate fit and
adaptive policies are compared on exactly the same candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

DOCTEST_TAIL = """

import doctest as _cf_doctest, sys as _cf_sys
_cf_r = _cf_doctest.testmod(optionflags=_cf_doctest.NORMALIZE_WHITESPACE | _cf_doctest.ELLIPSIS)
_cf_sys.exit(1 if _cf_r.failed else (0 if _cf_r.attempted else 3))
"""


def doctest_program(filled: str) -> str:
    """The filled document checked against its own docstring examples (exit 3: there are none)."""
    return filled + DOCTEST_TAIL


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--mode", default="line", help="completion mode asked of the engine: auto | line | block")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-seq", type=int, default=None, help="sequences (more candidates are decoded in waves)")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per test program")
    ap.add_argument("--max-tasks", type=int, default=None, help="only this many tasks (after --skip)")
    ap.add_argument("--skip", type=int, default=0, help="skip the first N tasks of the sample (another shard)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    from codefill.engine import Engine, EngineConfig, apply_completion
    from codefill.eval.execution import run_program
    from codefill.eval.humaneval import build_tasks, problem_by_id, program_for, sample_tasks
    from codefill.eval.runner import request_for
    from codefill.engine.selection import normalize, syntax_ok

    tasks = sample_tasks(build_tasks("single-line", args.seed), args.limit, args.seed)[args.skip :]
    if args.max_tasks is not None:
        tasks = tasks[: args.max_tasks]
    done = set()
    if os.path.exists(args.out):
        with open(args.out) as fh:
            done = {json.loads(line)["task_id"] for line in fh if line.strip()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    n = 1 + args.samples
    engine = Engine.load(EngineConfig(n_seq=args.n_seq or n, n_threads=args.threads))
    t_all = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    def check(problem, filled):
        hidden = run_program(program_for(problem, filled), args.timeout)
        # A candidate that loops in the hidden tests loops in its examples too: don't wait twice.
        pub = hidden if hidden.status == "timeout" else run_program(doctest_program(filled), args.timeout)
        return hidden, pub

    def finalize(out, k, task, s, futures, filled_of):
        cands = []
        for c, filled in zip(s.candidates, filled_of):
            hidden, pub = futures[filled].result()
            cands.append({
                "text": c.text, "greedy": c.greedy, "seed": c.seed, "stop_reason": c.completion.stop_reason,
                "mode": c.completion.mode, "token_logprobs": [round(x, 5) for x in c.token_logprobs],
                "entropies": [round(x, 5) for x in c.entropies], "decoded_tokens": c.decoded_tokens,
                "syntax_ok": syntax_ok(s.context, c.text), "norm": normalize(c.text, "python"),
                "passed": hidden.passed, "status": hidden.status,
                "public": {0: "passed", 3: "none"}.get(pub.returncode, "failed" if pub.status != "timeout" else "timeout"),
                "public_output": pub.output[-600:] if pub.returncode not in (0, 3) else "",
            })
        rec = {
            "task_id": task.task_id, "problem_id": task.problem_id, "target": task.target,
            "line_prefix": s.context.line_prefix, "mode": s.context.mode,
            "timings": s.timings.to_dict(), "batches": s.batches, "candidates": cands,
        }
        out.write(json.dumps(rec) + "\n")
        out.flush()
        g = cands[0]
        print(f"[{k + 1}/{len(tasks)}] {task.task_id} greedy={'P' if g['passed'] else '-'} "
              f"any={sum(c['passed'] for c in cands)}/{n} decode={s.timings.decode_ms / 1000:.1f}s "
              f"prompt={s.timings.prompt_ms / 1000:.1f}s elapsed={time.perf_counter() - t_all:.0f}s",
              file=sys.stderr, flush=True)

    # Test programs of one task run while the model decodes the next.
    with open(args.out, "a") as out, ThreadPoolExecutor(max_workers=2) as ex:
        pending = None
        for k, task in enumerate(tasks):
            if task.task_id in done:
                continue
            req = request_for(task, completion_mode=args.mode, seed=args.seed)
            s = engine.sample(req, n, temperature=args.temperature, top_p=args.top_p)
            if pending is not None:
                finalize(out, *pending)
            problem = problem_by_id(task.problem_id)
            filled_of = [apply_completion(task.document, c.completion) for c in s.candidates]
            futures = {}
            for filled in filled_of:
                if filled not in futures:
                    futures[filled] = ex.submit(check, problem, filled)
            pending = (k, task, s, futures, filled_of)
        if pending is not None:
            finalize(out, *pending)


if __name__ == "__main__":
    main()
