"""`codefill complete -n N --select suffix` (issue 15 #3) through the real CLI and the embedded model."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_complete_select_suffix_scores_every_candidate_and_reports_it(tmp_path):
    src = tmp_path / "show.py"
    src.write_text("def show(xs):\n    \n    for v in values:\n        print(v)\n")
    proc = subprocess.run([sys.executable, "-m", "codefill", "complete", f"{src}:2:5", "-n", "4", "--select", "suffix",
                           "--json", "--threads", "1", "--mode", "line"], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["select"] == "suffix" and out["suffix_scored"] is True
    scored = [c for c in out["candidates"] if c["suffix_logprob"] is not None]
    assert scored and all(c["suffix_logprob"] < 0 for c in scored)
    chosen = next(c for c in out["candidates"] if c["index"] == out["selected"])
    assert chosen["text"] == out["text"] and chosen["suffix_logprob"] is not None
    assert out["cost"]["select_ms"] > 0
