"""Run infilling tasks through the engine, score them, summarise.

Completions are produced one after another (the model is serial); then the test programs run several at once, each
in its own sandboxed subprocess (execution.py). Greedy (temperature 0) runs are deterministic: the same
tasks, seed and model give the same results.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from .execution import ExecResult, run_program
from .humaneval import InfillTask, problem_by_id, program_for
from .metrics import edit_similarity, exact_match, pass_at_k, percentile


@dataclass
class SampleRecord:
    text: str
    passed: bool | None  # None when the task has no tests (repo tasks)
    status: str
    exact: bool
    edit_sim: float
    latency_ms: float
    stop_reason: str
    decode_tokens: int
    logprob_mean: float | None
    logprob_min: float | None
    token_logprobs: list[float] = field(default_factory=list)
    output: str = ""  # tail of the test output when it failed


@dataclass
class TaskRecord:
    task_id: str
    mode: str
    target: str
    samples: list[SampleRecord]

    @property
    def n_correct(self) -> int:
        return sum(1 for s in self.samples if s.passed)


@dataclass
class EvalReport:
    records: list[TaskRecord]
    summary: dict
    meta: dict

    def to_dict(self) -> dict:
        return {"summary": self.summary, "meta": self.meta, "records": [asdict(r) for r in self.records]}


def ks_for(samples: int) -> list[int]:
    ks, k = [], 1
    while k <= samples:
        ks.append(k)
        k *= 2
    if samples not in ks:
        ks.append(samples)
    return ks


def summarize(records: list[TaskRecord], executed: bool = True) -> dict:
    n_samples = min((len(r.samples) for r in records), default=0)
    latencies = [s.latency_ms for r in records for s in r.samples]
    out = {
        "tasks": len(records),
        "samples_per_task": n_samples,
        "exact_match": _mean([r.samples[0].exact for r in records if r.samples]),
        "edit_similarity": _mean([r.samples[0].edit_sim for r in records if r.samples]),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
        "decode_tokens": sum(s.decode_tokens for r in records for s in r.samples),
    }
    if executed and records:
        for k in ks_for(n_samples):
            out[f"pass@{k}"] = _mean([pass_at_k(len(r.samples), r.n_correct, k) for r in records])
        out["timeouts"] = sum(1 for r in records for s in r.samples if s.status == "timeout")
    return out


def _mean(xs) -> float:
    xs = list(xs)
    return round(sum(float(x) for x in xs) / len(xs), 4) if xs else 0.0


def request_for(task: InfillTask, *, completion_mode: str = "auto", temperature: float = 0.0, top_p: float = 1.0,
                seed: int = 0, max_tokens: int | None = None):
    from codefill.engine import CompletionRequest

    line, character = task.cursor
    return CompletionRequest(
        text=task.document, line=line, character=character,
        path=task.problem_id.replace("/", "_") + ".py",
        mode=completion_mode, max_tokens=max_tokens, time_budget_ms=None,
        temperature=temperature, top_p=top_p, seed=seed, use_cache=False,
    )


def complete_task(engine, task: InfillTask, samples: int = 1, **kw) -> list:
    """`samples` completions for a task: greedy for one sample at temperature 0, else sampled with distinct seeds."""
    req = request_for(task, **kw)
    if samples == 1:
        return [engine.complete(req)]
    if req.temperature <= 0:
        req = replace(req, temperature=0.8, top_p=0.95)
    return engine.complete_many(req, samples)


def evaluate(
    engine,
    tasks: list[InfillTask],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    completion_mode: str = "auto",
    max_tokens: int | None = None,
    execute: bool = True,
    workers: int | None = None,
    timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Complete every task `samples` times; run HumanEval's tests on each result when `execute`."""
    from codefill import __version__
    from codefill.engine import apply_completion

    workers = workers or max(1, min(4, os.cpu_count() or 1))
    records: list[TaskRecord] = []
    programs: list[tuple[SampleRecord, str]] = []
    t_start = time.perf_counter()
    # Phase 1: completions, with nothing else running (test programs competing for the cores would distort the
    # latencies, and llama.cpp's worker threads degrade badly when cores are oversubscribed).
    for n, task in enumerate(tasks):
        results = []
        t0 = time.perf_counter()
        completions = complete_task(
            engine, task, samples, completion_mode=completion_mode, temperature=temperature, top_p=top_p,
            seed=seed, max_tokens=max_tokens,
        )
        per_sample_ms = (time.perf_counter() - t0) * 1000 / max(1, len(completions))
        for c in completions:
            filled = apply_completion(task.document, c)
            # What the completion put in the hole (the text up to the suffix), for exact match.
            inserted = filled[len(task.prefix) : len(filled) - len(task.suffix)] if filled.endswith(task.suffix) else c.text
            rec = SampleRecord(
                text=c.text, passed=None, status="not-run", exact=exact_match(inserted, task.target),
                edit_sim=round(edit_similarity(inserted.strip(), task.target.strip()), 4),
                latency_ms=round(c.timings.total_ms or per_sample_ms, 2), stop_reason=c.stop_reason,
                decode_tokens=c.timings.decode_tokens, logprob_mean=c.logprob_mean, logprob_min=c.logprob_min,
                token_logprobs=[round(x, 4) for x in c.token_logprobs],
            )
            if execute:
                programs.append((rec, program_for(problem_by_id(task.problem_id), filled)))
            results.append(rec)
        records.append(TaskRecord(task.task_id, task.mode, task.target, results))
        if progress:
            progress(n + 1, len(tasks) + len(programs) if not execute else len(tasks) * (1 + samples))
    # Phase 2: the test programs, several at once, each sandboxed.
    if programs:
        done = 0
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [(rec, pool.submit(run_program, code, timeout)) for rec, code in programs]
            for rec, fut in futures:
                res: ExecResult = fut.result()
                rec.passed, rec.status = res.passed, res.status
                if not res.passed:
                    rec.output = res.output[-500:]
                done += 1
                if progress:
                    progress(len(tasks) + done, len(tasks) + len(programs))
    summary = summarize(records, executed=execute)
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    meta = {
        "codefill_version": __version__,
        "model": {k: v for k, v in engine.model_info().items() if k != "config"},
        "engine_config": asdict(engine.config),
        "seed": seed,
        "samples": samples,
        "temperature": temperature if samples == 1 else (temperature or 0.8),
        "top_p": top_p if samples == 1 or temperature > 0 else 0.95,
        "completion_mode": completion_mode,
        "timeout_s": timeout,
    }
    return EvalReport(records, summary, meta)
