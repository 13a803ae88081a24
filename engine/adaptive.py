"""Adaptive compute: the first answer first; more samples only where the confidence gate is unsure of it.

`adaptive_complete(engine, request, …)` (a request or an `Engine.prepare`d one) decodes the first answer with its entropies or, with `first="complete"`, takes
it from `Engine.complete` (completion cache, typed-through answers, KV reuse — what an editor needs while the user
types); scores it with the gate; and when the gate gives it less than the policy's `confident`, decodes `k` more
candidates together from the same prompt, with a token budget scaled to the first answer, and takes the best
(selection `auto`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace

from .engine import Engine, Prepared
from .gate import Gate
from .selection import select
from .types import Candidate, Completion, CompletionRequest, SampleSet, StopReason, Timings


@dataclass(frozen=True)
class AdaptivePolicy:
    """How many samples to add given the first candidate's gate probability `p`.

    p >= confident: keep the first answer; p >= unsure: `few` more samples; below: `many` more. The extra samples'
    token budget is `token_factor` × the first answer's token count (at least `min_tokens`), since they answer the
    same question and a much longer answer is rarely the right one.
    """

    # Defaults from the HumanEval single-line pool (bench/scaling_report.py): keep the greedy answer when the gate
    # gives it ≥ 0.4, else 7 more samples (8 in all).
    confident: float = 0.4
    unsure: float = 0.2
    few: int = 7
    many: int = 7
    token_factor: float = 2.0
    min_tokens: int = 16

    def samples_for(self, p: float) -> int:
        if p >= self.confident:
            return 0
        return self.few if p >= self.unsure else self.many


@dataclass
class AdaptiveResult:
    completion: Completion
    probability: float  # gate probability of the first candidate (nan for a typed-through answer: not scored)
    chosen: Candidate
    first: Candidate
    n_samples: int  # candidates decoded in all (1 when the first answer was kept)
    decode_tokens: int  # tokens decoded in all
    timings: Timings
    sample_set: SampleSet
    chosen_probability: float  # gate probability of the chosen candidate (nan when not scored)

    def should_show(self, threshold: float) -> bool:
        """The language server's test: hide the suggestion when the gate judges it likely wrong. A typed-through
        answer (the user just typed what the model predicted) is not judged again."""
        if not self.completion.text.strip():
            return False
        if self.completion.stop_reason == StopReason.TYPED:
            return True
        return self.chosen_probability >= threshold


def _kept(first: Candidate, first_set: SampleSet, p: float) -> AdaptiveResult:
    return AdaptiveResult(first.completion, p, first, first, 1, first.decoded_tokens, first_set.timings, first_set, p)


def adaptive_complete(
    engine: Engine,
    request: CompletionRequest | Prepared,
    *,
    gate: Gate,
    policy: AdaptivePolicy | None = None,
    method: str = "auto",
    cancel: threading.Event | None = None,
    first: str = "sample",
) -> AdaptiveResult:
    """Greedy first; more samples only where the gate is unsure (see the module docstring).

    `first`: "sample" (the first answer decoded with its entropies, no cache) or "complete" (the language
    server's way: through `Engine.complete`, and a typed-through answer is returned as is, unscored). When a sampled candidate wins, the caller
    shows it and should `engine.remember` it, so typing through it is answered from it.
    """
    policy = policy or AdaptivePolicy()
    prepared = engine.prepare(request)
    ctx, req = prepared.context, prepared.request
    if first == "complete":
        c = engine.complete(prepared, cancel=cancel)
        head = Candidate(completion=c, index=0, seed=req.seed, greedy=req.temperature <= 0,
                         decoded_tokens=c.timings.decode_tokens)  # no entropies: the gate uses its logprob model
        first_set = SampleSet([head], ctx, req, c.timings)
        if c.stop_reason in (StopReason.TYPED, StopReason.CANCELLED):
            return _kept(head, first_set, math.nan)
    elif first == "sample":
        first_set = engine.sample(prepared, 1, include_greedy=True, cancel=cancel)
        head = first_set.candidates[0]
    else:
        raise ValueError(f"first must be 'complete' or 'sample', not {first!r}")
    p = gate.score(head, ctx)
    k = policy.samples_for(p)
    if k == 0 or head.completion.stop_reason == StopReason.CANCELLED or (cancel is not None and cancel.is_set()):
        return _kept(head, first_set, p)
    # The first answer's length sets the others' token budget; an answer from the cache decoded nothing now, so
    # its tokens are what it had cost.
    n_first = head.decoded_tokens or len(head.completion.token_logprobs)
    budget = max(policy.min_tokens, int(math.ceil(policy.token_factor * max(1, n_first))))
    more = engine.sample(prepared, k, include_greedy=False, max_tokens=min(budget, prepared.max_tokens), cancel=cancel)
    if cancel is not None and cancel.is_set():
        return _kept(head, first_set, p)
    pool = [head] + [replace(c, index=i + 1) for i, c in enumerate(more.candidates)
                     if c.completion.stop_reason != StopReason.CANCELLED]
    chosen = select(pool, ctx, method=method)
    a, b = first_set.timings, more.timings
    t = Timings(
        prompt_tokens=a.prompt_tokens or b.prompt_tokens,
        prompt_reused=a.prompt_reused,
        prompt_evaluated=a.prompt_evaluated + b.prompt_evaluated,
        prompt_ms=a.prompt_ms + b.prompt_ms,
        decode_tokens=a.decode_tokens + b.decode_tokens,
        decode_ms=a.decode_ms + b.decode_ms,
        total_ms=a.total_ms + b.total_ms,
    )
    merged = SampleSet(pool, ctx, req, t, first_set.batches + more.batches)
    pc = p if chosen is head else gate.score(chosen, ctx)
    return AdaptiveResult(chosen.completion, p, chosen, head, 1 + k, t.decode_tokens, t, merged, pc)
