"""The confidence gate: features, a monotone fit, the file format, the metrics, the shipped file."""

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import pytest

from codefill.engine import Completion, Position, Range
from codefill.engine.gate import DEFAULT_PATH, FULL_FEATURES, LOGPROB_FEATURES, SHIPPED_THRESHOLD, Gate, features
from codefill.eval.gatefit import auroc, fit, precision_at_recall

R = Range(Position(0, 0), Position(0, 0))


def comp(text="x = 1", lps=(-0.5, -0.5), reason="newline", mode="line"):
    return Completion(text=text, range=R, stop_reason=reason, mode=mode, token_logprobs=tuple(lps))


@dataclass
class Cand:  # shaped like engine.types.Candidate
    completion: Completion
    entropies: tuple


def synthetic(n=400, seed=0):
    """Correct completions are likelier and less uncertain; length is noise."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for _ in range(n):
        y = rng.random() < 0.3
        lp = rng.normal(-0.3 if y else -1.0, 0.35, size=rng.integers(3, 12)).clip(max=0)
        ent = rng.normal(0.6 if y else 1.6, 0.4, size=len(lp)).clip(min=0)
        c = Cand(comp(lps=tuple(lp)), tuple(ent))
        rows.append(features(c))
        labels.append(y)
    return rows, labels


def gate_from(rows, labels):
    return Gate(fit(rows, labels, FULL_FEATURES), fit(rows, labels, LOGPROB_FEATURES))


def test_features_from_completion_and_candidate():
    f = features(comp(lps=(-0.1, -2.0, -0.3)))
    assert f["lp_min"] == -2.0 and f["lp_first"] == -0.1
    assert math.isclose(f["lp_mean"], -0.8)
    assert f["log_tokens"] == math.log1p(3) and f["empty"] == 0.0 and f["stopped_naturally"] == 1.0
    g = features(Cand(comp(), (0.5, 1.5)))
    assert g["ent_mean"] == 1.0 and g["ent_max"] == 1.5 and g["ent_first"] == 0.5
    assert features(comp(text="  ", lps=()))["empty"] == 1.0
    assert features(comp(reason="max_tokens"))["stopped_naturally"] == 0.0


def test_fit_separates_and_score_is_monotone():
    rows, labels = synthetic()
    gate = gate_from(rows, labels)
    scores = [gate.score(Cand(comp(lps=(r["lp_mean"],)), (r["ent_mean"],))) for r in rows]
    assert auroc(scores, labels) > 0.8
    # More likely tokens never lower the probability; more uncertain ones never raise it.
    base = Cand(comp(lps=(-0.8, -0.8, -0.8)), (1.0, 1.0, 1.0))
    likelier = Cand(comp(lps=(-0.3, -0.3, -0.3)), (1.0, 1.0, 1.0))
    unsure = Cand(comp(lps=(-0.8, -0.8, -0.8)), (2.5, 2.5, 2.5))
    assert gate.score(likelier) > gate.score(base) > gate.score(unsure)
    assert gate.score(comp(lps=(-0.2,) * 3)) > gate.score(comp(lps=(-1.5,) * 3))  # logprob-only model


def test_a_feature_with_the_wrong_sign_is_dropped():
    rows, labels = synthetic()
    for r, y in zip(rows, labels):  # make higher entropy look *good* in this data
        r["ent_max"] = 5.0 if y else 0.5
    m = fit(rows, labels, FULL_FEATURES)
    assert "ent_max" not in m.names
    assert all(c >= 0 for k, c in zip(m.names, m.coef) if k.startswith("lp_"))


def test_save_load_round_trip(tmp_path):
    rows, labels = synthetic()
    gate = gate_from(rows, labels)
    gate.threshold = 0.3
    gate.metrics = {"auroc": 0.9}
    p = tmp_path / "gate.json"
    gate.save(str(p))
    back = Gate.load(str(p))
    assert back.threshold == 0.3 and back.metrics == {"auroc": 0.9}
    for c in (Cand(comp(lps=(-0.2, -1.0)), (0.3, 2.0)), comp(lps=(-0.7,))):
        assert back.score(c) == gate.score(c)
    d = json.loads(p.read_text())
    assert d["format"] == "codefill-gate" and d["version"] == 1 and set(d) >= {"full", "logprob", "threshold"}
    del d["threshold"]
    p.write_text(json.dumps(d))
    assert Gate.load(str(p)).threshold == SHIPPED_THRESHOLD


def test_malformed_gate_files_are_refused(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError):
        Gate.load(str(p))
    rows, labels = synthetic()
    gate_from(rows, labels).save(str(p))
    d = json.loads(p.read_text())
    d["full"]["coef"] = d["full"]["coef"][:-1]
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError):
        Gate.load(str(p))


def test_metrics():
    assert auroc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [1, 0, 1, 0]) == 0.5
    # 5 positives: 80% recall needs 4 of them; the 4th positive comes at rank 5 (one negative above it).
    p, t = precision_at_recall([0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.1], [1, 1, 0, 1, 1, 0, 1], 0.8)
    assert p == 4 / 5 and t == 0.6


def test_the_shipped_gate_loads_and_reports_its_figures():
    assert os.path.exists(DEFAULT_PATH), "engine/data/gate.json ships with codefill"
    gate = Gate.load()
    assert {"auroc", "precision_at_80_recall"} <= set(gate.metrics)
    assert gate.threshold == SHIPPED_THRESHOLD  # the fallback for files without a threshold is the shipped one
    hi = Cand(comp(lps=(-0.05,) * 5), (0.2,) * 5)
    lo = Cand(comp(lps=(-2.5,) * 5), (3.0,) * 5)
    assert 0.0 <= gate.score(lo) < gate.score(hi) <= 1.0
