"""The harness with the real embedded model: a few tasks, deterministic, and the results file records the model."""

import json
import os
import subprocess
import sys

from codefill.engine.evaluation.humaneval import build_tasks
from codefill.engine.evaluation.report import write
from codefill.engine.evaluation.runner import evaluate


def test_evaluate_is_deterministic_and_records_the_model(engine, tmp_path):
    tasks = build_tasks("single-line")[:3]
    a = evaluate(engine, tasks, workers=2)
    b = evaluate(engine, tasks, workers=2)
    assert [r.samples[0].text for r in a.records] == [r.samples[0].text for r in b.records]
    assert [r.samples[0].passed for r in a.records] == [r.samples[0].passed for r in b.records]
    assert set(a.summary) >= {"pass@1", "exact_match", "latency_p50_ms", "latency_p95_ms"}
    assert len(a.meta["model"]["sha256"]) == 64 and a.meta["codefill_version"]
    jpath, mpath = write(a, str(tmp_path / "run"), "test")
    data = json.load(open(jpath))
    assert data["summary"]["tasks"] == 3 and len(data["records"]) == 3
    assert "pass@1" in open(mpath).read()


def test_samples_give_pass_at_k(engine):
    tasks = build_tasks("single-line")[:2]
    rep = evaluate(engine, tasks, samples=3, workers=2)
    assert all(len(r.samples) == 3 for r in rep.records)
    assert {"pass@1", "pass@2", "pass@3"} <= set(rep.summary)
    assert rep.summary["pass@1"] <= rep.summary["pass@2"] <= rep.summary["pass@3"]


def test_cli_eval_humaneval_and_repo(tmp_path):
    env = dict(os.environ, CODEFILL_NO_PROGRESS="1")
    out = tmp_path / "he"
    proc = subprocess.run([sys.executable, "-m", "codefill", "eval", "humaneval", "--limit", "2", "--out", str(out),
                           "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["tasks"] == 2
    assert (out / "results.json").exists() and (out / "results.md").exists()
    src = tmp_path / "src"
    src.mkdir()
    (src / "m.py").write_text("def double(x):\n    y = x * 2\n    return y\n")
    proc = subprocess.run([sys.executable, "-m", "codefill", "eval", "repo", str(src), "--limit", "2", "--out",
                           str(tmp_path / "repo"), "--json"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["summary"]["tasks"] == 2
    bad = subprocess.run([sys.executable, "-m", "codefill", "eval", "repo", str(tmp_path / "nope")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 7 and "Traceback" not in bad.stderr
