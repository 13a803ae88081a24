"""Issue 12 #14: plain-Python routes around the evaluation sandbox's audit hook (dir_fd arguments, a patched
os.getcwd after chdir, sqlite3 files, FIFOs) are refused; the user's directory stays as it was."""

import os

import pytest

from codefill.eval.execution import run_program

ATTACKS = {
    "open_dir_fd": "fd = os.open(OUT, os.O_RDONLY)\nos.close(os.open('victim.txt', os.O_WRONLY | os.O_TRUNC, dir_fd=fd))",
    "open_dir_fd_create": "fd = os.open(OUT, os.O_RDONLY)\nos.close(os.open('new.txt', os.O_WRONLY | os.O_CREAT, dir_fd=fd))",
    "rename_dst_dir_fd": "open('mine', 'w').write('x')\nfd = os.open(OUT, os.O_RDONLY)\nos.rename('mine', 'new.txt', dst_dir_fd=fd)",
    "replace_src_dir_fd": "fd = os.open(OUT, os.O_RDONLY)\nos.replace('victim.txt', 'stolen', src_dir_fd=fd)",
    "remove_dir_fd": "fd = os.open(OUT, os.O_RDONLY)\nos.remove('victim.txt', dir_fd=fd)",
    "mkdir_dir_fd": "fd = os.open(OUT, os.O_RDONLY)\nos.mkdir('newdir', dir_fd=fd)",
    "chdir_patched_getcwd": "here = os.getcwd()\nos.chdir(OUT)\nos.getcwd = lambda: here\nopen('victim.txt', 'w').write('pwned')",
    "chdir_patched_lstat": ("here = os.getcwd()\nos.chdir(OUT)\nos.getcwd = lambda: here\nos.readlink = lambda p: here\n"
                            "open('new.txt', 'w').write('pwned')"),
    "sqlite_absolute": "import sqlite3\nsqlite3.connect(os.path.join(OUT, 'new.db')).execute('create table t(a)')",
    "sqlite_uri": "import sqlite3\nsqlite3.connect('file:' + os.path.join(OUT, 'new.db') + '?mode=rwc', uri=True).execute('create table t(a)')",
    "mkfifo": "os.mkfifo(os.path.join(OUT, 'new.fifo'))",
    "mkfifo_dir_fd": "fd = os.open(OUT, os.O_RDONLY)\nos.mkfifo('new.fifo', dir_fd=fd)",
    "mknod": "import stat\nos.mknod(os.path.join(OUT, 'new.node'), 0o600 | stat.S_IFREG)",
}


def snapshot(d):
    return {n: (open(os.path.join(d, n), "rb").read() if os.path.isfile(os.path.join(d, n)) else None)
            for n in sorted(os.listdir(d))}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_bypass_is_refused(tmp_path, name):
    out = tmp_path / "user"
    out.mkdir()
    (out / "victim.txt").write_text("precious\n")
    before = snapshot(out)
    code = (f"import os\nOUT = {str(out)!r}\ntry:\n" + "".join("    " + l + "\n" for l in ATTACKS[name].splitlines())
            + "except PermissionError as e:\n    print('BLOCKED', e)\n")
    r = run_program(code, timeout=20)
    assert snapshot(out) == before, r.output
    assert "BLOCKED" in r.output and "codefill sandbox" in r.output, r.output


def test_ordinary_file_work_inside_the_task_directory_still_works():
    code = ("import os, shutil, sqlite3, tempfile\n"
            "fd = os.open('.', os.O_RDONLY)\nos.close(os.open('a', os.O_WRONLY | os.O_CREAT, dir_fd=fd))\n"
            "os.rename('a', 'b', src_dir_fd=fd, dst_dir_fd=fd)\nos.mkfifo('f')\n"
            "sqlite3.connect('d.db').execute('create table t(a)')\nsqlite3.connect(':memory:')\n"
            "os.makedirs('x/y'); open('x/y/z', 'w').write('1'); shutil.rmtree('x')\n"
            "os.close(tempfile.mkstemp()[0])\nprint('OK')\n")
    r = run_program(code, timeout=20)
    assert r.passed and "OK" in r.output, r.output
