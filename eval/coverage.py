"""Coverage study (Large Language Monkeys): coverage@k, a fit of coverage ≈ exp(a·k^b), and a PNG plot of both.

coverage@k is the fraction of tasks solved by at least one of k samples, estimated without bias from n ≥ k samples
per task (the pass@k estimator). The fit: log(coverage) = a·k^b with a < 0, b < 0, i.e. log(-log c) = log(-a) + b·log k,
a straight line in log-log space fitted by least squares, then refined by a few Gauss-Newton steps on c itself.

The plot uses matplotlib when it is installed; otherwise it is drawn with numpy and written by eval/png.py: measured
points as squares, the fit as a line, log-scaled k axis with tick labels in a tiny built-in bitmap font.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .metrics import pass_at_k
from .png import line, text, write_png


def coverage_at_k(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> dict[int, float]:
    """counts: (n samples, c correct) per task → {k: mean pass@k} for each k ≤ min n."""
    n_min = min(n for n, _ in counts)
    return {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in ks if k <= n_min}


def fit_exp_power(ks: Sequence[float], cov: Sequence[float]) -> tuple[float, float]:
    """(a, b) of coverage ≈ exp(a·k^b). Points with coverage 0 or 1 carry no information in log(-log c) and are
    skipped in the initial fit."""
    k = np.asarray(ks, dtype=np.float64)
    c = np.asarray(cov, dtype=np.float64)
    ok = (c > 0) & (c < 1)
    if ok.sum() < 2:
        raise ValueError("need at least two coverage values strictly between 0 and 1 to fit")
    x, y = np.log(k[ok]), np.log(-np.log(c[ok]))
    b, loga = np.polyfit(x, y, 1)
    a = -math.exp(loga)
    # Gauss-Newton on the coverage values themselves (the log-log fit over-weights small coverages).
    for _ in range(20):
        kb = k ** b
        pred = np.exp(a * kb)
        r = c - pred
        J = np.stack([pred * kb, pred * a * kb * np.log(k)], axis=1)
        try:
            step, *_ = np.linalg.lstsq(J, r, rcond=None)
        except np.linalg.LinAlgError:
            break
        a_new, b_new = a + step[0], b + step[1]
        if not (a_new < 0 and np.isfinite(a_new) and np.isfinite(b_new)):
            break
        a, b = float(a_new), float(b_new)
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(a), float(b)


def predict(a: float, b: float, k) -> np.ndarray:
    return np.exp(a * np.asarray(k, dtype=np.float64) ** b)


def plot_coverage(path: str, ks: Sequence[int], cov: Sequence[float], fit: tuple[float, float] | None = None,
                  width: int = 640, height: int = 400) -> None:
    """coverage@k (squares) and the fitted exp(a·k^b) (line) against log2 k; y from 0 to 100%."""
    try:  # a real plot when matplotlib is there
        import matplotlib  # type: ignore

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # type: ignore

        fig, ax = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
        ax.plot(ks, [100 * c for c in cov], "s", label="coverage@k (measured)")
        if fit is not None:
            kk = np.geomspace(min(ks), max(ks) * 2, 100)
            ax.plot(kk, 100 * predict(*fit, kk), "-", label=f"exp({fit[0]:.3f}·k^{fit[1]:.3f})")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("coverage (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        return
    except ImportError:
        pass
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    kmax = max(ks) * 2 if fit is not None else max(ks)
    lx0, lx1 = math.log2(min(ks)), math.log2(kmax)

    def X(k):
        return left + (math.log2(k) - lx0) / max(lx1 - lx0, 1e-9) * pw

    def Y(c):
        return top + (1 - c) * ph

    grey, black, blue, red = (220, 220, 220), (0, 0, 0), (31, 119, 180), (214, 39, 40)
    for c in (0.0, 0.25, 0.5, 0.75, 1.0):
        line(img, left, Y(c), left + pw, Y(c), grey, 1)
        text(img, 8, int(Y(c)) - 5, f"{int(c * 100)}%", black)
    k = 1
    while k <= kmax:
        if k >= min(ks):
            line(img, X(k), top, X(k), top + ph, grey, 1)
            text(img, int(X(k)) - 4, top + ph + 8, str(k), black)
        k *= 2
    line(img, left, top, left, top + ph, black, 1)
    line(img, left, top + ph, left + pw, top + ph, black, 1)
    if fit is not None:
        kk = np.geomspace(min(ks), kmax, 200)
        yy = predict(*fit, kk)
        for i in range(len(kk) - 1):
            line(img, X(kk[i]), Y(yy[i]), X(kk[i + 1]), Y(yy[i + 1]), red, 2)
    for k, c in zip(ks, cov):
        x, y = int(X(k)), int(Y(c))
        img[max(0, y - 4) : y + 5, max(0, x - 4) : x + 5] = blue
    write_png(path, img)


def coverage_study(counts: Sequence[tuple[int, int]], ks: Sequence[int], png: str | None = None) -> dict:
    """coverage@k for ks, the exp(a·k^b) fit and (optionally) its plot: what `codefill eval … --coverage` prints."""
    cov = coverage_at_k(counts, ks)
    kk = sorted(cov)
    out: dict = {"coverage": {str(k): round(cov[k], 4) for k in kk}, "tasks": len(counts)}
    try:
        a, b = fit_exp_power(kk, [cov[k] for k in kk])
        out["fit"] = {"a": round(a, 4), "b": round(b, 4),
                      "predicted": {str(k): round(float(predict(a, b, k)), 4) for k in kk + [2 * kk[-1], 4 * kk[-1]]}}
        fit = (a, b)
    except ValueError as exc:
        out["fit"] = {"error": str(exc)}
        fit = None
    if png:
        plot_coverage(png, kk, [cov[k] for k in kk], fit)
        out["plot"] = png
    return out


# ---------------------------------------------------------------------------------------------- CLI helpers


def parse_ks(spec: str) -> list[int]:
    """'1,2,4,…,64' (or '1,2,4,...,64', or '64' alone = powers of two up to 64) → sorted distinct positive ks."""
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise ValueError("no sample counts given")
    ks: set[int] = set()
    ellipsis = any(p in ("…", "...") for p in parts)
    nums = [p for p in parts if p not in ("…", "...")]
    try:
        vals = [int(p) for p in nums]
    except ValueError:
        raise ValueError(f"sample counts must be integers: {spec!r}") from None
    if any(v < 1 for v in vals):
        raise ValueError("sample counts must be at least 1")
    ks.update(vals)
    if ellipsis or len(vals) == 1:
        k = 1
        while k < max(vals):
            ks.add(k)
            k *= 2
    return sorted(ks)


def study_from_records(records, ks: Sequence[int], png: str | None = None) -> dict:
    """coverage_study over evaluation-harness records (runner.TaskRecord: .samples with .passed)."""
    counts = [(len(r.samples), sum(1 for s in r.samples if s.passed)) for r in records if r.samples]
    if not counts:
        raise ValueError("no evaluated samples")
    return coverage_study(counts, ks, png)


def format_study(study: dict) -> str:
    """The lines `codefill eval … --coverage` prints."""
    lines = [f"coverage@k over {study['tasks']} tasks:"]
    fit = study.get("fit", {})
    pred = fit.get("predicted", {})
    for k, c in study["coverage"].items():
        p = f"   fit {100 * pred[k]:5.1f}%" if k in pred else ""
        lines.append(f"  k={int(k):<4} {100 * c:5.1f}%{p}")
    if "a" in fit:
        lines.append(f"fit: coverage ≈ exp({fit['a']}·k^{fit['b']})")
        extra = [k for k in pred if k not in study["coverage"]]
        if extra:
            lines.append("  extrapolated: " + ", ".join(f"k={k}: {100 * pred[k]:.1f}%" for k in extra))
    else:
        lines.append(f"fit: none ({fit.get('error', 'not enough points')})")
    if study.get("plot"):
        lines.append(f"plot: {study['plot']}")
    return "\n".join(lines)
