"""Acceptance statistics without a model (issue 13 #3): the retention measure, the bounded writer, the recorder's
records (the format the language server writes), the reader and summary, the refit's minimum, and `codefill stats`
as a subprocess on files it cannot read. The run through the real server is tests/lsp/test_lsp_stats.py."""

import asyncio
import json
import logging
import os
import subprocess
import sys

import pytest

from codefill.engine.gate import FULL_FEATURES, Gate
from codefill.eval import acceptance as A
from codefill.lsp import stats as S
from codefill.lsp.documents import Document, DocumentStore
from codefill.lsp.edits import cursor_for
from codefill.lsp.settings import Settings, merge

CLI = [sys.executable, "-m", "codefill", "stats"]


# ---------------------------------------------------------------------------------------------- retention


def kept(before_doc: str, accepted: str, now: str) -> int:
    """The accepted text is at the marker `|` of `before_doc`."""
    start = before_doc.index("|")
    before = before_doc.replace("|", accepted, 1)
    return S.retained_chars(before, start, len(accepted), now)


SUGG = "total = sum(x * x for x in values)\n    return total"


def test_untouched_text_is_all_retained():
    doc = "def f(values):\n    |\n\nprint(f([1, 2]))\n"
    assert kept(doc, SUGG, doc.replace("|", SUGG)) == len(SUGG)


def test_deleted_characters_are_not_retained():
    doc = "def f(values):\n    |\n\nprint(f([1, 2]))\n"
    assert kept(doc, SUGG, doc.replace("|", SUGG[:10])) == 10
    assert kept(doc, SUGG, doc.replace("|", SUGG[5:])) == len(SUGG) - 5
    assert kept(doc, SUGG, doc.replace("|", "")) == 0


def test_text_typed_inside_or_around_does_not_count_against_it():
    doc = "def f(values):\n    |\n\nprint(f([1, 2]))\n"
    typed = SUGG.replace("x * x", "x * x + 1").replace("return total", "# squares\n    return total")
    assert kept(doc, SUGG, doc.replace("|", typed)) == len(SUGG)
    edited_elsewhere = "import math\n\n" + doc.replace("|", SUGG).replace("[1, 2]", "[1, 2, 3]") + "# end\n"
    assert kept(doc, SUGG, edited_elsewhere) == len(SUGG)


def test_reindented_code_keeps_its_characters():
    doc = "|\n"
    block = "for x in xs:\n    print(x)\n"
    assert kept(doc, block, "".join("    " + line for line in block.splitlines(True)) + "\n") == len(block)


def test_rewritten_text_is_mostly_not_retained():
    doc = "def f(values):\n    |\n"
    got = kept(doc, SUGG, doc.replace("|", "raise NotImplementedError"))
    assert got < len(SUGG) // 3


def test_large_documents_are_compared_by_lines_and_still_counted():
    body = "".join(f"def function_{i}(a, b):\n    return a * {i} + b\n\n" for i in range(3000))  # ~100k chars
    doc = body + "def g(values):\n    |\n" + body
    before = doc.replace("|", SUGG)
    assert len(before) ** 2 > S.DIFF_CELLS  # the line-level path
    # edits at both ends make the changed region the whole document; half of the suggestion's last line goes
    now = "# top\n" + before.replace("    return total", "    return", 1) + "# bottom\n"
    assert kept(doc, SUGG, now) == len(SUGG) - len(" total")


# ---------------------------------------------------------------------------------------------- the writer


def test_the_stats_file_is_rotated_at_its_bound(tmp_path):
    path = str(tmp_path / "state" / "stats.jsonl")
    f = S.StatsFile(path, max_bytes=2048)
    for i in range(400):
        f.write({"event": "shown", "id": f"x-{i}", "t": 1.0, "pad": "y" * (i % 50)})
    assert f.flush(10)
    assert os.path.getsize(path) <= 2048 and os.path.getsize(path + ".1") <= 2048
    lines = [json.loads(x) for p in (path + ".1", path) for x in open(p, encoding="utf-8")]
    ids = [r["id"] for r in lines]
    assert ids[-1] == "x-399" and ids == sorted(ids, key=lambda s: int(s[2:]))  # whole lines, in order
    assert not os.path.exists(path + ".2")


