"""`codefill fill`: the user's files stay untouched without --write, commands run in a copy and time out,
and the real model fills a hole that a test checks. Also `codefill complete -n`."""

import json
import os
import subprocess
import sys
import time

import pytest

from codefill.cli.fill import ProjectSandbox, project_root, run_command, unified_diff, write_atomically


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codefill", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env=dict(os.environ, CODEFILL_NO_PROGRESS="1"))


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "pkg" / "mathx.py").write_text(
        "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return \n", encoding="utf-8")
    (root / "check_add.py").write_text("from pkg.mathx import add\nassert add(2, 3) == 5\nprint('ok')\n")
    return root


def snapshot(root):
    out = {}
    for d, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            st = os.stat(p)
            out[p] = (open(p, "rb").read(), st.st_mtime_ns)
    return out


def test_project_root_and_sandbox_copy(project):
    f = project / "pkg" / "mathx.py"
    assert project_root(str(f)) == str(project)
    before = snapshot(project)
    with ProjectSandbox(str(f)) as box:
        assert not os.path.exists(os.path.join(box.copy, ".git"))  # not copied
        r = box.run(f.read_text() + "    pass\n", "python -c \"import pkg.mathx; print('imported')\"", 30, str(project))
        assert r.passed and "imported" in r.output
        assert box.cwd_for(str(project / "pkg")) == os.path.join(box.copy, "pkg")
        copy = box.copy
    assert not os.path.exists(copy)  # cleaned up
    assert snapshot(project) == before


def test_a_hanging_command_is_killed_with_its_children(tmp_path):
    pidfile = tmp_path / "child.pid"
    r = run_command(f"sleep 60 & echo $! > {pidfile}; wait", str(tmp_path), timeout=1)
    assert not r.passed and r.returncode is None and "timed out" in r.output
    pid = int(pidfile.read_text())
    for _ in range(50):  # the group was SIGKILLed; give the kernel a moment to reap
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the command's child survived the timeout")


def test_command_output_and_status(tmp_path):
    r = run_command("echo hello; exit 3", str(tmp_path), timeout=10)
    assert not r.passed and r.returncode == 3 and "hello" in r.output


def test_write_atomically_keeps_mode(tmp_path):
    p = tmp_path / "x.sh"
    p.write_text("old\n")
    os.chmod(p, 0o755)
    write_atomically(str(p), "new\n")
    assert p.read_text() == "new\n" and (os.stat(p).st_mode & 0o777) == 0o755
    assert os.listdir(tmp_path) == ["x.sh"]
    assert unified_diff("x.sh", "old\n", "new\n").splitlines()[2:] == ["@@ -1 +1 @@", "-old", "+new"]


def test_fill_until_passing_shows_diff_and_leaves_files_alone(project):
    before = snapshot(project)
    proc = run("fill", f"{project / 'pkg' / 'mathx.py'}:3:12", "--until", "python check_add.py", "-n", "4",
               "--rounds", "0", "--threads", "1", "--mode", "line", "--timeout", "60", cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    assert "+    return a + b" in proc.stdout and "PASS" in proc.stderr
    assert snapshot(project) == before  # nothing written without --write


def test_fill_write_and_failure_exit_code(project):
    f = project / "pkg" / "mathx.py"
    proc = run("fill", f"{f}:3:12", "--until", "exit 1", "-n", "2", "--rounds", "1", "--threads", "1",
               "--mode", "line", cwd=str(project))
    assert proc.returncode == 1 and "no candidate passed" in proc.stderr
    assert f.read_text().endswith("    return \n")
    proc = run("fill", f"{f}:3:12", "--until", "python check_add.py", "-n", "4", "--rounds", "0", "--threads", "1",
               "--mode", "line", "--write", cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    assert "return a + b" in f.read_text()
    assert subprocess.run([sys.executable, "check_add.py"], cwd=project).returncode == 0


def test_complete_with_samples_reports_candidates_and_cost(project):
    proc = run("complete", f"{project / 'pkg' / 'mathx.py'}:3:12", "-n", "3", "--select", "auto", "--json",
               "--threads", "1", "--mode", "line", "--time-budget", "0")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["candidates"]) == 3 and out["select"] == "auto"
    assert out["text"] == out["candidates"][out["selected"]]["text"]
    assert out["cost"]["prompt_evaluated"] > 0 and out["cost"]["candidates"] == 3
    bad = run("complete", f"{project / 'pkg' / 'mathx.py'}:3:12", "-n", "2", "--select", "vote")
    assert bad.returncode != 0
