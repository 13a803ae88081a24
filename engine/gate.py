"""Confidence gate: P(this completion is correct) from signals the decode pass already has.

A logistic regression over a handful of features — token log-probabilities (mean, min, first), entropies of the
model's next-token distribution (mean, max, first), length and position (mode, what is on the cursor line) — fitted
by the evaluation harness on HumanEval infilling tasks labelled by their tests (bench/scaling_gate.py) and shipped as
`engine/data/gate.json`. Two models live in the file: `full` (needs per-token entropies, which engine.sampling
records) and `logprob` (log-probabilities only, for completions from `Engine.complete`, which has no entropies yet).

Scoring costs a few microseconds of arithmetic; the entropies cost one dot product over the vocabulary per token
inside the decode loop (measured by bench/scaling_gate.py).

Monotonicity: the fit keeps a feature only when its coefficient has the sign it should have (more likely tokens
never lower the score, more uncertain ones never raise it); features with a known sign that come out the wrong way
are dropped and the model refitted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

FORMAT = "codefill-gate"
VERSION = 1
DEFAULT_PATH = os.path.join(os.path.dirname(__file__), "data", "gate.json")
DEFAULT_THRESHOLD = 0.15

FULL_FEATURES = (
    "lp_mean", "lp_min", "lp_first", "lp_sum",
    "ent_mean", "ent_max", "ent_first",
    "log_tokens", "empty", "stopped_naturally", "line_mode", "cursor_after_code", "log_line_prefix",
)
LOGPROB_FEATURES = tuple(f for f in FULL_FEATURES if not f.startswith("ent_"))

# +1: the probability may only grow with the feature; -1: only shrink; absent: free.
SIGNS = {"lp_mean": 1, "lp_min": 1, "lp_first": 1, "ent_mean": -1, "ent_max": -1, "ent_first": -1, "empty": -1}

NATURAL_STOPS = ("eos", "newline", "dedent", "suffix", "blank", "cache", "typed")


def features(completion, ctx=None, entropies: Sequence[float] | None = None) -> dict[str, float]:
    """The gate's features of a completion (an engine Completion or a sampling Candidate).

    `ctx` (CompletionContext) gives the position features; without it they are 0. Entropies come from a Candidate
    (or an `entropies` attribute of the completion) unless given.
    """
    comp = getattr(completion, "completion", completion)
    if entropies is None:
        entropies = getattr(completion, "entropies", None)
        if entropies is None:
            entropies = getattr(comp, "entropies", None)
    lps = list(getattr(comp, "token_logprobs", ()) or ())
    ents = list(entropies or ())
    text = comp.text
    line_prefix = getattr(ctx, "line_prefix", "") if ctx is not None else ""
    return {
        "lp_mean": float(np.mean(lps)) if lps else -10.0,
        "lp_min": float(min(lps)) if lps else -10.0,
        "lp_first": float(lps[0]) if lps else -10.0,
        "lp_sum": float(sum(lps)) if lps else -10.0,
        "ent_mean": float(np.mean(ents)) if ents else 5.0,
        "ent_max": float(max(ents)) if ents else 5.0,
        "ent_first": float(ents[0]) if ents else 5.0,
        "log_tokens": math.log1p(len(lps)),
        "empty": 0.0 if text.strip() else 1.0,
        "stopped_naturally": 1.0 if comp.stop_reason in NATURAL_STOPS else 0.0,
        "line_mode": 1.0 if getattr(comp, "mode", "line") == "line" else 0.0,
        "cursor_after_code": 1.0 if line_prefix.strip() else 0.0,
        "log_line_prefix": math.log1p(len(line_prefix.strip())),
    }


@dataclass
class LogisticModel:
    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return z @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def to_dict(self) -> dict:
        return {
            "features": list(self.names), "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale], "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticModel":
        names = tuple(d["features"])
        arrs = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
        if any(a.shape != (len(names),) for a in arrs):
            raise ValueError("gate model: mean/scale/coef must have one value per feature")
        if np.any(arrs[1] <= 0):
            raise ValueError("gate model: scales must be positive")
        return cls(names, arrs[0], arrs[1], arrs[2], float(d["intercept"]))


def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float, iters: int = 100) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (intercept not penalised)."""
    n, d = X.shape
    A = np.hstack([X, np.ones((n, 1))])
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(A @ w)))
        g = A.T @ (p - y) + reg * w
        h = (A * (p * (1 - p))[:, None]).T @ A + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w[:-1], float(w[-1])