def test_a_file_that_cannot_be_written_is_logged_once(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    f = S.StatsFile(str(blocker / "stats.jsonl"))
    with caplog.at_level(logging.WARNING, logger="codefill.lsp.stats"):
        for i in range(3):
            f.write({"event": "shown", "id": str(i), "t": 1.0})
            assert f.flush(5)
    assert f.failed == 3
    assert len([r for r in caplog.records if "cannot be written" in r.getMessage()]) == 1


def test_the_state_directory(monkeypatch, tmp_path):
    assert S.stats_path() == os.path.join(os.environ["CODEFILL_STATE_DIR"], "stats.jsonl")  # tests/conftest.py
    monkeypatch.delenv("CODEFILL_STATE_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert S.stats_path() == str(tmp_path / "codefill" / "stats.jsonl")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert S.stats_path() == os.path.expanduser("~/.local/state/codefill/stats.jsonl")


def test_the_test_hooks_are_validated(monkeypatch):
    monkeypatch.setenv(S.DELAYS_ENV, "1,2")
    assert S._delays() == (("30s", 1.0), ("2min", 2.0))
    for bad in ("1", "a,b", "-1,2", "1,2,3"):
        monkeypatch.setenv(S.DELAYS_ENV, bad)
        assert S._delays() == S.CHECKS
    monkeypatch.setenv(S.MAX_BYTES_ENV, "12")
    assert S._max_bytes() == S.MAX_BYTES


def test_the_stats_setting_is_validated():
    s, problems = merge(Settings(), {"stats": False})
    assert s.stats is False and not problems
    s, problems = merge(Settings(), {"stats": "no"})
    assert s.stats is True and problems and "stats" in problems[0]


# ---------------------------------------------------------------------------------------------- the recorder


class FakeServer:
    """What the recorder reads from the language server."""

    def __init__(self, loop, stats=True):
        self.settings = Settings(stats=stats)
        self.documents = DocumentStore()
        self.loop = loop


def _signals(lp=-0.5):
    f = {k: 0.0 for k in FULL_FEATURES}
    f.update(lp_mean=lp, lp_min=lp - 0.5, lp_first=lp)
    return S.Signals(f, False, 0.7)


def _record_run(tmp_path, monkeypatch, stats=True):
    """One answer of two items shown, the first accepted and half of it deleted; the records written."""
    monkeypatch.setenv(S.DELAYS_ENV, "0.05,0.1")

    async def main():
        ls = FakeServer(asyncio.get_running_loop(), stats)
        rec = S.Recorder(ls)
        from lsprotocol import types

        uri = "file:///x/a.py"
        text = "def f():\n    return \n"
        ls.documents.open(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=text))
        cur = cursor_for(ls.documents.get(uri), types.Position(1, 11), "utf-16")
        off = cur.cursor
        cmds = rec.shown(cur, [(off, off, "42 + x"), (off, off, "None")], [_signals(), _signals(-2.0)],
                         invoked=True, latency_ms=12.34, language="python", model="m.gguf")
        if not stats:
            rec.accepted(["whatever"])
            await asyncio.sleep(0.2)
            rec.close()
            return cmds, None
        assert [c.command for c in cmds] == ["codefill.accepted"] * 2
        doc = ls.documents.get(uri)
        doc.set_text(text[:off] + "42 + x" + text[off:])  # the editor applied it
        rec.accepted(cmds[0].arguments)
        rec.accepted(cmds[0].arguments)  # twice: recorded once
        doc.set_text(text[:off] + "42" + text[off:])
        await asyncio.sleep(0.4)
        rec.close()
        return cmds, rec

    return asyncio.run(main())


def _read(path):
    return [json.loads(x) for x in open(path, encoding="utf-8")]


def test_the_recorder_writes_shown_accepted_and_retained(tmp_path, monkeypatch):
    cmds, rec = _record_run(tmp_path, monkeypatch)
    recs = _read(S.stats_path())
    kinds = [r["event"] for r in recs]
    assert kinds.count("shown") == 2 and kinds.count("accepted") == 1 and kinds.count("retained") == 2
    shown = [r for r in recs if r["event"] == "shown"]
    assert [r["rank"] for r in shown] == [0, 1] and len({r["answer"] for r in shown}) == 1
    assert shown[0]["id"] == cmds[0].arguments[0] and shown[0]["trigger"] == "invoked"
    assert shown[0]["latency_ms"] == 12.3 and shown[0]["chars"] == 6 and shown[0]["gate"] == 0.7
    assert set(shown[0]["features"]) == set(FULL_FEATURES)
    assert {r["check"]: r["retained"] for r in recs if r["event"] == "retained"} == {"30s": 2, "2min": 2}
    assert all(r["v"] == 1 and isinstance(r["t"], float) for r in recs)


def test_the_recorder_with_stats_off_writes_nothing(tmp_path, monkeypatch):
    cmds, _ = _record_run(tmp_path, monkeypatch, stats=False)
    assert cmds == [None, None]
    assert not os.path.exists(S.stats_path())


def test_old_answers_are_forgotten(tmp_path, monkeypatch):
    async def main():
        ls = FakeServer(asyncio.get_running_loop())
        rec = S.Recorder(ls)
        doc = Document("file:///x/b.py", "x = \n", 1, "python")
        from lsprotocol import types

        cur = cursor_for(doc, types.Position(0, 4), "utf-16")
        ids = [rec.shown(cur, [(4, 4, "1")], [_signals()], invoked=False, latency_ms=1, language="python",
                         model="m")[0].arguments[0] for _ in range(S.ANSWERS_PER_DOCUMENT + 2)]
        rec.accepted([ids[0]])  # expired: nothing recorded
        rec.accepted([ids[-1]])
        rec.close()
        return ids

    ids = asyncio.run(main())
    accepted = [r["id"] for r in _read(S.stats_path()) if r["event"] == "accepted"]
    assert accepted == [ids[-1]]


def test_answers_of_a_closed_document_and_old_snapshots_are_let_go(tmp_path, monkeypatch):
    """Each remembered answer holds its document's text: a closed document's answers go, and the distinct texts kept
    stay within SNAPSHOT_CHARS_KEPT (a 2 MB file once held 128 snapshots, tests/lsp/test_lsp_memory.py)."""
    from lsprotocol import types

    monkeypatch.setattr(S, "SNAPSHOT_CHARS_KEPT", 50_000)

    async def main():
        ls = FakeServer(asyncio.get_running_loop())
        rec = S.Recorder(ls)
        ids = {}
        for name in ("a", "b", "c"):
            for version in range(3):
                doc = Document(f"file:///x/{name}.py", "x = \n" + "#" * 10_000 + str(version), version, "python")
                cur = cursor_for(doc, types.Position(0, 4), "utf-16")
                ids[name, version] = rec.shown(cur, [(4, 4, "1")], [_signals()], invoked=False, latency_ms=1,
                                               language="python", model="m")[0].arguments[0]
        kept = rec._snapshot_chars()
        rec.forget_document("file:///x/c.py")
        rec.accepted([ids["c", 2]])  # closed: nothing recorded
        rec.accepted([ids["a", 0]])  # pushed out by the character bound: nothing recorded
        rec.accepted([ids["b", 2]])
        rec.close()
        return ids, kept

    ids, kept = asyncio.run(main())
    assert kept <= 50_000
    accepted = [r["id"] for r in _read(S.stats_path()) if r["event"] == "accepted"]
    assert accepted == [ids["b", 2]]


# ---------------------------------------------------------------------------------------------- reader, summary


def test_bad_lines_are_counted_and_skipped(tmp_path, monkeypatch):
    _record_run(tmp_path, monkeypatch)
    path = S.stats_path()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("not json\n{\"event\": \"shown\"}\n[1]\n\n")
    with open(path, "ab") as fh:
        fh.write(b"\xff\xfe{\n")
    r = A.read(S.stats_files())
    assert r.bad_lines == 4 and len(r.shown) == 2 and len(r.accepted) == 1
    s = A.summarize(r)
    assert s["all"]["shown"] == 1 and s["all"]["accepted"] == 1  # one answer of two items
    assert s["all"]["retained"]["30s"] == {"measured": 1, "chars": 6, "retained": 2, "rate": 0.3333,
                                           "unmeasured": 0}
    assert s["all"]["latency_ms"]["p50"] == 12.3
    assert A.read(S.stats_files(), since=2e9 + 1).shown == []  # the future: none


def test_parse_since():
    assert A.parse_since("7d", now=1000000.0) == 1000000.0 - 7 * 86400
    assert A.parse_since("30m", now=100000.0) == 100000.0 - 1800
    assert A.parse_since(None) is None
    for bad in ("7", "d", "-1d", "7y", "nand"):
        with pytest.raises(ValueError):
            A.parse_since(bad)


def _cli(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=dict(os.environ))


def test_cli_no_records_and_a_corrupt_file(tmp_path):
    p = _cli()
    assert p.returncode == 0 and p.stdout.count("\n") == 1 and "no acceptance statistics" in p.stdout, p
    os.makedirs(os.environ["CODEFILL_STATE_DIR"], exist_ok=True)
    with open(S.stats_path(), "w") as fh:
        fh.write("garbage\n" * 5)
    p = _cli()
    assert p.returncode == 7 and p.stderr.count("\n") == 1 and "5 unreadable lines" in p.stderr, p
    p = _cli("--plot", str(tmp_path / "x.png"))
    assert p.returncode == 7 and not (tmp_path / "x.png").exists()


def test_cli_skips_bad_lines_and_says_how_many(tmp_path, monkeypatch):
    _record_run(tmp_path, monkeypatch)
    with open(S.stats_path(), "a") as fh:
        fh.write("garbage\n")
    p = _cli()
    assert p.returncode == 0 and "1 suggestions shown, 1 accepted (100.0%)" in p.stdout, p
    assert "1 unreadable lines" in p.stderr
    assert json.loads(_cli("--json").stdout)["bad_lines"] == 1


def test_the_help_names_the_refit_minimum():
    p = _cli("--help")
    text = " ".join(p.stdout.replace("│", " ").split())  # rich's box, wrapped
    assert f"at least {A.MIN_REFIT_SHOWN} recorded suggestions" in text and f"{A.MIN_EACH} of them accepted" in text


# ---------------------------------------------------------------------------------------------- refit


def _records_for_refit(n, accept_every=None):
    """`n` shown records in the recorder's format, accepted where log-probabilities are high."""
    out = A.Records()
    for i in range(n):
        lp = -3.0 + 3.0 * ((i * 37) % n) / n
        f = {k: 0.0 for k in FULL_FEATURES}
        f.update(lp_mean=lp, lp_min=lp - 1, lp_first=lp, log_tokens=1.0 + (i % 5) / 2)
        out.shown.append({"v": 1, "event": "shown", "t": float(i), "id": f"s{i}", "answer": f"a{i}", "rank": 0,
                          "items": 1, "trigger": "automatic", "language": "python", "model": "m.gguf",
                          "latency_ms": 10.0, "chars": 5, "lines": 1, "gate": 0.5, "entropy": False, "features": f})
        if (lp > -1.0 and i % 7) or (i % 11 == 0):
            out.accepted.append({"v": 1, "event": "accepted", "t": i + 1.0, "id": f"s{i}", "answer": f"a{i}",
                                 "rank": 0, "trigger": "automatic", "language": "python", "model": "m.gguf",
                                 "chars": 5})
    return out


def test_refit_refuses_below_the_minimum():
    with pytest.raises(A.NotEnoughEvents) as exc:
        A.refit_gate(_records_for_refit(A.MIN_REFIT_SHOWN - 1))
    assert str(A.MIN_REFIT_SHOWN) in str(exc.value) and str(A.MIN_EACH) in str(exc.value)


def test_refit_writes_a_gate_the_server_can_load(tmp_path):
    gate, info = A.refit_gate(_records_for_refit(400))
    assert info["suggestions"] == 400 and info["model"] == "m.gguf"
    p = tmp_path / "g.json"
    gate.save(str(p))
    back = Gate.load(str(p))
    assert back.logprob.coef[back.logprob.names.index("lp_mean")] > 0 and 0 < back.threshold < 1
    assert back.full.names == back.logprob.names  # no entropies recorded: the logprob model serves for both
