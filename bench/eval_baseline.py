"""The raw llama-cpp-python baseline for HumanEval single-line infilling: greedy, prefix only, one line.

For each task of the same seeded sample that `codefill eval humaneval --limit N --seed S` uses: the text before the
hole (prompt + solution up to the cursor, indentation included) goes to `Llama.create_completion` as is (temperature
0, stop at the first newline, at most 64 tokens, no suffix, no FIM tokens, no filters); the line it returns fills the
hole, and the program is scored by the harness's own execution (same sandbox, same tests) and exact match. This
is what "no engine at all" scores, so an engine figure on the same tasks can be read against it.

    nice python bench/eval_baseline.py --limit 150 --seed 0 --threads 1 --out /tmp/eval-baseline.json

Prints the summary (pass@1, exact match, edit similarity, latency) and the per-task comparison with an engine run
when --compare results.json (from `codefill eval humaneval`) is given: tasks present in both are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--model", default=None, help="GGUF file (default: the embedded model)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cursor", choices=("indent", "line-start"), default="indent",
                    help="indent: the prompt ends after the line's indentation, as the harness asks the engine; "
                         "line-start: the prompt ends at the start of the line and the model writes the indentation "
                         "too (the whole-line hole of Bavarian et al.)")
    ap.add_argument("--out", default=None, help="write the summary and per-task records as JSON")
    ap.add_argument("--compare", default=None, help="an engine run's results.json: compare on the shared tasks")
    args = ap.parse_args(argv)

    from llama_cpp import Llama

    import codefill
    from codefill.eval.execution import run_program
    from codefill.eval.humaneval import build_tasks, problem_by_id, program_for, sample_tasks
    from codefill.eval.metrics import edit_similarity, exact_match
    from codefill.eval.report import summary_table
    from codefill.eval.runner import SampleRecord, TaskRecord, summarize
    from codefill.engine.models import resolve_model

    path = resolve_model(args.model)
    _same_cpu_kernels_as_the_engine(path)
    llm = Llama(model_path=path, n_ctx=4096, n_batch=512, n_threads=args.threads,
                n_threads_batch=args.threads, seed=args.seed, verbose=False)
    tasks = sample_tasks(build_tasks("single-line", args.seed), args.limit, args.seed)
    records, programs = [], []
    for n, task in enumerate(tasks):
        line_start = task.prefix.rfind("\n") + 1
        indent = task.prefix[line_start:]
        prompt = task.prefix if args.cursor == "indent" else task.prefix[:line_start]
        t0 = time.perf_counter()
        out = llm.create_completion(prompt, max_tokens=args.max_tokens, temperature=0.0, stop=["\n"])
        ms = (time.perf_counter() - t0) * 1000
        line = out["choices"][0]["text"].split("\n")[0]
        # `text`: what fills the hole after the indentation the task keeps. With --cursor line-start the model's line
        # replaces the indentation too, and only a line with the original indentation can match exactly.
        text = line[len(indent):] if args.cursor == "line-start" and line.startswith(indent) else line
        filled = prompt + line + task.suffix
        exact = filled == task.prefix + text + task.suffix and exact_match(text, task.target)
        rec = SampleRecord(text=text, passed=None, status="not-run", exact=exact,
                           edit_sim=round(edit_similarity(text.strip(), task.target.strip()), 4), latency_ms=round(ms, 2),
                           stop_reason=out["choices"][0]["finish_reason"] or "",
                           decode_tokens=out["usage"]["completion_tokens"], logprob_mean=None, logprob_min=None)
        records.append(TaskRecord(task.task_id, task.mode, task.target, [rec]))
        programs.append((rec, program_for(problem_by_id(task.problem_id), filled)))
        print(f"\r{n + 1}/{len(tasks)} completions", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    with ThreadPoolExecutor(args.workers) as pool:
        for rec, res in zip([r for r, _ in programs], pool.map(lambda p: run_program(p[1]), programs)):
            rec.passed, rec.status = res.passed, res.status
    summary = summarize(records)
    print(f"raw llama-cpp-python, greedy, prefix only, first line (cursor: {args.cursor})\n")
    print(summary_table(summary))
    result = {
        "summary": summary,
        "meta": {"baseline": "llama-cpp-python create_completion(prefix, temperature=0, stop=['\\n'])",
                 "model": os.path.basename(path), "seed": args.seed, "limit": args.limit, "cursor": args.cursor, "threads": args.threads,
                 "max_tokens": args.max_tokens, "codefill_version": codefill.__version__,
                 "python": sys.version.split()[0], "platform": platform.platform()},
        "records": [{"task_id": r.task_id, "target": r.target, "text": r.samples[0].text,
                     "passed": r.samples[0].passed, "exact": r.samples[0].exact,
                     "latency_ms": r.samples[0].latency_ms} for r in records],
    }
    if args.compare:
        result["comparison"] = compare(result["records"], args.compare)
        c = result["comparison"]
        print(f"\non the {c['tasks']} tasks in both runs: engine pass@1 {100 * c['engine_pass@1']:.1f}%, exact "
              f"{100 * c['engine_exact_match']:.1f}% | baseline pass@1 {100 * c['baseline_pass@1']:.1f}%, exact "
              f"{100 * c['baseline_exact_match']:.1f}% | engine-only passes {c['engine_only']}, "
              f"baseline-only passes {c['baseline_only']}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return 0


def _same_cpu_kernels_as_the_engine(path: str) -> None:
    """Load with the engine's decision on llama.cpp's extra CPU buffer types (engine/hardware.py): on CPUs whose AMX
    kernels fault (some VMs), plain `Llama(...)` dies with SIGILL on the first decode. `Llama` has no parameter for
    it, so its default model parameters get the same flag the engine uses. Decoding is untouched."""
    import llama_cpp.llama_cpp as C

    from codefill.engine.hardware import use_extra_buffer_types

    flag = use_extra_buffer_types(path)
    default = C.llama_model_default_params

    def params():
        p = default()
        p.use_extra_bufts = flag
        return p

    C.llama_model_default_params = params


def compare(baseline_records: list[dict], engine_results: str) -> dict:
    """Pass@1 and exact match of both on the tasks present in both runs, and the tasks only one of them passes."""
    with open(engine_results, encoding="utf-8") as fh:
        engine = {r["task_id"]: r["samples"][0] for r in json.load(fh)["records"]}
    shared = [r for r in baseline_records if r["task_id"] in engine]
    n = max(1, len(shared))
    return {
        "tasks": len(shared),
        "engine_pass@1": sum(bool(engine[r["task_id"]]["passed"]) for r in shared) / n,
        "engine_exact_match": sum(bool(engine[r["task_id"]]["exact"]) for r in shared) / n,
        "baseline_pass@1": sum(bool(r["passed"]) for r in shared) / n,
        "baseline_exact_match": sum(bool(r["exact"]) for r in shared) / n,
        "engine_only": sum(1 for r in shared if engine[r["task_id"]]["passed"] and not r["passed"]),
        "baseline_only": sum(1 for r in shared if r["passed"] and not engine[r["task_id"]]["passed"]),
    }


if __name__ == "__main__":
    sys.exit(main())
