"""codefill/process.py's logged steps (the test tools' and benchmark sources' installers run through it)."""

import sys

import pytest

from codefill.process import StepFailed, last_log_lines, run_logged


def test_a_long_step_says_it_is_alive_with_its_last_log_line(tmp_path):
    log = tmp_path / "step.log"
    said = []
    script = "import time\nfor i in range(4):\n    print('step', i, flush=True); time.sleep(0.6)\n"
    took = run_logged([sys.executable, "-c", script], log_path=str(log), say=said.append, every=0.9)
    assert said[0].startswith(sys.executable) and said[-1].startswith("done in")
    alive = said[1:-1]
    assert alive and all(s.startswith("… ") for s in alive) and any("step" in s for s in alive), said
    assert took >= 2.0
    text = log.read_text()
    assert text.startswith(f"\n$ {sys.executable} -c") and "step 3" in text  # the command, then its output
    assert last_log_lines(str(log), 2) == ["step 2", "step 3"]


def test_a_failing_step_names_itself_its_last_lines_and_its_log(tmp_path):
    log = tmp_path / "f.log"
    with pytest.raises(StepFailed, match=r"failed \(exit 3\): one \| two \| three\nsee .*f\.log"):
        run_logged([sys.executable, "-c", "print('zero\\none\\ntwo\\nthree'); raise SystemExit(3)"],
                   log_path=str(log), say=lambda s: None)
    with pytest.raises(StepFailed, match="cannot run /nonexistent/tool"):
        run_logged(["/nonexistent/tool"], log_path=str(log), say=lambda s: None)


def test_a_step_past_its_time_is_killed(tmp_path):
    with pytest.raises(StepFailed, match="took more than 1 s"):
        run_logged([sys.executable, "-c", "import time; time.sleep(60)"], log_path=str(tmp_path / "t.log"),
                   say=lambda s: None, timeout=1)
    assert last_log_lines(str(tmp_path / "missing.log")) == []
