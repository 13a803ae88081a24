"""Issue 12 #8: `codefill fill --until` never lets a candidate reach the user's files through a symlink, keeps BOMs,
writes through a symlink with --write, refuses to overwrite a file edited during the search, caps the project copy,
and leaves no process of the command running (Ctrl-C, background children)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from codefill.cli.fill import (MAX_COPY_BYTES, MAX_COPY_FILES, FileChangedError, ProjectCopyError, ProjectSandbox,
                               encode_like, write_atomically)

BODY = "def add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return \n"


def snapshot(*roots):
    out = {}
    for root in roots:
        for d, dirs, files in os.walk(root):
            for f in dirs + files:
                p = os.path.join(d, f)
                if os.path.islink(p):
                    out[p] = ("link", os.readlink(p))
                elif os.path.isfile(p):
                    st = os.stat(p)
                    out[p] = (open(p, "rb").read(), st.st_mtime_ns)
    return out


@pytest.fixture
def layout(tmp_path):
    """proj/ (a git root) whose pkg/mathx.py is an absolute symlink to a file outside, lib/ an absolute symlink to
    a folder outside, alias.py a relative link inside the project."""
    outside = tmp_path / "outside"
    (outside / "lib").mkdir(parents=True)
    (outside / "lib" / "data.txt").write_text("precious\n")
    real = outside / "mathx.py"
    real.write_bytes(b"\xef\xbb\xbf" + BODY.encode())
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mathx.py").symlink_to(real)
    (root / "lib").symlink_to(outside / "lib")
    (root / "alias.py").symlink_to("pkg/mathx.py")
    (root / "dangling.txt").symlink_to(tmp_path / "nowhere" / "x.txt")
    (root / "check_add.py").write_text("from pkg.mathx import add\nassert add(2, 3) == 5\nprint('ok')\n")
    return root, outside


def test_sandbox_writes_never_reach_symlink_targets(layout):
    root, outside = layout
    before = snapshot(root, outside)
    with ProjectSandbox(str(root / "pkg" / "mathx.py")) as box:
        assert not os.path.islink(os.path.join(box.copy, "pkg", "mathx.py"))
        assert not os.path.islink(os.path.join(box.copy, "lib"))
        assert os.path.islink(os.path.join(box.copy, "alias.py"))  # inside the project: still a link, in the copy
        assert os.path.realpath(os.path.join(box.copy, "alias.py")) == os.path.realpath(
            os.path.join(box.copy, "pkg", "mathx.py"))
        assert not os.path.lexists(os.path.join(box.copy, "dangling.txt"))
        r = box.run(BODY.replace("return ", "return a + b"), "echo pwned > lib/data.txt; echo pwned > dangling.txt;"
                    " python check_add.py", 30, str(root))
        assert r.passed, r.output
        with open(os.path.join(box.copy, "pkg", "mathx.py"), "rb") as fh:
            assert fh.read().startswith(b"\xef\xbb\xbf")  # candidates keep the BOM
        box.restore()
        with open(os.path.join(box.copy, "pkg", "mathx.py"), "rb") as fh:
            assert fh.read() == (outside / "mathx.py").read_bytes()
    assert snapshot(root, outside) == before
    assert not (root.parent / "nowhere").exists()


def run_fill(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "codefill", "fill", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=dict(os.environ, CODEFILL_NO_PROGRESS="1"))


COMMON = ("-n", "4", "--rounds", "0", "--threads", "1", "--mode", "line", "--timeout", "60")


def test_fill_without_write_leaves_symlinked_bom_file_alone(layout):
    root, outside = layout
    before = snapshot(root, outside)
    p = run_fill(f"{root / 'pkg' / 'mathx.py'}:3:12", "--until", "python check_add.py", *COMMON, cwd=str(root))
    assert p.returncode == 0, p.stderr
    assert snapshot(root, outside) == before


def test_fill_write_goes_through_the_symlink_and_keeps_the_bom(layout):
    root, outside = layout
    link = root / "pkg" / "mathx.py"
    p = run_fill(f"{link}:3:12", "--until", "python check_add.py", "--write", *COMMON, cwd=str(root))
    assert p.returncode == 0, p.stderr
    assert link.is_symlink() and os.readlink(link) == str(outside / "mathx.py")
    data = (outside / "mathx.py").read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"return a + b" in data


def test_write_refuses_a_file_edited_during_the_search(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    f = root / "pkg" / "mathx.py"
    f.write_text(BODY)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "check_add.py").write_text("from pkg.mathx import add\nassert add(2, 3) == 5\n")
    # the command (run in the copy) edits the user's real file, as an editor would during a long search
    p = run_fill(f"{f}:3:12", "--until", f"echo '# edited' >> {f}; python check_add.py", "--write", *COMMON,
                 cwd=str(root))
    assert p.returncode == 7, p.stderr
    assert "changed since" in p.stderr and "Traceback" not in p.stderr
    assert f.read_text() == BODY + "# edited\n" * f.read_text().count("# edited")
    assert "return a + b" not in f.read_text()


def test_write_atomically_through_a_link_and_with_an_expected_content(tmp_path):
    target = tmp_path / "real.py"
    target.write_text("old\n")
    link = tmp_path / "link.py"
    link.symlink_to(target)
    write_atomically(str(link), "new\n", expected=b"old\n")
    assert link.is_symlink() and target.read_text() == "new\n"
    with pytest.raises(FileChangedError):
        write_atomically(str(link), "newer\n", expected=b"old\n")
    assert target.read_text() == "new\n" and sorted(os.listdir(tmp_path)) == ["link.py", "real.py"]
    assert encode_like(b"\xef\xbb\xbfx", "y") == b"\xef\xbb\xbfy" and encode_like(b"x", "y") == b"y"


def test_project_copy_is_capped(tmp_path):
    assert MAX_COPY_FILES == 20_000 and MAX_COPY_BYTES == 200 * 1000 * 1000
    root = tmp_path / "big"
    root.mkdir()
    for i in range(12):
        (root / f"f{i}.txt").write_text("x" * 1000)
    with pytest.raises(ProjectCopyError, match="10 files"):
        ProjectSandbox(str(root / "f0.txt"), max_files=10)
    with pytest.raises(ProjectCopyError, match="MB"):
        ProjectSandbox(str(root / "f0.txt"), max_bytes=5000)
    assert not [d for d in os.listdir(tmp_path) if d.startswith("codefill-fill-")]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its reaper is dead
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_dead(pids, seconds=10):
    end = time.time() + seconds
    while time.time() < end and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def _project(tmp_path):
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "pkg" / "mathx.py").write_text(BODY)
    return root


def test_ctrl_c_kills_the_command_tree_and_leaves_the_tree_alone(tmp_path):
    root = _project(tmp_path)
    pids = tmp_path / "pids"
    before = snapshot(root)
    cmd = f"sleep 120 & echo $! >> {pids}; echo $$ >> {pids}; pwd > {tmp_path / 'cwd'}; sleep 120"
    proc = subprocess.Popen([sys.executable, "-m", "codefill", "fill", f"{root / 'pkg' / 'mathx.py'}:3:12",
                             "--until", cmd, *COMMON], cwd=str(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, CODEFILL_NO_PROGRESS="1"),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    try:
        end = time.time() + 240
        while time.time() < end and not (pids.exists() and len(pids.read_text().split()) >= 2):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err, (out, err)
    children = [int(x) for x in pids.read_text().split()]
    assert _wait_dead(children) == [], "the command's processes survived Ctrl-C"
    assert snapshot(root) == before
    assert not os.path.exists((tmp_path / "cwd").read_text().strip())  # the copy is gone


def test_background_children_do_not_survive_the_command(tmp_path):
    root = _project(tmp_path)
    pids = tmp_path / "pids"
    p = run_fill(f"{root / 'pkg' / 'mathx.py'}:3:12", "--until", f"sleep 30 & echo $! >> {pids}; true", "-n", "1",
                 "--rounds", "0", "--threads", "1", "--mode", "line", cwd=str(root))
    assert p.returncode == 0, p.stderr
    assert _wait_dead([int(x) for x in pids.read_text().split()], 5) == []
