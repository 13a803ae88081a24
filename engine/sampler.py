"""The sampler: the next token from a distribution over the vocabulary, with the signals the gate uses.

One `Sampler` per candidate (its own seeded random stream). `draw` works in one pass over the logits: float32
element-wise work with float64 sums (exp over a 49k vocabulary is ~10x cheaper than in float64, and a float64 BLAS dot
can cost milliseconds when the cores are busy), giving the token, its log-probability under the model's untempered
distribution and that distribution's entropy. Greedy picks the argmax; otherwise the tempered distribution is cut to
its top-p nucleus, found among the 64 most likely tokens (checked, with a full sort when the nucleus is wider).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

TOP_K_FAST = 64


class Draw(NamedTuple):
    token: int
    logprob: float  # log-probability of `token` under the model's untempered, unrestricted distribution
    entropy: float  # entropy (nats) of that distribution (nan where a remote server does not give it)
    piece: bytes | None = None  # the bytes the token added, when the backend knows them better than the vocabulary


@dataclass
class Sampler:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0

    def draw(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> Draw:
        """The next token. `allowed`: the token ids the choice is restricted to (token healing); log-probability and
        entropy stay those of the full distribution."""
        x = np.asarray(logits, dtype=np.float32)
        m = float(np.max(x))
        e = np.exp(x - np.float32(m))
        s = float(e.sum(dtype=np.float64))
        logz = m + math.log(s)
        entropy = max(logz - float(np.multiply(e, x).sum(dtype=np.float64)) / s, 0.0)  # H = logZ - E_p[x]
        choice = x
        if allowed is not None:
            choice = np.full_like(x, -np.inf)
            choice[allowed] = x[allowed]
        tok = int(np.argmax(choice)) if self.greedy else self._nucleus(choice)
        return Draw(tok, float(x[tok] - logz), entropy)

    def _nucleus(self, x: np.ndarray) -> int:
        """Sample from the tempered, top-p-truncated distribution of logits `x` (-inf: excluded)."""
        m = float(np.max(x))
        z = np.exp((x - m) / self.temperature)
        total = float(z.sum())
        k = min(TOP_K_FAST, len(x) - 1)
        top = np.argpartition(-x, k)[:k]
        top = top[np.argsort(-x[top], kind="stable")]
        p_top = z[top] / total
        cum = np.cumsum(p_top)
        if self.top_p < 1.0 and cum[-1] >= self.top_p:
            n_keep = int(np.searchsorted(cum, self.top_p)) + 1
            q = p_top[:n_keep] / cum[n_keep - 1]
            return int(top[min(int(np.searchsorted(np.cumsum(q), self.rng.random(), side="right")), n_keep - 1)])
        p = z / total
        if self.top_p < 1.0:
            order = np.argsort(-p, kind="stable")
            c = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(c, self.top_p)) + 1]
            q = p[keep] / p[keep].sum()
            return int(keep[min(int(np.searchsorted(np.cumsum(q), self.rng.random(), side="right")), len(keep) - 1)])
        c = np.cumsum(p)
        return int(min(int(np.searchsorted(c, self.rng.random() * c[-1], side="right")), len(p) - 1))
