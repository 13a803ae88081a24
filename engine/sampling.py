"""Repeated sampling from one prompt evaluation, and adaptive compute.

`sample(engine, req, n)` evaluates the prompt once on sequence 0, shares its KV cache with sequences 1..n-1
(`copy_seq`, no recomputation) and decodes all candidates together, one token per sequence per batch
(`decode_parallel`). Candidate 0 is greedy unless `include_greedy=False`; the others sample at the request's
temperature/top-p (a default of 0.8/0.95 when the request is greedy) with seeds req.seed+1, req.seed+2, ….
Each candidate records per-token log-probabilities (untempered) and entropies of the model's full distribution:
the confidence gate's signals.

`adaptive_complete(engine, req, …)` decodes the greedy candidate first, scores it with the gate and spends extra
samples (and a token budget scaled to the first answer) only when the gate is unsure.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from .decode import Sampler, TextAccumulator, entry_constraint
from .stops import StopRules
from .types import Completion, CompletionRequest, Timings

DEFAULT_TEMPERATURE = 0.8
DEFAULT_TOP_P = 0.95


@dataclass(frozen=True)
class Candidate:
    """One sampled completion with the decode-pass signals the selectors and the gate use."""

    completion: Completion
    index: int  # 0 = the first (greedy when include_greedy)
    seed: int
    greedy: bool
    entropies: tuple[float, ...]  # entropy (nats) of the full next-token distribution at each kept token
    tokens: tuple[int, ...]
    decoded_tokens: int  # tokens decoded for this candidate, including those a stop rule cut off

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def token_logprobs(self) -> tuple[float, ...]:
        return self.completion.token_logprobs


@dataclass
class SampleSet:
    """Candidates that share one prompt evaluation, and what they cost together."""

    candidates: list[Candidate]
    context: object  # CompletionContext
    request: CompletionRequest
    timings: Timings  # prompt counted once; decode_tokens = all tokens decoded for all candidates
    batches: int = 0  # decode_parallel calls
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self):
        return iter(self.candidates)


def pick_with_entropy(
    sampler: Sampler, logits: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[int, float, float]:
    """(token, untempered log-probability, entropy of the untempered distribution) in one pass over the logits.

    `allowed` restricts the choice (token healing); log-probability and entropy stay the full distribution's.
    """
    # float32 element-wise work with float64 sums: exp over the vocabulary is ~10x cheaper than in float64, and
    # np.dot is avoided (a float64 BLAS dot can cost milliseconds when the cores are busy).
    x = np.asarray(logits, dtype=np.float32)
    m = float(np.max(x))
    e = np.exp(x - np.float32(m))
    s = float(e.sum(dtype=np.float64))
    logz = m + math.log(s)
    # H = logZ - E_p[x]
    entropy = logz - float(np.multiply(e, x).sum(dtype=np.float64)) / s
    if allowed is not None:
        xa = np.full_like(x, -np.inf)
        xa[allowed] = x[allowed]
        tok = int(np.argmax(xa)) if sampler.temperature <= 0 else _sample(sampler, xa)
        return tok, float(x[tok] - logz), max(entropy, 0.0)
    if sampler.temperature <= 0:
        tok = int(np.argmax(x))
        return tok, float(x[tok] - logz), max(entropy, 0.0)
    return _finish_pick(sampler, x, m, logz, entropy)


def _finish_pick(sampler: Sampler, x: np.ndarray, m: float, logz: float, entropy: float) -> tuple[int, float, float]:
    tok = _nucleus(sampler, x, m)
    return tok, float(x[tok] - logz), max(entropy, 0.0)


TOP_K_FAST = 64


def _nucleus(sampler: Sampler, x: np.ndarray, m: float) -> int:
    """Sample from the tempered, top-p-truncated distribution (Sampler's semantics) without sorting the vocabulary:
    the nucleus almost always lies within the 64 most likely tokens, which is checked, with a full sort otherwise."""
    t = sampler.temperature
    z = np.exp((x - m) / t)
    total = float(z.sum())
    k = min(TOP_K_FAST, len(x) - 1)
    top = np.argpartition(-x, k)[:k]
    top = top[np.argsort(-x[top], kind="stable")]
    p_top = z[top] / total
    cum = np.cumsum(p_top)
    if sampler.top_p < 1.0 and cum[-1] >= sampler.top_p:
        n_keep = int(np.searchsorted(cum, sampler.top_p)) + 1
        keep = top[:n_keep]
        q = p_top[:n_keep] / cum[n_keep - 1]
        return int(keep[min(int(np.searchsorted(np.cumsum(q), sampler.rng.random(), side="right")), n_keep - 1)])
    p = z / total
    if sampler.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        c = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(c, sampler.top_p)) + 1]
        q = p[keep] / p[keep].sum()
        return int(keep[min(int(np.searchsorted(np.cumsum(q), sampler.rng.random(), side="right")), len(keep) - 1)])
    c = np.cumsum(p)
    return int(min(int(np.searchsorted(c, sampler.rng.random() * c[-1], side="right")), len(p) - 1))


def _sample(sampler: Sampler, x: np.ndarray) -> int:
    m = float(np.max(x))
    p = np.exp((x.astype(np.float64) - m) / sampler.temperature)
    p /= p.sum()
    return int(sampler.rng.choice(len(p), p=p))


class _Stream:
    """Decoding state of one candidate. `heal`: text the prompt left out at its end (token healing) that the
    candidate's first tokens must reproduce; it is not part of the candidate's text."""

    def __init__(self, seq: int, sampler: Sampler, rules: StopRules, heal: str = ""):
        self.seq = seq
        self.sampler = sampler
        self.rules = rules
        self.heal = heal
        self.heal_bytes = heal.encode("utf-8")
        self.acc = TextAccumulator()
        self.tokens: list[int] = []
        self.logprobs: list[float] = []  # nan for tokens that only re-produce the healed text
        self.entropies: list[float] = []
        self.text = ""
        self.reason: str | None = None
        self.decoded = 0

    def allowed(self, rt) -> np.ndarray | None:
        return entry_constraint(rt, self.rules, self.heal_bytes, self.acc.text.encode("utf-8"), len(self.heal),
                                len(self.acc.text))

    def visible(self) -> str | None:
        """The candidate's text so far (None while still inside the healed text)."""
        return self.acc.text[len(self.heal) :] if len(self.acc.text) >= len(self.heal) else None

    def cut(self, cut: int, reason: str) -> None:
        n_keep = self.acc.tokens_within(cut + len(self.heal))
        self.text = self.acc.text[len(self.heal) : len(self.heal) + cut]
        del self.tokens[n_keep:]
        del self.logprobs[n_keep:]
        del self.entropies[n_keep:]
        self.reason = reason

    def finish(self, reason: str) -> None:
        self.text = self.acc.text[len(self.heal) :]
        self.reason = reason
        if reason in ("eos", "max_tokens", "time"):
            hit = self.rules.check(self.text, final=True)
            if hit is not None:
                self.cut(*hit)
            elif reason == "time" and self.rules.mode == "block" and "\n" in self.text:
                self.cut(self.text.rfind("\n"), "time")

    def signals(self) -> tuple[list[float], list[float]]:
        """Log-probabilities and entropies of the tokens that produced new text."""
        keep = [i for i, lp in enumerate(self.logprobs) if lp == lp]
        return [self.logprobs[i] for i in keep], [self.entropies[i] for i in keep]


def _ensure_sequences(engine, n: int) -> int:
    """How many sequences the runtime has (candidates beyond it are decoded in waves)."""
    return max(1, int(getattr(engine.runtime, "n_seq", 1)))


def sample(
    engine,
    req: CompletionRequest,
    n: int,
    *,
    temperature: float | None = None,
    top_p: float | None = None,
    include_greedy: bool = True,
    max_tokens: int | None = None,
    cancel: threading.Event | None = None,
    seed_offset: int = 0,
) -> SampleSet:
    """`n` candidates for `req` from one prompt evaluation (see the module docstring).

    `max_tokens` overrides the request's token budget for this call. Candidates beyond the runtime's `n_seq` are
    decoded in further waves that still share the evaluated prompt (copied again from sequence 0).
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    t0 = time.perf_counter()
    ctx = engine.context_for(req)
    prompt = engine.prompt_for(ctx)
    temp = temperature if temperature is not None else (req.temperature if req.temperature > 0 else DEFAULT_TEMPERATURE)
    tp = top_p if top_p is not None else (req.top_p if req.top_p < 1.0 else DEFAULT_TOP_P)
    limit = max_tokens if max_tokens is not None else engine._max_tokens(req, ctx.mode)
    rules = StopRules(ctx, engine.config.decode.max_lines)
    stop_ids = engine.format.stop_ids
    rt = engine.runtime
    n_seq = _ensure_sequences(engine, n)
    ticket = engine._ticket(req.document_id)  # a newer request for the same document stops this one, as in complete

    def cancelled() -> bool:
        return (cancel is not None and cancel.is_set()) or engine._superseded(ticket)

    streams_all: list[_Stream] = []
    seeds: list[int] = []
    batches = 0
    decode_ms = 0.0
    with engine._lock:
        tokens = engine._fit(prompt.tokens, engine._max_tokens(req))
        heal = getattr(prompt, "heal", "") or ""
        tpr = time.perf_counter()
        reused, evaluated = rt.sync(tokens, 0)
        prompt_ms = (time.perf_counter() - tpr) * 1000
        first_logits = rt.logits(0)
        n_prompt = len(tokens)
        deadline = engine._deadline(req, time.perf_counter())
        td = time.perf_counter()
        try:
            for wave_start in range(0, n, n_seq):
                wave = range(wave_start, min(n, wave_start + n_seq))
                if wave_start > 0:
                    rt.truncate(0, n_prompt)  # back to the bare prompt before sharing it again
                streams = []
                for j, i in enumerate(wave):
                    greedy = include_greedy and i == 0
                    seed = req.seed + seed_offset + i
                    seeds.append(seed)
                    sampler = Sampler(0.0 if greedy else temp, tp, seed)
                    seq = j
                    if seq != 0:
                        rt.copy_seq(0, seq)
                    streams.append(_Stream(seq, sampler, rules, heal))
                logits = {s.seq: first_logits for s in streams}
                active = list(streams)
                for _step in range(limit):
                    if cancelled():
                        for s in active:
                            s.finish("cancelled")
                        active = []
                        break
                    feed: dict[int, int] = {}
                    still = []
                    for s in active:
                        tok, lp, h = pick_with_entropy(s.sampler, logits[s.seq], s.allowed(rt))
                        if rt.is_eog(tok) or tok in stop_ids:
                            s.finish("eos")
                            continue
                        s.tokens.append(tok)
                        s.decoded += 1
                        s.acc.add(rt.token_piece(tok))
                        new_text = len(s.acc.text) > len(heal)
                        s.logprobs.append(lp if new_text else float("nan"))
                        s.entropies.append(h)
                        vis = s.visible()
                        hit = rules.check(vis) if vis is not None else None
                        if hit is not None:
                            s.cut(*hit)
                            continue
                        feed[s.seq] = tok
                        still.append(s)
                    active = still
                    if not active:
                        break
                    if deadline is not None and time.perf_counter() >= deadline:
                        for s in active:
                            s.finish("time")
                        active = []
                        break
                    if _step == limit - 1:
                        break
                    rt.decode_parallel(feed)
                    batches += 1
                    logits = {s.seq: rt.logits(s.seq) for s in active}
                for s in active:
                    s.finish("max_tokens")
                streams_all.extend(streams)
        finally:
            # Keep the prompt cached on sequence 0 for the next request; free the candidates' cells.
            for seq in range(1, min(n, n_seq)):
                rt.truncate(seq, 0)
            if len(rt.seq_tokens(0)) > n_prompt:
                rt.truncate(0, n_prompt)
        decode_ms = (time.perf_counter() - td) * 1000
    total_ms = (time.perf_counter() - t0) * 1000
    candidates = []
    for i, s in enumerate(streams_all):
        t = Timings(
            prompt_tokens=n_prompt,
            prompt_reused=reused if i == 0 else n_prompt,
            prompt_evaluated=evaluated if i == 0 else 0,
            prompt_ms=prompt_ms if i == 0 else 0.0,
            decode_tokens=s.decoded,
            decode_ms=decode_ms / max(1, len(streams_all)),
            total_ms=total_ms,
        )
        reason = s.reason or "max_tokens"
        lps, ents = s.signals()
        if reason == "cancelled":
            comp = engine._finish(ctx, "", "cancelled", (), t)
            lps, ents = [], []
        else:
            comp = engine._finish(ctx, s.text, reason, lps, t)
        candidates.append(
            Candidate(
                completion=comp, index=i, seed=seeds[i], greedy=include_greedy and i == 0,
                entropies=tuple(ents), tokens=tuple(s.tokens), decoded_tokens=s.decoded,
            )
        )
    timings = Timings(
        prompt_tokens=n_prompt, prompt_reused=reused, prompt_evaluated=evaluated, prompt_ms=prompt_ms,
        decode_tokens=sum(s.decoded for s in streams_all), decode_ms=decode_ms, total_ms=total_ms,
    )
    return SampleSet(candidates, ctx, req, timings, batches)


# ---------------------------------------------------------------------------------------------- adaptive compute


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
    sample_set: SampleSet | None = None
    chosen_probability: float | None = None  # gate probability of the chosen candidate

    def should_show(self, threshold: float) -> bool:
        """The language server's test: hide the suggestion when the gate judges it likely wrong. A typed-through
        answer (the user just typed what the model predicted) is not judged again."""
        if not self.completion.text.strip():
            return False
        if self.completion.stop_reason == "typed":
            return True
        p = self.probability if self.chosen_probability is None else self.chosen_probability
        return p >= threshold


def _as_candidate(c: Completion, req: CompletionRequest) -> Candidate:
    """An `Engine.complete` answer as a candidate (no entropies: the gate uses its log-probability model)."""
    return Candidate(completion=c, index=0, seed=req.seed, greedy=req.temperature <= 0, entropies=(), tokens=(),
                     decoded_tokens=c.timings.decode_tokens)


def adaptive_complete(
    engine,
    req: CompletionRequest,
    *,
    gate=None,
    policy: AdaptivePolicy | None = None,
    select: str = "auto",
    cancel: threading.Event | None = None,
    use_engine_first: bool = False,
) -> AdaptiveResult:
    """Greedy first; more samples only where the gate is unsure.

    `use_engine_first`: the first answer comes from `engine.complete` — with its completion cache, typed-through
    answers and KV reuse, which is what an editor needs while the user types — instead of `sample`; a typed-through
    answer is returned as is. The language server calls it this way and hides the answer unless
    `result.should_show(threshold)`; when a sampled candidate wins it is remembered as the document's last
    completion (`Engine.remember`), so typing through the shown suggestion is answered from it.
    """
    from .gate import Gate
    from .selection import select as do_select

    gate = gate or Gate.load()
    policy = policy or AdaptivePolicy()
    ctx = engine.context_for(req)
    if use_engine_first:
        c = engine.complete(req, cancel=cancel)
        first = _as_candidate(c, req)
        t0 = c.timings
        first_set = SampleSet([first], ctx, req, t0)
        if c.stop_reason in ("typed", "cancelled"):
            return AdaptiveResult(c, math.nan, first, first, 1, first.decoded_tokens, t0, first_set, math.nan)
    else:
        first_set = sample(engine, req, 1, include_greedy=True, cancel=cancel)
        first = first_set.candidates[0]
    p = gate.score(first, ctx)
    k = policy.samples_for(p)
    if k == 0 or first.completion.stop_reason == "cancelled" or (cancel is not None and cancel.is_set()):
        return AdaptiveResult(first.completion, p, first, first, 1, first.decoded_tokens, first_set.timings, first_set, p)
    # The first answer's length sets the others' token budget; an answer from the cache decoded nothing now, so
    # its tokens are what it had cost.
    n_first = first.decoded_tokens or len(first.completion.token_logprobs)
    budget = max(policy.min_tokens, int(math.ceil(policy.token_factor * max(1, n_first))))
    budget = min(budget, engine._max_tokens(req, ctx.mode))
    more = sample(engine, req, k, include_greedy=False, max_tokens=budget, cancel=cancel)
    if cancel is not None and cancel.is_set():
        return AdaptiveResult(first.completion, p, first, first, 1, first.decoded_tokens, first_set.timings, first_set, p)
    pool = [first] + [replace(c, index=i + 1) for i, c in enumerate(more.candidates)
                      if c.completion.stop_reason != "cancelled"]
    chosen = do_select(pool, ctx, method=select)
    t = Timings(
        prompt_tokens=first_set.timings.prompt_tokens or more.timings.prompt_tokens,
        prompt_reused=first_set.timings.prompt_reused,
        prompt_evaluated=first_set.timings.prompt_evaluated + more.timings.prompt_evaluated,
        prompt_ms=first_set.timings.prompt_ms + more.timings.prompt_ms,
        decode_tokens=first_set.timings.decode_tokens + more.timings.decode_tokens,
        decode_ms=first_set.timings.decode_ms + more.timings.decode_ms,
        total_ms=first_set.timings.total_ms + more.timings.total_ms,
    )
    merged = SampleSet(pool, ctx, req, t, first_set.batches + more.batches)
    pc = p if chosen is first else gate.score(chosen, ctx)
    return AdaptiveResult(chosen.completion, p, chosen, first, 1 + k, t.decode_tokens, t, merged, pc)


# ---------------------------------------------------------------------------------------------- Engine.complete_many


def sample_many(engine, req: CompletionRequest, n: int, cancel: threading.Event | None = None) -> list[Completion]:
    """`n` completions for `req` from one prompt evaluation: the body of `Engine.complete_many`.

    Same contract as the naive loop it replaces: every completion samples at the request's temperature/top-p with
    its own seed (req.seed + i). At temperature 0 all n would be the same greedy answer, so it is decoded once and
    repeated. Each completion's timings count the prompt once (on the first) and its own decoded tokens.
    """
    if n < 1:
        return []
    if req.temperature <= 0:
        first = sample(engine, req, 1, include_greedy=True, cancel=cancel).candidates[0].completion
        return [first] * n
    s = sample(engine, req, n, temperature=req.temperature, top_p=req.top_p, include_greedy=False, cancel=cancel)
    return [c.completion for c in s.candidates]
