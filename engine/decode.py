"""Decoding: sample tokens until a stop rule, an end-of-generation token, the token limit, the time budget or a
cancellation ends the completion. Pure mechanics over a LlamaRuntime sequence; no documents, no filters."""

from __future__ import annotations

import codecs
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .stops import StopRules


@dataclass
class Sampler:
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def pick(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> tuple[int, float]:
        """(token, log-probability of that token under the model's untempered distribution).

        `allowed`: token ids the choice is restricted to (token healing); the log-probability stays the model's.
        """
        x = logits.astype(np.float64, copy=False)
        if allowed is not None:
            full = x
            x = np.full_like(full, -np.inf)
            x[allowed] = full[allowed]
        m = float(np.max(x))
        logz = m + math.log(float(np.sum(np.exp(x - m))))
        if allowed is not None:
            m_full = float(np.max(full))
            logz = m_full + math.log(float(np.sum(np.exp(full - m_full))))
            m = float(np.max(x))
        if self.temperature <= 0:
            tok = int(np.argmax(x))
            return tok, float(x[tok] - logz)
        z = (x - m) / self.temperature
        p = np.exp(z)
        p /= p.sum()
        if self.top_p < 1.0:
            order = np.argsort(-p)
            cum = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(cum, self.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        tok = int(self.rng.choice(len(p), p=p))
        return tok, float(x[tok] - logz)


@dataclass
class Generation:
    text: str
    stop_reason: str
    token_logprobs: list[float]
    tokens: list[int]
    decode_ms: float


class TextAccumulator:
    """Token pieces → text, holding back incomplete UTF-8 sequences; tracks which tokens produced which characters."""

    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.ends: list[int] = []  # text length after each token

    def add(self, piece: bytes) -> None:
        self.text += self._dec.decode(piece)
        self.ends.append(len(self.text))

    def tokens_within(self, n_chars: int) -> int:
        """How many leading tokens lie entirely within the first n_chars characters."""
        k = 0
        while k < len(self.ends) and self.ends[k] <= n_chars:
            k += 1
        return k


def generate(
    rt,
    rules: StopRules,
    sampler: Sampler,
    *,
    seq: int = 0,
    max_tokens: int = 128,
    deadline: float | None = None,
    stop_ids: frozenset[int] = frozenset(),
    cancelled: Callable[[], bool] | None = None,
    first_logits: np.ndarray | None = None,
    heal: str = "",
) -> Generation:
    """Decode from the current end of sequence `seq` (whose logits must be ready).

    `heal`: text the prompt left out at its end (token healing). The first tokens are restricted to ones consistent
    with it, and it is not part of the returned text.
    """
    t0 = time.perf_counter()
    acc = TextAccumulator()
    heal_bytes = heal.encode("utf-8")
    n_heal = len(heal)
    logprobs: list[float] = []
    tokens: list[int] = []
    reason = "max_tokens"
    logits = first_logits if first_logits is not None else rt.logits(seq)
    for _ in range(max_tokens):
        if cancelled is not None and cancelled():
            reason = "cancelled"
            break
        allowed = entry_constraint(rt, rules, heal_bytes, acc.text.encode("utf-8"), n_heal, len(acc.text))
        tok, lp = sampler.pick(logits, allowed)
        if rt.is_eog(tok) or tok in stop_ids:
            reason = "eos"
            break
        tokens.append(tok)
        acc.add(rt.token_piece(tok))
        if len(acc.text) > n_heal:
            logprobs.append(lp)  # only tokens that produce new text speak about the completion's quality
        else:
            logprobs.append(float("nan"))
        hit = rules.check(acc.text[n_heal:]) if len(acc.text) >= n_heal else None
        if hit is not None:
            cut, reason = hit
            n_keep = acc.tokens_within(cut + n_heal)
            text = acc.text[n_heal : n_heal + cut]
            del tokens[n_keep:]
            del logprobs[n_keep:]
            return Generation(text, reason, _real(logprobs), tokens, (time.perf_counter() - t0) * 1000)
        if deadline is not None and time.perf_counter() >= deadline:
            reason = "time"
            break
        rt.decode_one(tok, seq)
        logits = rt.logits(seq)
    text = acc.text[n_heal:]
    if reason in ("eos", "max_tokens", "time"):
        hit = rules.check(text, final=True)
        if hit is not None:
            cut, reason = hit
        elif reason == "time" and rules.mode == "block" and "\n" in text:
            cut = text.rfind("\n")  # out of time mid-line: keep the complete lines only
        else:
            cut = None
        if cut is not None:
            n_keep = acc.tokens_within(cut + n_heal)
            text = text[:cut]
            del tokens[n_keep:]
            del logprobs[n_keep:]
    return Generation(text, reason, _real(logprobs), tokens, (time.perf_counter() - t0) * 1000)


def _real(xs: list[float]) -> list[float]:
    return [x for x in xs if x == x]


def healing_candidates(rt, remaining: bytes, no_space: bool = False) -> np.ndarray:
    """Tokens whose bytes are consistent with `remaining`: a prefix of it, or starting with all of it.

    `no_space` (the completion must not start with whitespace, see StopRules.no_leading_space; `remaining` is then
    the healed indentation): a token that covers `remaining` must not go on with a space or tab. With an empty
    `remaining`: every token that does not start with whitespace. (Refusing also the tokens that end exactly at the
    indentation's end was measured worse: 30.8% pass@1 on HumanEval single-line, against 31.5% without that.)"""
    cache = rt.__dict__.setdefault("_heal_cache", {})
    key = (remaining, no_space)
    hit = cache.get(key)
    if hit is not None:
        return hit
    pieces = rt.__dict__.get("_all_pieces")
    if pieces is None:
        pieces = [rt.token_piece(t) for t in range(rt.n_vocab)]
        rt.__dict__["_all_pieces"] = pieces
    n = len(remaining)
    ids = [t for t, p in enumerate(pieces) if p and (
        (remaining.startswith(p) and len(p) < n)
        or (p.startswith(remaining) and not (no_space and p[n : n + 1] in (b" ", b"\t"))))]
    arr = np.array(ids, dtype=np.int64)
    if len(cache) < 4096:
        cache[key] = arr
    return arr


def entry_constraint(rt, rules, heal_bytes: bytes, produced: bytes, n_heal_chars: int, n_chars: int):
    """The tokens allowed next while the completion has not started yet (None: any): during token healing, those
    consistent with the healed text; right after it, when the completion must not start with whitespace, those that
    do not."""
    if n_chars < n_heal_chars:
        return healing_candidates(rt, heal_bytes[len(produced) :], rules.no_leading_space)
    if n_chars == n_heal_chars and rules.no_leading_space:
        return healing_candidates(rt, b"", True)
    return None
