"""Run infilling tasks through the engine, score them, summarise.

Completions are produced one after another (the model is serial); then the test programs run several at once, each
in its own sandboxed subprocess (execution.py). Greedy (temperature 0) runs are deterministic: the same
tasks, seed and model give the same results.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable

from codefill import __version__
from codefill.engine import CompletionRequest, apply_completion
from codefill.engine.config import SAMPLE_TEMPERATURE, SAMPLE_TOP_P
from codefill.engine.selection import default_method

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
    mode: str = ""  # the engine's completion mode ("line" | "block")
    chosen: int | None = None  # with candidates: the index of the one selected (0: greedy)
    distinct: int | None = None  # with candidates: how many distinct texts they had


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
    """The k reported for K samples: powers of two below K, and K (1, 2, 4, 8, 10 for K = 10)."""
    ks, k = [], 1
    while k <= samples:
        ks.append(k)
        k *= 2
    if samples not in ks:
        ks.append(samples)
    return ks


def summarize(records: list[TaskRecord], executed: bool = True) -> dict:
    """Summary over task records.

    - pass@k: the unbiased estimator (metrics.pass_at_k) averaged over tasks, for k in ks_for(K) where K is the
      smallest number of samples of any task; pass@1 of a greedy run is the fraction of tasks whose tests pass;
    - exact_match / edit_similarity: averaged over all samples (for one sample per task: the fraction of tasks);
    - latency_p50_ms / latency_p95_ms: `Completion.timings.total_ms` of every sample (prompt + decode + filters);
    - status: counts of passed / failed / timeout / crashed test programs; stop_reasons: the engine's stop reasons.
    """
    n_samples = min((len(r.samples) for r in records), default=0)
    samples = [s for r in records for s in r.samples]
    latencies = [s.latency_ms for s in samples]
    out = {
        "tasks": len(records),
        "samples_per_task": n_samples,
    }
    if executed and records:
        for k in ks_for(n_samples):
            out[f"pass@{k}"] = _mean([pass_at_k(len(r.samples), r.n_correct, k) for r in records])
    out.update({
        "exact_match": _mean([s.exact for s in samples]),
        "edit_similarity": _mean([s.edit_sim for s in samples]),
        "latency_p50_ms": round(percentile(latencies, 50), 1),
        "latency_p95_ms": round(percentile(latencies, 95), 1),
        "decode_tokens": sum(s.decode_tokens for s in samples),
    })
    if executed and records:
        out["timeouts"] = sum(1 for s in samples if s.status == "timeout")
        out["status"] = dict(sorted(Counter(s.status for s in samples).items()))
    out["stop_reasons"] = dict(sorted(Counter(s.stop_reason for s in samples).items()))
    kinds = sorted({r.mode for r in records})
    if len(kinds) > 1:  # repo runs: line and block holes separately
        for kind in kinds:
            ss = [s for r in records if r.mode == kind for s in r.samples]
            out[f"{kind}_tasks"] = sum(1 for r in records if r.mode == kind)
            out[f"{kind}_exact_match"] = _mean([s.exact for s in ss])
            out[f"{kind}_edit_similarity"] = _mean([s.edit_sim for s in ss])
    return out


def _mean(xs) -> float:
    xs = list(xs)
    return round(sum(float(x) for x in xs) / len(xs), 4) if xs else 0.0


COMPLETION_MODES = ("task", "auto", "line", "block")


def request_for(task: InfillTask, *, completion_mode: str = "task", temperature: float = 0.0, top_p: float = 1.0,
                seed: int = 0, max_tokens: int | None = None):
    """The request an editor sends at the task's hole: the whole document without the hole, the cursor at the hole.

    `completion_mode` is the editor's `mode` setting: "line", "block" or "auto" (the engine decides from the cursor),
    or "task" (default): what the task asks for (`InfillTask.completion_mode`: a line for single-line and repo line
    holes, a block for multi-line and repo block holes, auto for random spans). No time budget, no cache: the
    result depends only on the document, the model, the settings and the seed.
    """
    if completion_mode not in COMPLETION_MODES:
        raise ValueError(f"unknown completion mode {completion_mode!r}; expected one of {', '.join(COMPLETION_MODES)}")
    line, character = task.cursor
    return CompletionRequest(
        text=task.document, line=line, character=character,
        path=task.problem_id.replace("/", "_") + ".py" if task.problem_id.startswith("HumanEval/") else task.problem_id,
        mode=task.completion_mode if completion_mode == "task" else completion_mode, max_tokens=max_tokens,
        time_budget_ms=None, temperature=temperature, top_p=top_p, seed=seed, use_cache=False,
    )


def sampling_settings(samples: int, temperature: float, top_p: float) -> tuple[float, float]:
    """(temperature, top_p) actually used: one sample at temperature 0 is greedy; several samples need randomness,
    so temperature 0 becomes SAMPLE_TEMPERATURE (0.8) with SAMPLE_TOP_P (0.95) (Chen et al. 2021's setting for pass@k with k > 1)."""
    if samples > 1 and temperature <= 0:
        return SAMPLE_TEMPERATURE, (SAMPLE_TOP_P if top_p >= 1.0 else top_p)
    return temperature, top_p


def complete_task(engine, task: InfillTask, samples: int = 1, **kw) -> list:
    """`samples` completions for a task: one `engine.complete` for one sample, else `engine.complete_many` (seeds
    seed, seed+1, …) at the settings of `sampling_settings`."""
    temperature, top_p = sampling_settings(samples, kw.pop("temperature", 0.0), kw.pop("top_p", 1.0))
    req = request_for(task, temperature=temperature, top_p=top_p, **kw)
    if samples == 1:
        return [engine.complete(req)]
    return list(engine.complete_many(req, samples))


def choose_task(engine, task: InfillTask, candidates: int, select: str | None, **kw):
    """One answer for a task chosen among `candidates` (the greedy one plus candidates-1 samples at
    SAMPLE_TEMPERATURE/SAMPLE_TOP_P, from one prompt evaluation: `Engine.sample`) by selection `select`
    (`Engine.choose`: `suffix` scores them by the text after the hole first; None: selection.default_method for the
    hole's mode). Returns the chosen Candidate and the number of distinct texts among them."""
    req = request_for(task, **kw)
    s = engine.sample(req, candidates)
    ranked = engine.choose(req, s.candidates, select or default_method(s.context.mode))
    return ranked[0], len({c.text for c in s.candidates})


def inserted_text(task: InfillTask, filled: str, completion) -> str:
    """What the completion put in the hole: the filled document between the task's prefix and suffix (the
    completion's own text when it also changed text outside the hole)."""
    if filled.startswith(task.prefix) and filled.endswith(task.suffix) and len(filled) >= len(task.prefix) + len(task.suffix):
        return filled[len(task.prefix) : len(filled) - len(task.suffix)]
    return completion.text


def evaluate(
    engine,
    tasks: list[InfillTask],
    *,
    samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    completion_mode: str = "task",
    max_tokens: int | None = None,
    execute: bool = True,
    workers: int | None = None,
    timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
    candidates: int = 1,
    select: str | None = None,
) -> EvalReport:
    """Complete every task `samples` times through `engine.complete` / `engine.complete_many` (see `request_for`);
    when `execute`, run HumanEval's tests on every filled document (`workers` programs at once, `timeout` seconds
    each). `progress(done, total)` is called after each completion and each test program.

    `candidates` > 1 (with one sample): each task's answer is chosen among that many candidates by `select` (None:
    `suffix` for line holes, `auto` for blocks; `choose_task`), and its latency is the whole of it (decoding every
    candidate, and scoring them for `suffix`).

    Two phases: all completions first, with nothing else running (test programs competing for the cores would
    distort the latencies, and llama.cpp's threads degrade badly when the cores are oversubscribed), then the
    programs. Greedy runs (one sample, temperature 0) are deterministic: the same task list gives the same answers,
    whatever ran before (each problem starts from an empty KV cache).
    """
    if samples < 1:
        raise ValueError("samples must be at least 1")
    if candidates < 1:
        raise ValueError("candidates must be at least 1")
    if candidates > 1 and samples > 1:
        raise ValueError("candidates (one answer chosen among several) needs samples = 1")
    temperature, top_p = sampling_settings(samples, temperature, top_p)
    workers = workers or max(1, min(4, os.cpu_count() or 1))
    records: list[TaskRecord] = []
    programs: list[tuple[SampleRecord, str]] = []
    total = len(tasks) * (1 + samples) if execute else len(tasks)
    t_start = time.perf_counter()
    for n, task in enumerate(tasks):
        if n == 0 or task.problem_id != tasks[n - 1].problem_id:
            # Each problem's first prompt from an empty KV cache: what the cache held before (another problem, another
            # run) changes how its prompt is split into batches, and llama.cpp's sums with it, so close choices (the
            # diversions' least sure tokens most of all) would depend on the tasks evaluated before.
            reset = getattr(engine, "reset", None)
            if reset is not None:
                reset()
        results = []
        t0 = time.perf_counter()
        chosen = distinct = None
        if candidates > 1:
            cand, distinct = choose_task(engine, task, candidates, select, completion_mode=completion_mode,
                                         seed=seed, max_tokens=max_tokens)
            completions, chosen = [cand.completion], cand.index
        else:
            completions = complete_task(
                engine, task, samples, completion_mode=completion_mode, temperature=temperature, top_p=top_p,
                seed=seed, max_tokens=max_tokens,
            )
        per_sample_ms = (time.perf_counter() - t0) * 1000 / max(1, len(completions))
        for c in completions:
            filled = apply_completion(task.document, c)
            inserted = inserted_text(task, filled, c)
            rec = SampleRecord(
                text=c.text, passed=None, status="not-run", exact=exact_match(inserted, task.target),
                edit_sim=round(edit_similarity(inserted.strip(), task.target.strip()), 4),
                latency_ms=round(per_sample_ms if candidates > 1 else (c.timings.total_ms or per_sample_ms), 2),
                stop_reason=c.stop_reason, decode_tokens=c.timings.decode_tokens, logprob_mean=c.logprob_mean,
                logprob_min=c.logprob_min, token_logprobs=[round(x, 4) for x in c.token_logprobs], mode=c.mode,
                chosen=chosen, distinct=distinct,
            )
            if execute:
                programs.append((rec, program_for(problem_by_id(task.problem_id), filled)))
            results.append(rec)
        records.append(TaskRecord(task.task_id, task.mode, task.target, results))
        if progress:
            progress(n + 1, total)
    completions_s = time.perf_counter() - t_start
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
                    progress(len(tasks) + done, total)
    summary = summarize(records, executed=execute)
    summary["completions_s"] = round(completions_s, 1)
    summary["wall_s"] = round(time.perf_counter() - t_start, 1)
    meta = {
        "codefill_version": __version__,
        "model": {k: v for k, v in engine.model_info().items() if k != "config"},
        "engine_config": asdict(engine.config),
        "seed": seed,
        "samples": samples,
        "temperature": temperature,
        "top_p": top_p,
        "completion_mode": completion_mode,
        "candidates": candidates,
        "select": (select or "default") if candidates > 1 else None,
        "suffix_scored": bool(candidates > 1 and select in ("suffix", None) and getattr(engine, "scores_suffix", False)),
        "max_tokens": max_tokens,
        "timeout_s": timeout,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    return EvalReport(records, summary, meta)
