"""Confidence gate: P(this completion is correct) from signals the decode pass already has.

A logistic regression over a handful of features — token log-probabilities (mean, min, first), entropies of the
model's next-token distribution (mean, max, first), length and position (mode, what is on the cursor line) — fitted
by the evaluation harness on HumanEval infilling tasks labelled by their tests (bench/scaling_gate.py, with
codefill.eval.gatefit) and shipped as `engine/data/gate.json`. Two models live in the file: `full` (needs per-token
entropies, which every Candidate of `Engine.sample` carries) and `logprob` (log-probabilities only, for a Completion
from `Engine.complete`, which carries none; the decode loop computes them, so a later version can pass them on).

Scoring costs a few microseconds of arithmetic; the entropies cost one dot product over the vocabulary per token
inside the decode loop (measured by bench/scaling_gate.py). This module only scores; fitting, and the metrics that
judge a fit, live in codefill.eval.gatefit.
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
# The threshold comes from the gate file. This is the shipped file's (engine/data/gate.json), used only for a file
# that has none and for a Gate built in code (a fit, before its threshold is chosen); keep the two equal.
SHIPPED_THRESHOLD = 0.389

FULL_FEATURES = (
    "lp_mean", "lp_min", "lp_first", "lp_sum",
    "ent_mean", "ent_max", "ent_first",
    "log_tokens", "empty", "stopped_naturally", "line_mode", "cursor_after_code", "log_line_prefix",
)
LOGPROB_FEATURES = tuple(f for f in FULL_FEATURES if not f.startswith("ent_"))

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
        """A model from its JSON form; ValueError (saying what is wrong) for anything else, so that a bad file is
        refused when it is loaded rather than failing every later score."""
        if not isinstance(d, dict):
            raise ValueError(f"gate model: expected a JSON object, got {type(d).__name__}")
        names = d.get("features")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("gate model: features must be a list of feature names")
        unknown = [n for n in names if n not in FULL_FEATURES]
        if unknown:
            raise ValueError(f"gate model: unknown features {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(FULL_FEATURES)})")
        if len(set(names)) != len(names):
            raise ValueError("gate model: a feature is named twice")
        arrs = []
        for k in ("mean", "scale", "coef"):
            v = d.get(k)
            if not isinstance(v, list) or not all(_is_number(x) for x in v):
                raise ValueError(f"gate model: {k} must be a list of numbers")
            arrs.append(np.asarray(v, dtype=np.float64))
        if any(a.shape != (len(names),) for a in arrs):
            raise ValueError("gate model: mean/scale/coef must have one value per feature")
        if not all(np.all(np.isfinite(a)) for a in arrs) or not _is_number(d.get("intercept")) \
                or not math.isfinite(d["intercept"]):
            raise ValueError("gate model: mean/scale/coef/intercept must be finite numbers")
        if np.any(arrs[1] <= 0):
            raise ValueError("gate model: scales must be positive")
        return cls(tuple(names), arrs[0], arrs[1], arrs[2], float(d["intercept"]))


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


# ---------------------------------------------------------------------------------------------- the shipped gate


@dataclass
class Gate:
    full: LogisticModel
    logprob: LogisticModel
    threshold: float = SHIPPED_THRESHOLD
    metrics: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | None = None) -> "Gate":
        """The gate in `path` (default: the shipped one). OSError when it cannot be read; ValueError, naming the file
        and what is wrong, for anything that is not a codefill gate file."""
        where = path or DEFAULT_PATH
        with open(where, encoding="utf-8") as fh:
            try:
                d = json.load(fh)
            except ValueError as exc:  # not JSON, or not UTF-8
                raise ValueError(f"{where}: not a JSON file ({exc})") from None
        try:
            return cls.from_dict(d)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    @classmethod
    def from_dict(cls, d) -> "Gate":
        if not isinstance(d, dict):
            raise ValueError(f"not a codefill gate file (a JSON {type(d).__name__}, not an object)")
        if d.get("format") != FORMAT:
            raise ValueError("not a codefill gate file")
        version = d.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"gate file version {version!r} is not a number")
        if version > VERSION:
            raise ValueError(f"gate file version {version} is newer than this codefill understands")
        threshold = d.get("threshold", SHIPPED_THRESHOLD)
        if not _is_number(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold {threshold!r} is not a probability in [0, 1]")
        metrics = d.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ValueError("metrics must be a JSON object")
        models = []
        for key in ("full", "logprob"):
            try:
                models.append(LogisticModel.from_dict(d.get(key)))
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return cls(models[0], models[1], float(threshold), dict(metrics))

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