def fit(rows: Sequence[dict[str, float]], labels: Sequence[bool], names: Sequence[str] = FULL_FEATURES,
        l2: float = 1.0) -> LogisticModel:
    """Fit the gate on feature dicts and correctness labels, keeping only features with the right sign."""
    y = np.asarray([1.0 if v else 0.0 for v in labels])
    if len(set(y.tolist())) < 2:
        raise ValueError("the gate needs both correct and incorrect examples to fit")
    names = list(names)
    while True:
        X = np.asarray([[r[k] for k in names] for r in rows], dtype=np.float64)
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-9] = 1.0
        coef, b = _fit_logistic((X - mean) / scale, y, l2)
        wrong = [k for k, c in zip(names, coef) if SIGNS.get(k, 0) * c < 0]
        if not wrong:
            return LogisticModel(tuple(names), mean, scale, coef, b)
        worst = max(wrong, key=lambda k: abs(coef[names.index(k)]))
        names.remove(worst)


# ---------------------------------------------------------------------------------------------- metrics


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (probability a random positive outranks a random negative; ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    npos, nneg = int(y.sum()), int((~y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg))


def precision_at_recall(scores: Sequence[float], labels: Sequence[bool], recall: float = 0.8) -> tuple[float, float]:
    """(precision, threshold) at the highest threshold whose recall reaches `recall`."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    npos = int(y.sum())
    if npos == 0:
        return float("nan"), float("nan")
    order = np.argsort(-s, kind="mergesort")
    tp = 0
    for k, i in enumerate(order, 1):
        tp += int(y[i])
        if tp >= recall * npos and (k == len(order) or s[order[k]] < s[i]):
            return tp / k, float(s[i])
    return npos / len(s), float(s.min())


# ---------------------------------------------------------------------------------------------- the shipped gate


@dataclass
class Gate:
    full: LogisticModel
    logprob: LogisticModel
    threshold: float = DEFAULT_THRESHOLD
    metrics: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None = None) -> "Gate":
        with open(path or DEFAULT_PATH, encoding="utf-8") as fh:
            d = json.load(fh)
        if d.get("format") != FORMAT:
            raise ValueError(f"not a codefill gate file: {path or DEFAULT_PATH}")
        if int(d.get("version", 0)) > VERSION:
            raise ValueError(f"gate file version {d.get('version')} is newer than this codefill understands")
        return cls(LogisticModel.from_dict(d["full"]), LogisticModel.from_dict(d["logprob"]),
                   float(d.get("threshold", DEFAULT_THRESHOLD)), dict(d.get("metrics", {})))

    def save(self, path: str) -> None:
        d = {"format": FORMAT, "version": VERSION, "threshold": self.threshold, "full": self.full.to_dict(),
             "logprob": self.logprob.to_dict(), "metrics": self.metrics}
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(d, fh, indent=1, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)

    def _model_for(self, f: dict, has_entropy: bool) -> LogisticModel:
        return self.full if has_entropy else self.logprob

    def score(self, completion, ctx=None, entropies: Sequence[float] | None = None) -> float:
        """P(correct) for a Completion or Candidate; uses the entropy model when entropies are known."""
        if entropies is None:
            entropies = getattr(completion, "entropies", None)
        f = features(completion, ctx, entropies)
        comp = getattr(completion, "completion", completion)
        has_entropy = bool(entropies) or not comp.token_logprobs
        m = self._model_for(f, has_entropy)
        x = np.asarray([f[k] for k in m.names])
        return float(m.predict(x))

    def should_show(self, completion, threshold: float | None = None, ctx=None) -> bool:
        """False when the gate judges the completion likely wrong (probability below the threshold)."""
        comp = getattr(completion, "completion", completion)
        if not comp.text.strip():
            return False
        return self.score(completion, ctx) >= (self.threshold if threshold is None else threshold)
