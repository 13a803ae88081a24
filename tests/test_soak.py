"""`codefill bench soak` (issue 12): a short soak through the real language server and the embedded model. The
figures are printed, not asserted; what is checked is the bookkeeping the table rests on: every request sent is
accounted for (answered, cancelled by the client, or an error), windows follow each other, RSS is read, documents
open and close, and a healthy server gives no errors and exits 0."""

import json
import os
import subprocess
import sys
import sysconfig

import pytest

from codefill.eval.soak import Window, format_soak

CODEFILL = os.path.join(os.path.dirname(sys.executable), "codefill")


@pytest.mark.slow
def test_a_short_soak_accounts_for_every_request(tmp_path):
    stdlib = sysconfig.get_paths()["stdlib"]
    files = [os.path.join(stdlib, n) for n in ("textwrap.py", "shlex.py", "bisect.py")]
    proc = subprocess.run([CODEFILL, "bench", "soak", *files, "--minutes", "1.5", "--window", "0.5", "--max-open", "2",
                           "--threads", "2", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    s, rows = out["summary"], out["windows"]
    assert s["errors"] == 0 and not s["server_errors"], (s, proc.stderr[-2000:])
    assert s["exit_code"] == 0
    assert len(rows) >= 3 and [r["start_min"] for r in rows] == sorted(r["start_min"] for r in rows)
    for r in rows:
        assert r["requests"] == r["answered"] + r["cancelled"] + r["errors"], r
        assert r["rss_mb"] and r["rss_mb"] > 50  # the model is in it
        assert r["idle_rss_mb"] and r["idle_rss_mb"] > 50  # read with every document closed
    assert s["requests"] == sum(r["requests"] for r in rows) > 20
    assert s["answered"] > 0 and s["p50_ms"] is not None
    opens, closes = sum(r["opens"] for r in rows), sum(r["closes"] for r in rows)
    assert opens >= 2 and opens - 2 <= closes <= opens  # at most 2 open at once

def test_the_table_prints_each_window_and_the_growth():
    w1, w2 = Window(0.0, requests=10, answered=8, cancelled=2, latencies_ms=[10, 20, 30], rss_mb=400.0, opens=2), \
        Window(300.0, requests=5, answered=5, latencies_ms=[15], rss_mb=404.0, idle_rss_mb=398.0, closes=1)
    result = {"windows": [w1.row(), w2.row()], "summary": {
        "requests": 15, "answered": 13, "errors": 0, "minutes": 10, "p50_ms": 17.5, "p95_ms": 29.0,
        "rss_growth_pct": 1.0, "rss_open_growth_pct": 2.5, "exit_code": 0, "server_errors": []}}
    lines = format_soak(result)
    assert lines[1].split()[:6] == ["0", "10", "8", "0", "2", "0"]
    assert lines[1].split()[-2:] == ["400", "-"]  # RSS at the window's end; no reading with everything closed
    assert lines[2].split()[0] == "5" and lines[2].split()[-2:] == ["404", "398"]
    assert "+1.0% with every document closed (+2.5% as read with some open)" in lines[-1]
    assert "15 requests" in lines[-1]
