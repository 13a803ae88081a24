"""`codefill eval humaneval --candidates N --select METHOD` (issue 15 #3): one answer per task chosen among N
candidates decoded from one prompt evaluation, recorded with which one was chosen; the real embedded model."""

import json
import os
import subprocess
import sys

import pytest

from codefill.engine import Engine, EngineConfig
from codefill.eval.humaneval import build_tasks
from codefill.eval.runner import choose_task, evaluate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def eng():
    e = Engine.load(EngineConfig(n_threads=1, n_seq=4))
    yield e
    e.close()


def _tasks():
    return [t for t in build_tasks("single-line") if t.problem_id == "HumanEval/2"][:2]


def test_candidates_choose_one_answer_per_task_and_record_the_choice(eng):
    tasks = _tasks()
    r = evaluate(eng, tasks, candidates=4, select="suffix", workers=2)
    assert r.summary["samples_per_task"] == 1 and r.meta["candidates"] == 4 and r.meta["select"] == "suffix"
    assert r.meta["suffix_scored"] is True  # the embedded model has no FIM tokens: scored in-process
    for rec, task in zip(r.records, tasks):
        s = rec.samples[0]
        chosen, distinct = choose_task(eng, task, 4, "suffix")
        assert (s.text, s.chosen, s.distinct) == (chosen.text, chosen.index, distinct)  # deterministic
        assert 0 <= s.chosen < 4 and 1 <= s.distinct <= 4
        assert s.latency_ms > 0
    default = evaluate(eng, tasks, candidates=4, workers=2)  # line holes: suffix by default
    assert default.meta["select"] == "default" and default.meta["suffix_scored"] is True
    assert [x.samples[0].text for x in default.records] == [x.samples[0].text for x in r.records]
    first = evaluate(eng, tasks, candidates=4, select="first", workers=2)
    greedy = evaluate(eng, tasks, workers=2)
    assert [x.samples[0].text for x in first.records] == [x.samples[0].text for x in greedy.records]


def test_candidates_need_one_sample():
    with pytest.raises(ValueError):
        evaluate(None, [], samples=2, candidates=2)


def test_cli_candidates_and_select(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, CODEFILL_NO_PROGRESS="1")
    base = [sys.executable, "-m", "codefill", "eval", "humaneval", "--mode", "single-line", "--limit", "1",
            "--threads", "1", "-n", "2", "--out", str(out)]
    cmd = base + ["--select", "suffix", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    data = json.load(open(out / "results.json"))
    assert data["meta"]["candidates"] == 2 and data["meta"]["select"] == "suffix"
    assert data["records"][0]["samples"][0]["chosen"] in (0, 1)
    bad = subprocess.run(base + ["--select", "vote"], capture_output=True, text=True, timeout=120, env=env)
    assert bad.returncode == 2 and "--select" in bad.stderr
    both = subprocess.run(base + ["--samples", "2"], capture_output=True, text=True, timeout=120, env=env)
    assert both.returncode == 2 and "--samples 1" in both.stderr
