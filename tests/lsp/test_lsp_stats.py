"""Acceptance statistics (issue 13 #3) through the real language server over stdio and the real `codefill stats`:
an editing run (a suggestion shown, accepted with its command as an editor runs it, part of it edited away) is
recorded, with its retention after the two (shortened) delays; the CLI prints figures from it, its JSON agrees, the
plot is a PNG; `stats: false` records nothing; bad executeCommand arguments leave the server working; --refit-gate
refuses below its minimum and writes a loadable gate above it (records synthesised from the server's own)."""

import asyncio
import json
import os
import random
import struct
import subprocess
import sys
import zlib

import pytest
import pytest_asyncio
from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pytest_lsp import make_test_lsp_client

from test_lsp_server import CAPS, inline_params, isolated_env

SERVER = [sys.executable, "-m", "codefill", "lsp"]
CLI = [sys.executable, "-m", "codefill", "stats"]
OPTIONS = {"threads": 1, "timeBudgetMs": None, "gateThreshold": 0, "adaptiveSamples": 0, "warmup": False}
DELAYS = (1.0, 3.0)  # CODEFILL_STATS_DELAYS: the 30 s and 2 min checks, shortened
# The cursor is at the end of the document: what follows the accepted text is nothing, so the characters kept are
# exactly the accepted text's first ones whatever the model answers.
SOURCE = ('import math\n\n\ndef fibonacci(n):\n    """Return the n-th Fibonacci number."""\n    if n < 2:\n'
          '        return n\n    return ')
LINE, COL = 7, len("    return ")


def records(state_dir) -> list[dict]:
    path = os.path.join(state_dir, "stats.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


async def until(pred, timeout=20.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.05)
    return True


def change(client, uri, version, sl, sc, el, ec, text):
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(sl, sc), end=types.Position(el, ec)), text=text)]))


def position_after(text: str) -> tuple[int, int]:
    """(line, utf-16 character) of the end of `text`."""
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2


def cli(state_dir, *args, timeout=120):
    env = dict(os.environ, CODEFILL_STATE_DIR=str(state_dir))
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("state")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client(tmp_path_factory, state_dir):
    env = dict(isolated_env(tmp_path_factory), CODEFILL_STATE_DIR=str(state_dir),
               CODEFILL_STATS_DELAYS=",".join(str(d) for d in DELAYS))
    c = make_test_lsp_client()
    await c.start_io(*SERVER, env=env)
    c.init_result = await c.initialize_session(types.InitializeParams(capabilities=CAPS,
                                                                      initialization_options=OPTIONS))
    yield c
    await c.shutdown_session()
    await c.stop()


@pytest.fixture(scope="module")
def run(request):
    """What the editing run recorded (set by the first test)."""
    return {}




