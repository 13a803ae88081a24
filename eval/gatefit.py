"""Fitting the confidence gate (codefill.engine.gate) and the metrics that judge a fit.

`fit(rows, labels, names)` turns feature dicts (`gate.features(...)`) and correctness labels (HumanEval tests) into a
`gate.LogisticModel`; bench/scaling_gate.py fits both models of the shipped `engine/data/gate.json` with it and
reports `auroc` and `precision_at_recall` from cross-validation. The engine only scores (gate.Gate.score).

Monotonicity: the fit keeps a feature only when its coefficient has the sign it should have (more likely tokens
never lower the score, more uncertain ones never raise it); features with a known sign that come out the wrong way
are dropped and the model refitted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from codefill.engine.gate import FULL_FEATURES, LogisticModel

# +1: the probability may only grow with the feature; -1: only shrink; absent: free.
SIGNS = {"lp_mean": 1, "lp_min": 1, "lp_first": 1, "ent_mean": -1, "ent_max": -1, "ent_first": -1, "empty": -1}


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
