"""Flood and cancel: thousands of inline completion requests over several documents, interleaved with
`$/cancelRequest` for requests just sent, long answered, cancelled already and never sent (int and string ids),
sent to one `codefill lsp` over stdio. No model loads (the completions answer an empty list at once), so this checks
the bookkeeping: every request is answered exactly once (a result, or -32800 RequestCancelled), `$/cancelRequest`
itself is never answered, and the server works and exits with 0 afterwards."""

import random
import time

from lsp_helpers import RawClient  # noqa: F401 - the `raw` fixture's client

REQUESTS = 3000
DOCS = [f"file:///flood/d{i}.py" for i in range(5)]


def test_thousands_of_requests_and_cancels_are_each_answered_exactly_once(raw):
    t0 = time.monotonic()
    raw.initialize({"model": "/nonexistent/missing.gguf"})
    rng = random.Random(0)
    for i, uri in enumerate(DOCS):
        raw.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "python", "version": 1,
                                                             "text": f"def f{i}():\n    \n" * 20}})
    sent, cancels, unknown_cancels, edits = [], 0, 0, 0
    batch = []

    def push(msg):
        batch.append(msg)
        if len(batch) >= 40:
            flush()

    def flush():
        import json
        raw.send_bytes(b"".join(b"Content-Length: %d\r\n\r\n" % len(b) + b for b in
                                (json.dumps(m).encode() for m in batch)))
        batch.clear()

    for n in range(REQUESTS):
        msg_id = 10_000 + n if n % 3 else f"r{n}"
        uri = rng.choice(DOCS)
        push({"jsonrpc": "2.0", "id": msg_id, "method": "textDocument/inlineCompletion", "params": {
            "textDocument": {"uri": uri}, "position": {"line": rng.randrange(40), "character": rng.randrange(6)},
            "context": {"triggerKind": rng.choice([1, 2])}}})
        sent.append(msg_id)
        r = rng.random()
        if r < 0.3:  # cancel this one, or one sent before (answered or not), maybe twice
            target = msg_id if rng.random() < 0.5 else rng.choice(sent)
            for _ in range(rng.choice([1, 1, 2])):
                push({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": target}})
                cancels += 1
        elif r < 0.4:  # an id that was never sent
            push({"jsonrpc": "2.0", "method": "$/cancelRequest",
                  "params": {"id": rng.choice([-1 - n, 10**9 + n, f"nope{n}"])}})
            unknown_cancels += 1
        elif r < 0.45:  # the documents change under the requests
            push({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": n + 2}, "contentChanges": [{"range": {
                    "start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 4}}, "text": "x"}]}})
            edits += 1
    flush()
    want = set(sent)
    got: dict = {}
    deadline = time.monotonic() + 40
    while not want <= set(got) and time.monotonic() < deadline:
        m = raw.next(20)
        assert "method" in m or m.get("id") is not None, m  # no null-id errors: every frame was readable
        if "method" not in m:
            got.setdefault(m["id"], []).append(m)
    time.sleep(0.5)  # any duplicate answer would come now
    while not raw.messages.empty():
        m = raw.messages.get()
        if "method" not in m:
            got.setdefault(m["id"], []).append(m)
    assert set(got) == want, (len(want - set(got)), list(set(got) - want)[:5])  # $/cancelRequest: no answers
    cancelled = 0
    for msg_id, ms in got.items():
        assert len(ms) == 1, ms
        m = ms[0]
        if "error" in m:
            assert m["error"]["code"] == -32800, m  # RequestCancelled, nothing else
            cancelled += 1
        else:
            assert m["result"] == {"items": []} or m["result"] is None, m
    assert raw.proc.poll() is None, raw.stderr()[-2000:]
    res = raw.request(1, "textDocument/inlineCompletion", {"textDocument": {"uri": DOCS[0]},
                                                           "position": {"line": 1, "character": 4},
                                                           "context": {"triggerKind": 1}})
    assert res.get("result") == {"items": []}, res
    assert raw.request(2, "shutdown")["result"] is None
    raw.notify("exit")
    assert raw.proc.wait(30) == 0
    print(f"{REQUESTS} requests ({cancelled} answered cancelled), {cancels} cancels of sent ids, {unknown_cancels} "
          f"of unknown ids, {edits} edits, {time.monotonic() - t0:.1f}s")
