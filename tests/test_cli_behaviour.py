"""More of the CLI as a user runs it (a subprocess): documents too large to complete, and `codefill bench latency`."""

import os
import re
import subprocess
import sys

import pytest

LIMIT = 8_000_000  # characters the engine completes at most (engine/context.py); a file may hold 4 bytes per character


def run(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "codefill", *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ))


def one_line_error(proc, code, message):
    assert proc.returncode == code, (proc.returncode, proc.stderr[-2000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("codefill: error:") and message in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.slow
def test_a_document_of_too_many_characters_is_exit_13(tmp_path):
    """The file reads (under 4 bytes a character) but has more characters than the engine completes: the engine
    refuses it after the model loaded."""
    big = tmp_path / "big.py"
    line = "x = 1  # 0123456789\n"
    n = LIMIT // len(line) + 1
    big.write_text(line * n, encoding="utf-8")
    assert len(line) * n > LIMIT
    one_line_error(run("complete", f"{big}:{n}:1"), 13, "too large")


def test_a_file_of_too_many_bytes_is_exit_13_before_the_model_loads(tmp_path):
    big = tmp_path / "huge.py"
    with open(big, "wb") as fh:
        fh.truncate(LIMIT * 4 + 1)  # sparse: costs no disk
    proc = run("complete", f"{big}:1:1", "--model", str(tmp_path / "no-such-model.gguf"))
    one_line_error(proc, 13, "too large")  # not 3 (model not found): the file is refused first
    assert str(big) in proc.stderr


@pytest.mark.slow
def test_bench_latency_runs_and_prints_its_figures(tmp_path):
    src = tmp_path / "walk.py"
    src.write_text(  # every line long enough for a request while typing it, after the one where it starts
        "import os.path as osp\n\n\n"
        "def list_python_files(root_directory):\n"
        "    found_files = []\n"
        "    for d, _dirs, files in os.walk(root_directory):\n"
        "        found_files.extend(osp.join(d, f) for f in files if f.endswith('.py'))\n"
        "    return sorted(found_files)\n",
        encoding="utf-8",
    )
    proc = run("bench", "latency", str(src), "--lines", "1", "--every", "15", "--threads", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert f"{src}: 1 lines, a request every 15 chars" in out, out
    requests = re.search(r"requests\s+(\d+)", out)
    assert requests and int(requests.group(1)) >= 2, out
    for label in ("new position", "while typing"):
        m = re.search(label + r"\s+p50/p95\s+(\d+) / (\d+) ms", out)
        assert m and int(m.group(1)) <= int(m.group(2)), (label, out)
    for label in ("prompt", "decode"):
        m = re.search(r"\n\s+" + label + r"\s+(\d+) tokens/s", out)
        assert m and int(m.group(1)) > 0, (label, out)
    m = re.search(r"peak RSS\s+(\d+) MB", out)
    assert m and int(m.group(1)) > 50, out  # the model alone is ~100 MB


def test_progress_in_a_log_file_is_one_plain_line_per_step_or_minute_and_one_at_the_end():
    from codefill.cli.common import log_progress

    now = [0.0]
    lines: list[str] = []
    cb = log_progress("humaneval single-line", write=lines.append, clock=lambda: now[0])
    for done in range(1, 201):  # 200 items at 1 s each: the first, then a line per 5% (10 items), none in between
        now[0] = float(done)
        cb(done, 200)
    assert len(lines) == 21 and lines[0] == "humaneval single-line: 1/200 (0%) 0:01 elapsed, ~3:19 left"
    assert lines[1] == "humaneval single-line: 10/200 (5%) 0:10 elapsed, ~3:10 left"
    assert lines[-1] == "humaneval single-line: 200/200 (100%) 3:20 elapsed"
    lines.clear()
    cb = log_progress("slow", write=lines.append, clock=lambda: now[0])
    start = now[0]
    for done in range(1, 6):  # 5 of 1000 items, 70 s each: the minute passes before 5% does
        now[0] = start + 70.0 * done
        cb(done, 1000)
    assert len(lines) == 5 and lines[1] == "slow: 2/1000 (0%) 2:20 elapsed, ~19:24:20 left"
