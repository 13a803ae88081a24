"""Acceptance statistics of shown suggestions, read from the language server's stats file (lsp/stats.py writes it).

The best predictor of how useful people find code completion is the acceptance rate of the suggestions shown; how
much of the accepted text is still there a little later keeps that honest (optimising acceptance alone favours
short suggestions). The language server records, as JSON lines on this machine only:

    {"v": 1, "event": "shown", "t": 1765432100.123, "id": "…", "answer": "…", "rank": 0, "items": 1,
     "trigger": "automatic", "language": "python", "model": "….gguf", "latency_ms": 182.4, "chars": 23, "lines": 1,
     "gate": 0.61, "entropy": false, "features": {"lp_mean": -0.4, …}}
    {"v": 1, "event": "accepted", "t": …, "id": "…", "answer": "…", "rank": 0, "trigger": …, "language": …,
     "model": …, "chars": 23}
    {"v": 1, "event": "retained", "t": …, "id": "…", "check": "30s", "after_s": 30.0, "chars": 23, "retained": 21,
     "language": …, "model": …, "trigger": …}          ("retained": null, "why": "closed" when it could not be measured)

One shown record per item (an invoked request offers several alternatives: `rank` 0 is the one shown first). A
shown *answer* (all the items of one response) counts as accepted when one of its items was. No document text is
recorded, only counts and the gate's features.

`read(paths, since)` → `Records`; `summarize(records)` → a dict (overall, by language, by model, by trigger);
`format_summary`; `plot_acceptance(records, path)` draws acceptance over time (eval/png.py); `refit_gate(records)`
fits a gate file (engine/gate.py's format) on the user's own accepted and not-accepted suggestions.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from codefill.engine.gate import FULL_FEATURES, LOGPROB_FEATURES, Gate

from .gatefit import auroc, fit, precision_at_recall
from .metrics import percentile
from .png import line, text, write_png

FORMAT_VERSION = 1
EVENTS = ("shown", "accepted", "retained")
CHECKS = ("30s", "2min")  # the retention checks the server makes (lsp/stats.py)

# --refit-gate needs at least this many shown suggestions (rank 0 of their answer), with at least MIN_EACH accepted
# and MIN_EACH not accepted: a logistic regression over 10 features needs a few dozen of the rarer class before its
# coefficients mean anything (the shipped gate was fitted on 1,020 labelled completions).
MIN_REFIT_SHOWN = 200
MIN_EACH = 30
RECALL = 0.8  # the refitted threshold keeps this share of the accepted suggestions (as the shipped gate keeps 80%)


@dataclass
class Records:
    """The readable records of the stats file(s), oldest first, and how many lines could not be read."""

    shown: list[dict] = field(default_factory=list)
    accepted: list[dict] = field(default_factory=list)
    retained: list[dict] = field(default_factory=list)
    bad_lines: int = 0
    lines: int = 0

    def __len__(self) -> int:
        return len(self.shown) + len(self.accepted) + len(self.retained)


def parse_since(spec: str | None, now: float | None = None) -> float | None:
    """`7d`, `12h`, `30m`, `2w`, `90s` → the earliest timestamp to keep (None: all). ValueError for anything else."""
    if spec is None or spec == "":
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    spec = spec.strip().lower()
    try:
        n = float(spec[:-1])
        unit = units[spec[-1]]
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"--since expects a duration such as 30m, 12h, 7d or 2w, got {spec!r}") from None
    if not math.isfinite(n) or n <= 0:
        raise ValueError(f"--since expects a positive duration, got {spec!r}")
    return (time.time() if now is None else now) - n * unit


def _valid(rec) -> bool:
    if not isinstance(rec, dict) or rec.get("event") not in EVENTS or not isinstance(rec.get("id"), str):
        return False
    t = rec.get("t")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        return False
    if rec["event"] == "retained":
        r, c = rec.get("retained"), rec.get("chars")
        return rec.get("check") in CHECKS and isinstance(c, int) and (r is None or isinstance(r, int))
    return True


def read(paths: Sequence[str], since: float | None = None) -> Records:
    """Records from `paths` (the rotated file first, then the current one); lines that are not a record of a known
    event are counted in `bad_lines` and skipped. Missing files are no records."""
    out = Records()
    for path in paths:
        try:
            fh = open(path, "rb")
        except FileNotFoundError:
            continue
        with fh:
            for raw in fh:
                if not raw.strip():
                    continue
                out.lines += 1
                try:
                    rec = json.loads(raw)
                except ValueError:  # not JSON, not UTF-8, or a line cut short by a full disk
                    out.bad_lines += 1
                    continue
                if not _valid(rec):
                    out.bad_lines += 1
                    continue
                if since is not None and rec["t"] < since:
                    continue
                getattr(out, rec["event"]).append(rec)
    return out


# ---------------------------------------------------------------------------------------------- summary


def _group(shown: list[dict], accepted: list[dict], retained: list[dict]) -> dict:
    answers = {r.get("answer", r["id"]) for r in shown}
    accepted_answers = {r.get("answer", r["id"]) for r in accepted} & answers
    first = [r for r in shown if r.get("rank", 0) == 0]
    latencies = [float(r["latency_ms"]) for r in first if isinstance(r.get("latency_ms"), (int, float))]
    ret = {}
    for check in CHECKS:
        got = [r for r in retained if r["check"] == check and r["retained"] is not None]
        chars = sum(r["chars"] for r in got)
        kept = sum(r["retained"] for r in got)
        ret[check] = {"measured": len(got), "chars": chars, "retained": kept,
                      "rate": round(kept / chars, 4) if chars else None,
                      "unmeasured": sum(1 for r in retained if r["check"] == check and r["retained"] is None)}
    return {
        "shown": len(answers),
        "accepted": len(accepted_answers),
        "acceptance_rate": round(len(accepted_answers) / len(answers), 4) if answers else None,
        "accepted_chars": sum(int(r.get("chars", 0)) for r in accepted if r.get("answer", r["id"]) in answers),
        "retained": ret,
        "latency_ms": {"p50": _round(percentile(latencies, 50)), "p95": _round(percentile(latencies, 95)),
                       "n": len(latencies)},
    }


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 1)


def summarize(records: Records) -> dict:
    """Acceptance rate, accepted and retained characters, latency p50/p95: overall and by language, model and
    trigger kind. Acceptance counts answers shown in the period (an accept of an answer shown before it is left out,
    so the rate stays a share of what was shown)."""
    out = {"records": len(records), "bad_lines": records.bad_lines,
           "all": _group(records.shown, records.accepted, records.retained)}
    if records.shown:
        out["from"] = min(r["t"] for r in records.shown)
        out["to"] = max(r["t"] for r in records.shown)
    for key, name in (("language", "by_language"), ("model", "by_model"), ("trigger", "by_trigger")):
        groups: dict[str, tuple[list, list, list]] = defaultdict(lambda: ([], [], []))
        for i, kind in enumerate(("shown", "accepted", "retained")):
            for r in getattr(records, kind):
                groups[str(r.get(key) or "unknown")][i].append(r)
        out[name] = {k: _group(*v) for k, v in sorted(groups.items()) if v[0]}
    return out


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ms(x) -> str:
    return "-" if x is None else f"{x:.0f}"


def format_summary(summary: dict, path: str | None = None) -> str:
    """The table `codefill stats` prints."""
    a = summary["all"]
    when = ""
    if "from" in summary:
        fmt = "%Y-%m-%d %H:%M"
        when = f" from {time.strftime(fmt, time.localtime(summary['from']))} to " \
               f"{time.strftime(fmt, time.localtime(summary['to']))}"
    head = (f"{a['shown']} suggestions shown, {a['accepted']} accepted ({_pct(a['acceptance_rate'])}){when}")
    rows = [("", "shown", "accepted", "rate", "acc chars", "kept 30s", "kept 2min", "p50 ms", "p95 ms")]

    def row(label: str, g: dict) -> tuple:
        return (label, str(g["shown"]), str(g["accepted"]), _pct(g["acceptance_rate"]), str(g["accepted_chars"]),
                _pct(g["retained"]["30s"]["rate"]), _pct(g["retained"]["2min"]["rate"]),
                _ms(g["latency_ms"]["p50"]), _ms(g["latency_ms"]["p95"]))

    rows.append(row("all", a))
    for name, title in (("by_language", "language"), ("by_model", "model"), ("by_trigger", "trigger")):
        for k, g in summary[name].items():
            rows.append(row(f"{title} {k}", g))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head, ""]
    for r in rows:
        lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip())
    lines.append("")
    lines.append("kept: characters of the accepted text still in the document 30 s and 2 min after the accept")
    if summary["bad_lines"]:
        lines.append(f"{summary['bad_lines']} unreadable lines skipped")
    if path:
        lines.append(f"stats file: {path}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- plot


def acceptance_series(records: Records, buckets: int = 24) -> list[tuple[float, int, int]]:
    """(bucket start, shown answers, accepted answers) over the period of the shown records, in equal time buckets
    (hours for a day or less, else days, merged so that there are at most `buckets`)."""
    if not records.shown:
        return []
    accepted = {r.get("answer", r["id"]) for r in records.accepted}
    firsts = {}
    for r in records.shown:
        firsts.setdefault(r.get("answer", r["id"]), r["t"])
    t0, t1 = min(firsts.values()), max(firsts.values())
    unit = 3600.0 if t1 - t0 <= 86400 else 86400.0
    width = unit * max(1, math.ceil((t1 - t0 + 1) / unit / buckets))
    start = math.floor(t0 / unit) * unit
    n = max(1, int((t1 - start) // width) + 1)
    shown, acc = [0] * n, [0] * n
    for a, t in firsts.items():
        i = min(n - 1, int((t - start) // width))
        shown[i] += 1
        acc[i] += a in accepted
    return [(start + i * width, shown[i], acc[i]) for i in range(n)]


def plot_acceptance(records: Records, path: str, width: int = 640, height: int = 360) -> int:
    """A PNG of the acceptance rate per time bucket (blue points joined by a line; grey bars: answers shown, scaled
    to the busiest bucket), y from 0 to 100%. Returns the number of buckets drawn."""
    series = acceptance_series(records)
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    left, right, top, bottom = 60, 20, 20, 40
    pw, ph = width - left - right, height - top - bottom
    n = max(1, len(series))
    most = max((s for _, s, _ in series), default=1) or 1

    def X(i: float) -> float:
        return left + (i + 0.5) / n * pw

    def Y(c: float) -> float:
        return top + (1 - c) * ph

    grey, light, black, blue = (220, 220, 220), (235, 235, 235), (0, 0, 0), (31, 119, 180)
    for c in (0.0, 0.25, 0.5, 0.75, 1.0):
        line(img, left, Y(c), left + pw, Y(c), grey, 1)
        text(img, 8, int(Y(c)) - 5, f"{int(c * 100)}%", black)
    bar = max(2, int(pw / n * 0.6))
    points = []
    for i, (_t, s, a) in enumerate(series):
        x = int(X(i))
        h = int(ph * s / most * 0.5)
        img[top + ph - h : top + ph, max(left + 1, x - bar // 2) : x + bar // 2 + 1] = light
        points.append((X(i), Y(a / s if s else 0.0)))
    line(img, left, top, left, top + ph, black, 1)
    line(img, left, top + ph, left + pw, top + ph, black, 1)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        line(img, x0, y0, x1, y1, blue, 2)
    for x, y in points:
        xi, yi = int(x), int(y)
        img[max(0, yi - 3) : yi + 4, max(0, xi - 3) : xi + 4] = blue
    if series:  # the first and last bucket's day as MM-DD (the font has digits and '-')
        for i in {0, len(series) - 1}:
            text(img, int(X(i)) - 20, top + ph + 10, time.strftime("%m-%d", time.localtime(series[i][0])), black)
    write_png(path, img)
    return len(series)


# ---------------------------------------------------------------------------------------------- refit


class NotEnoughEvents(ValueError):
    """Too few recorded suggestions to fit a gate on."""


def training_rows(records: Records) -> tuple[list[dict], list[bool], list[bool], str | None, int]:
    """(features, accepted, has entropies, model, events of other models) of the shown suggestions a gate can learn
    from: rank 0 of each answer (the one the editor shows first) with its recorded features, of the model with the
    most such suggestions (a gate is fitted for one model)."""
    accepted = {r["id"] for r in records.accepted}
    usable = [r for r in records.shown if r.get("rank", 0) == 0 and _features_ok(r.get("features"))]
    by_model: dict[str, int] = defaultdict(int)
    for r in usable:
        by_model[str(r.get("model") or "unknown")] += 1
    if not by_model:
        return [], [], [], None, 0
    model = max(by_model, key=lambda m: (by_model[m], m))
    rows = [r for r in usable if str(r.get("model") or "unknown") == model]
    return ([{k: float(r["features"][k]) for k in FULL_FEATURES} for r in rows], [r["id"] in accepted for r in rows],
            [bool(r.get("entropy")) for r in rows], model, len(usable) - len(rows))


def _features_ok(f) -> bool:
    return isinstance(f, dict) and all(isinstance(f.get(k), (int, float)) and not isinstance(f.get(k), bool)
                                       and math.isfinite(f[k]) for k in FULL_FEATURES)


def refit_gate(records: Records, command: str = "") -> tuple[Gate, dict]:
    """A gate fitted on the user's own shown suggestions, labelled by whether they were accepted.

    The `logprob` model is fitted on all of them. The `full` model (used for candidates that carry entropies, i.e.
    sampled alternatives) on those with entropies when there are enough, else it is the logprob model too (most
    automatic suggestions come from the greedy path, which carries none). The threshold keeps `RECALL` of the
    accepted suggestions, as the shipped gate's keeps 80% of the right answers. NotEnoughEvents below the minimum.

    Only suggestions that were shown can be learnt from: what the current gate hid was never accepted or refused.
    Setting gateThreshold to 0 for a while lets the refit see those too."""
    rows, labels, ent, model, others = training_rows(records)
    n_acc = sum(labels)
    if len(rows) < MIN_REFIT_SHOWN or n_acc < MIN_EACH or len(rows) - n_acc < MIN_EACH:
        raise NotEnoughEvents(
            f"--refit-gate needs at least {MIN_REFIT_SHOWN} recorded suggestions of one model with at least "
            f"{MIN_EACH} accepted and {MIN_EACH} not accepted; the stats file has {len(rows)} "
            f"({n_acc} accepted, {len(rows) - n_acc} not)" + (f" for {model}" if model else ""))
    logprob = fit(rows, labels, LOGPROB_FEATURES)
    ent_rows = [r for r, e in zip(rows, ent) if e]
    ent_labels = [y for y, e in zip(labels, ent) if e]
    n_ent_acc = sum(ent_labels)
    if len(ent_rows) >= MIN_REFIT_SHOWN and MIN_EACH <= n_ent_acc <= len(ent_rows) - MIN_EACH:
        full, full_on = fit(ent_rows, ent_labels, FULL_FEATURES), f"{len(ent_rows)} suggestions with entropies"
    else:
        full, full_on = logprob, "the logprob model (too few suggestions with entropies)"
    gate = Gate(full, logprob)
    scores = [float((full if e else logprob).predict(np.asarray([r[k] for k in (full if e else logprob).names])))
              for r, e in zip(rows, ent)]
    prec, thr = precision_at_recall(scores, labels, RECALL)
    gate.threshold = float(min(1.0, max(0.0, round(thr, 4))))
    gate.metrics = {
        "auroc_in_sample": round(auroc(scores, labels), 4),
        f"precision_at_{int(RECALL * 100)}_recall_in_sample": round(prec, 4),
        "base_rate": round(n_acc / len(rows), 4),
        "fitted_on": f"{len(rows)} suggestions shown by the language server ({n_acc} accepted) of {model}; "
                     f"full model: {full_on}",
        "label": "accepted (codefill.accepted ran for the item)",
        **({"command": command} if command else {}),
    }
    info = {"suggestions": len(rows), "accepted": n_acc, "model": model, "other_models": others,
            "threshold": gate.threshold, "auroc_in_sample": gate.metrics["auroc_in_sample"],
            "full_model": full_on}
    return gate, info