@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_an_editing_run_is_recorded_with_retention(client, state_dir, run, tmp_path):
    caps = client.init_result.capabilities
    assert caps.execute_command_provider is not None and "codefill.accepted" in caps.execute_command_provider.commands
    uri = (tmp_path / "fib.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=SOURCE)))
    got = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL))
    assert len(got.items) == 1, got
    item = got.items[0]
    text = item.insert_text
    assert len(text) >= 4 and item.range.start == item.range.end == types.Position(LINE, COL), item
    cmd = item.command
    assert cmd is not None and cmd.title == "codefill: accepted" and cmd.command == "codefill.accepted"
    assert len(cmd.arguments) == 1 and isinstance(cmd.arguments[0], str)
    # An invoked request that is not accepted: a second shown answer.
    alt = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL, invoked=True))
    assert alt.items and all(i.command is not None for i in alt.items)
    assert len({i.command.arguments[0] for i in alt.items} | {cmd.arguments[0]}) == len(alt.items) + 1

    # The editor accepts the first: it applies the edit, then runs the item's command.
    change(client, uri, 2, LINE, COL, LINE, COL, text)
    result = await client.workspace_execute_command_async(types.ExecuteCommandParams(
        command=cmd.command, arguments=cmd.arguments))
    assert result is None
    # … then edits some of it away: the second half is deleted, and a line is added above (not held against it).
    keep1 = len(text) // 2
    end_line, end_char = position_after(SOURCE + text)
    keep_line, keep_char = position_after(SOURCE + text[:keep1])
    change(client, uri, 3, keep_line, keep_char, end_line, end_char, "")
    change(client, uri, 4, 0, 0, 0, 0, "# fib.py\n")
    assert await until(lambda: any(r["event"] == "retained" and r["check"] == "30s" for r in records(state_dir)),
                       DELAYS[0] + 15), records(state_dir)
    # After the first check, more is deleted: the 2 min check sees less.
    keep2 = max(1, keep1 // 2)
    a_line, a_char = position_after("# fib.py\n" + SOURCE + text[:keep2])
    b_line, b_char = position_after("# fib.py\n" + SOURCE + text[:keep1])
    change(client, uri, 5, a_line, a_char, b_line, b_char, "")
    assert await until(lambda: any(r["event"] == "retained" and r["check"] == "2min" for r in records(state_dir)),
                       DELAYS[1] + 15), records(state_dir)

    recs = records(state_dir)
    item_id = cmd.arguments[0]
    shown = [r for r in recs if r["event"] == "shown"]
    assert len(shown) == 1 + len(alt.items)
    mine = next(r for r in shown if r["id"] == item_id)
    assert mine["trigger"] == "automatic" and mine["language"] == "python" and mine["chars"] == len(text)
    assert mine["model"].endswith(".gguf") and mine["latency_ms"] > 0 and mine["rank"] == 0
    from codefill.engine.gate import FULL_FEATURES

    assert set(mine["features"]) == set(FULL_FEATURES)
    assert {r["trigger"] for r in shown if r["id"] != item_id} == {"invoked"}
    accepted = [r for r in recs if r["event"] == "accepted"]
    assert [r["id"] for r in accepted] == [item_id] and accepted[0]["chars"] == len(text)
    retained = {r["check"]: r for r in recs if r["event"] == "retained"}
    assert retained["30s"]["retained"] == keep1, (text, retained)
    assert retained["2min"]["retained"] == keep2, (text, retained)
    assert retained["30s"]["after_s"] == DELAYS[0] and retained["2min"]["after_s"] == DELAYS[1]
    assert not any("text" in r for r in recs)  # counts only: no code leaves the editor's buffer for the file
    run.update(text=text, keep1=keep1, keep2=keep2, n_alt=len(alt.items), shown=mine)


@pytest.mark.slow
def test_codefill_stats_prints_the_recorded_run_and_json_agrees(state_dir, run, tmp_path):
    if not run:
        pytest.skip("the editing run did not record")
    proc = cli(state_dir)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    n = len(run["text"])
    assert "2 suggestions shown, 1 accepted (50.0%)" in out, out
    row = next(line for line in out.splitlines() if line.startswith("all "))
    cells = row.split()
    assert cells[1:6] == ["2", "1", "50.0%", str(n), f"{100 * run['keep1'] / n:.1f}%"], row
    assert cells[6] == f"{100 * run['keep2'] / n:.1f}%", row
    assert any(line.startswith("language python") for line in out.splitlines())
    assert any(line.startswith("trigger invoked") and " 0.0%" in line for line in out.splitlines()), out

    js = cli(state_dir, "--json")
    assert js.returncode == 0, js.stderr
    s = json.loads(js.stdout)
    a = s["all"]
    assert a["shown"] == 2 and a["accepted"] == 1 and a["acceptance_rate"] == 0.5
    assert a["accepted_chars"] == n
    assert a["retained"]["30s"]["retained"] == run["keep1"] and a["retained"]["2min"]["retained"] == run["keep2"]
    assert f"{a['latency_ms']['p50']:.0f}" == cells[7] and f"{a['latency_ms']['p95']:.0f}" == cells[8]
    assert s["by_language"]["python"]["shown"] == 2 and list(s["by_model"]) == [run["shown"]["model"]]
    assert s["by_trigger"]["automatic"]["acceptance_rate"] == 1.0
    # --since: the run is minutes old at most
    assert json.loads(cli(state_dir, "--json", "--since", "1h").stdout)["all"]["shown"] == 2
    bad = cli(state_dir, "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr

    png = tmp_path / "acceptance.png"
    p = cli(state_dir, "--plot", str(png))
    assert p.returncode == 0, p.stderr
    w, h, pixels = read_png(png.read_bytes())
    assert (w, h) == (640, 360)
    blue = sum(1 for px in pixels if px == (31, 119, 180))
    assert blue > 10  # the acceptance point is drawn


def read_png(data: bytes):
    """A strict little PNG reader (8-bit RGB, filter 0, as eval/png.py writes): checks the signature and every CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF, tag
        chunks.append((tag, body))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    assert depth == 8 and color == 2
    raw = zlib.decompress(b"".join(b for t, b in chunks if t == b"IDAT"))
    assert len(raw) == h * (1 + 3 * w)
    pixels = []
    for y in range(h):
        row = raw[y * (1 + 3 * w):(y + 1) * (1 + 3 * w)]
        assert row[0] == 0
        pixels.extend(tuple(row[1 + 3 * x:4 + 3 * x]) for x in range(w))
    return w, h, pixels


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_stats_false_records_nothing(client, state_dir, tmp_path):
    before = records(state_dir)
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"stats": False}))
    uri = (tmp_path / "off.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=SOURCE)))
    try:
        got = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL))
        assert got.items and all(i.command is None for i in got.items)
        got = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL, invoked=True))
        assert got.items and all(i.command is None for i in got.items)
        await asyncio.sleep(0.5)
        assert records(state_dir) == before
    finally:
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(settings={"stats": True}))
    got = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL))
    assert got.items and got.items[0].command is not None  # on again
    assert await until(lambda: len(records(state_dir)) > len(before), 5)


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="module")
async def test_bad_execute_command_arguments_do_not_kill_the_server(client, tmp_path):
    for args in (None, [], [1], ["a", "b"], [{"id": "x"}], ["no-such-id"], [None], ["x" * 10000]):
        assert await client.workspace_execute_command_async(types.ExecuteCommandParams(
            command="codefill.accepted", arguments=args)) is None
    with pytest.raises(JsonRpcException) as exc:
        await client.workspace_execute_command_async(types.ExecuteCommandParams(command="codefill.nope"))
    assert "codefill.nope" in str(exc.value)
    uri = (tmp_path / "alive.py").as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id="python", version=1, text=SOURCE)))
    got = await client.text_document_inline_completion_async(inline_params(uri, LINE, COL))
    assert got.items  # still answering


def test_execute_command_arguments_of_the_wrong_shape_are_answered(raw):
    """On the wire, without a model: arguments of any shape get an answer (a null result or InvalidParams), an
    unknown command InvalidParams, and the server keeps reading."""
    raw.initialize()
    for i, args in enumerate(("x", {"id": "x"}, 3, True), 10):
        res = raw.request(i, "workspace/executeCommand", {"command": "codefill.accepted", "arguments": args})
        assert res.get("result", "absent") is None or res["error"]["code"] == -32602, res
    res = raw.request(1, "workspace/executeCommand", {"command": "codefill.nope", "arguments": []})
    assert res["error"]["code"] == -32602 and "codefill.nope" in res["error"]["message"], res
    res = raw.request(2, "workspace/executeCommand", {"command": "codefill.accepted", "arguments": [[1, 2]]})
    assert res.get("result", "absent") is None, res
    res = raw.request(3, "workspace/executeCommand", {"command": "codefill.accepted"})
    assert res.get("result", "absent") is None, res
    res = raw.request(4, "workspace/executeCommand", {"command": 7})
    assert res["error"]["code"] == -32602, res
    assert raw.request(5, "codefill/noSuchMethod", {})["error"]["code"] == -32601  # still reading
    assert raw.proc.poll() is None


# ---------------------------------------------------------------------------------------------- refit


def synthesize(template: dict, n: int, seed: int = 0) -> list[dict]:
    """`n` shown answers like the server's `template` record, half of them accepted: the better the log-probability
    the likelier the accept (what a gate should learn)."""
    rng = random.Random(seed)
    out = []
    t = template["t"] - 86400
    for i in range(n):
        lp = rng.uniform(-3.0, -0.05)
        f = dict(template["features"], lp_mean=lp, lp_min=lp - rng.uniform(0, 2), lp_first=lp + rng.uniform(-1, 0.5),
                 log_tokens=rng.uniform(0.7, 3.5))
        rec = dict(template, id=f"syn-{i}", answer=f"syn-a{i}", t=t + 60 * i, features=f)
        out.append(rec)
        if rng.random() < 1 / (1 + pow(2.718, -3 * (lp + 1.2))):
            out.append({"v": 1, "event": "accepted", "t": t + 60 * i + 2, "id": rec["id"], "answer": rec["answer"],
                        "rank": 0, "trigger": rec["trigger"], "language": rec["language"], "model": rec["model"],
                        "chars": rec["chars"]})
    return out


@pytest.mark.slow
def test_refit_gate_refuses_below_the_minimum_and_writes_a_loadable_gate_above(state_dir, run, tmp_path):
    if not run:
        pytest.skip("the editing run did not record")
    from codefill.engine.gate import Gate
    from codefill.eval.acceptance import MIN_EACH, MIN_REFIT_SHOWN

    out = tmp_path / "gate.json"
    few = cli(state_dir, "--refit-gate", str(out))  # the recorded run: 2 suggestions
    assert few.returncode == 1 and not out.exists()
    msg = few.stderr.strip()
    assert len(msg.splitlines()) == 1 and str(MIN_REFIT_SHOWN) in msg and str(MIN_EACH) in msg, msg

    own = tmp_path / "own"
    own.mkdir()
    with open(own / "stats.jsonl", "w", encoding="utf-8") as fh:
        for rec in records(state_dir) + synthesize(run["shown"], 400):
            fh.write(json.dumps(rec) + "\n")
    ok = cli(own, "--refit-gate", str(out))
    assert ok.returncode == 0, ok.stderr
    assert "gate written to" in ok.stdout and "gateFile" in ok.stdout
    gate = Gate.load(str(out))
    assert 0 < gate.threshold < 1
    assert "lp_mean" in gate.logprob.names and gate.logprob.coef[gate.logprob.names.index("lp_mean")] > 0
    assert gate.metrics["auroc_in_sample"] > 0.7
    d = json.loads(out.read_text())
    assert d["format"] == "codefill-gate" and d["version"] == 1
