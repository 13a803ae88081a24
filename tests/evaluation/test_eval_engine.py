"""The harness with the real embedded model: a handful of greedy completions, deterministic, recorded with the
model's hash; and both CLI commands end to end (one task each)."""

import json
import os
import subprocess
import sys

import pytest

from codefill.engine import Engine, EngineConfig
from codefill.eval.humaneval import build_tasks
from codefill.eval.report import write
from codefill.eval.runner import evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eval_engine():
    # One thread: the harness runs beside other work on shared cores, where two llama.cpp threads contend badly.
    eng = Engine.load(EngineConfig(n_threads=1))
    yield eng
    eng.close()


def test_evaluate_is_deterministic_scores_by_execution_and_records_the_model(eval_engine, tmp_path):
    tasks = [t for t in build_tasks("single-line") if t.problem_id == "HumanEval/2"]  # `return number % 1.0`
    tasks += build_tasks("single-line")[:1]
    a = evaluate(eval_engine, tasks, workers=2)
    b = evaluate(eval_engine, tasks, workers=2)
    assert [s.text for r in a.records for s in r.samples] == [s.text for r in b.records for s in r.samples]
    assert [s.passed for r in a.records for s in r.samples] == [s.passed for r in b.records for s in r.samples]
    for r in a.records:
        s = r.samples[0]
        assert s.mode == "line" and "\n" not in s.text  # single-line holes are asked as line completions
        assert s.status in ("passed", "failed", "timeout", "crashed") and s.passed == (s.status == "passed")
        assert s.exact == (s.text.rstrip() == r.target)
    assert set(a.summary) >= {"pass@1", "exact_match", "latency_p50_ms", "latency_p95_ms"}
    assert a.summary["pass@1"] == sum(r.samples[0].passed for r in a.records) / len(tasks)
    assert len(a.meta["model"]["sha256"]) == 64 and a.meta["codefill_version"]
    assert a.meta["engine_config"]["n_threads"] == 1 and a.meta["seed"] == 0
    jpath, mpath = write(a, str(tmp_path / "run"))
    data = json.load(open(jpath))
    assert data["summary"]["tasks"] == 2 and len(data["records"]) == 2
    assert data["meta"]["model"]["sha256"] == a.meta["model"]["sha256"]
    md = open(mpath).read()
    assert "pass@1" in md and a.meta["model"]["sha256"] in md

    k = evaluate(eval_engine, tasks[:1], samples=2, seed=5, workers=2)
    assert len(k.records[0].samples) == 2 and {"pass@1", "pass@2"} <= set(k.summary)
    assert k.summary["pass@1"] <= k.summary["pass@2"] and k.meta["temperature"] == 0.8


def test_cli_eval_humaneval_and_repo(tmp_path):
    env = dict(os.environ, CODEFILL_NO_PROGRESS="1")
    out = tmp_path / "he"
    # progress on: stderr is a pipe here, as in a log file or CI, so it comes as plain lines
    proc = subprocess.run([sys.executable, "-m", "codefill", "eval", "humaneval", "--limit", "1", "--threads", "1",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in env.items() if k != "CODEFILL_NO_PROGRESS"})
    assert proc.returncode == 0, proc.stderr
    assert "humaneval single-line: 2/2 (100%)" in proc.stderr, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["tasks"] == 1 and "pass@1" in summary
    saved = json.load(open(out / "results.json"))
    assert saved["meta"]["mode"] == "single-line" and "--limit 1" in saved["meta"]["command"]
    assert (out / "results.md").exists()
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text("def double(x):\n    y = x * 2\n    return y\n")
    proc = subprocess.run([sys.executable, "-m", "codefill", "eval", "repo", str(src), "--limit", "1", "--threads", "1",
                           "--out", str(tmp_path / "repo"), "--json"], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["tasks"] == 1 and "pass@1" not in summary and 0 <= summary["edit_similarity"] <= 1
    bad = subprocess.run([sys.executable, "-m", "codefill", "eval", "repo", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 7 and "not a directory" in bad.stderr and "Traceback" not in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "codefill", "eval", "humaneval", "--mode", "sideways"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "--mode" in bad.stderr
